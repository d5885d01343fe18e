"""Few labels: the fewshot strategy's mechanisms and `thawkit select` (tiny models, toy data)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import thawkit
from thawkit.cli.app import main
from thawkit.engine.core.contrastive import BalancedBatches, contrastive_loss, pair_targets
from thawkit.engine.programs.select import kmeans_pp, uncertainty_of
from thawkit.strategies.base import ContrastivePhase
from thawkit.testing import toy_sentiment_rows


@pytest.fixture(scope="module")
def tiny_st(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT as a sentence-transformers folder: mean pooling, then Normalize."""
    path = tmp_path_factory.mktemp("tiny-st") / "model"
    shutil.copytree(tiny_bert, path)
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": False}))
    return path


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    return path


def _separation(embeddings: np.ndarray, labels: list[str]) -> float:
    """Mean cosine similarity within classes minus across classes."""
    sim = embeddings @ embeddings.T
    same = np.equal.outer(labels, labels)
    off = ~np.eye(len(labels), dtype=bool)
    return float(sim[same & off].mean() - sim[~same].mean())


# --- pairs, batches, losses ----------------------------------------------------------------------

def test_pairs_are_within_a_class_positive_and_across_classes_negative():
    single = pair_targets(torch.tensor([0, 1, 0, 2]))
    assert single.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]
    multi = pair_targets(torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]]))
    assert multi.tolist() == [[1, 1, 0, 0], [1, 1, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]]  # positive: any label shared


def test_batches_balance_classes_and_use_every_example_before_repeating():
    labels = [0] * 6 + [1] * 6 + [2] * 2
    batches = BalancedBatches(labels, batch_size=6, seed=0)
    drawn = [batches.next() for _ in range(3)]
    for batch in drawn:  # two of each class per batch
        assert sorted(labels[i] for i in batch) == [0, 0, 1, 1, 2, 2]
    seen = [i for batch in drawn for i in batch if labels[i] == 0]
    assert sorted(seen) == list(range(6))  # class 0's six examples once each over three batches
    again = BalancedBatches(labels, batch_size=6, seed=0)
    assert [again.next() for _ in range(3)] == drawn  # seeded
    thirteen = [c for c in range(13) for _ in range(10)]  # ChemProt-like: 13 classes, 32 slots -> 2 or 3 of each
    for batch in (BalancedBatches(thirteen, batch_size=32, seed=1).next() for _ in range(3)):
        counts = np.bincount([thirteen[i] for i in batch], minlength=13)
        assert len(batch) == 32 and set(counts) <= {2, 3}
    many = BalancedBatches(list(range(40)), batch_size=8, seed=1)  # 40 one-example classes: 4 classes a batch, pairs of 2
    assert all(len(many.next()) == 4 for _ in range(3))


@pytest.mark.parametrize("loss", ["cosine", "supcon", "batch-hard"])
def test_contrastive_losses_pull_classes_together(loss):
    phase = ContrastivePhase(epochs=1, batch_size=8, loss=loss)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    torch.manual_seed(0)
    free = torch.randn(8, 16, requires_grad=True)
    optimizer = torch.optim.SGD([free], lr=0.5)
    before = _separation(torch.nn.functional.normalize(free, dim=-1).detach().numpy(), labels.tolist())
    for _ in range(50):
        value = contrastive_loss(torch.nn.functional.normalize(free, dim=-1), labels, phase)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    after = _separation(torch.nn.functional.normalize(free, dim=-1).detach().numpy(), labels.tolist())
    assert after > before + 0.3, (before, after)
    if loss == "cosine":  # at the target (classes identical inside, orthogonal across) the loss is zero
        perfect = torch.nn.functional.one_hot(labels, 16).float()
        assert float(contrastive_loss(perfect, labels, phase)) == pytest.approx(0.0, abs=1e-7)


def test_steps_follow_the_epochs_over_the_examples():
    assert ContrastivePhase(epochs=30, batch_size=32, loss="cosine").steps(64) == 60
    assert ContrastivePhase(epochs=30, batch_size=32, loss="cosine").steps(16) == 30  # a batch is every example
    assert ContrastivePhase(epochs=2.5, batch_size=8, loss="cosine").steps(20) == math.ceil(2.5 * 20 / 8)


# --- the strategy end to end --------------------------------------------------------------------

@pytest.fixture(scope="module")
def fewshot_run(tiny_st, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fewshot")
    data = _write(folder / "train.csv", toy_sentiment_rows(40, seed=3))
    run = thawkit.train(data=data, model=str(tiny_st), strategy="fewshot", lr=3e-3, max_length=32,
                        strategy_options={"body_epochs": 20, "pair_batch": 8}, out=folder / "run", progress="off")
    return run, folder


def test_fewshot_trains_the_body_contrastively_then_fits_the_head_on_it(fewshot_run, tiny_st):
    from sklearn.linear_model import LogisticRegression

    run, folder = fewshot_run
    plan = thawkit.plan(data=folder / "train.csv", model=str(tiny_st), strategy="fewshot", max_length=32, out=folder / "again")
    split = plan.data()
    everything = pd.concat([split.train, split.validation])  # the saved model is refit on both, once validation is scored
    texts, labels = everything["text"].tolist(), everything["label_names"].map(lambda names: names[0]).tolist()
    # The contrastive phase ran as planned (epochs x examples / batch steps; its loss went down), first
    # on the training split, then again from the pretrained body on every example.
    body, refit = run.info["body_training"], run.info["refit"]
    assert body["steps"] == math.ceil(20 * len(split.train) / 8) and body["loss_last"] < body["loss_first"]
    assert refit["examples"] == len(texts) == 40 and refit["body_training"]["steps"] == math.ceil(20 * 40 / 8)
    assert run.info["learning_rate"] == 3e-3 and run.info["head_fit"].startswith("closed-form")
    # The body moved, and it separates the classes better than the pretrained one did.
    from thawkit.models.pooled import SentenceEncoder

    pretrained = SentenceEncoder(str(tiny_st), 32).encode(texts)
    adapted = run.embeddings(texts)
    assert not np.allclose(pretrained, adapted, atol=1e-3)
    assert _separation(adapted, labels) > _separation(pretrained, labels) + 0.05
    # The head is scikit-learn's logistic regression fitted on the adapted, normalised embeddings.
    expected = LogisticRegression(max_iter=2000, random_state=42).fit(adapted, everything["labels"].tolist())
    probe = ["great fine plot", "awful boring music", "the film"]
    assert np.allclose(run.probabilities(probe), expected.predict_proba(run.embeddings(probe)), atol=1e-4)


def test_a_validation_file_is_never_trained_on(tiny_st, tmp_path):
    data = _write(tmp_path / "train.csv", toy_sentiment_rows(24, seed=8))
    held = _write(tmp_path / "held.csv", toy_sentiment_rows(8, seed=9))
    run = thawkit.train(data=data, validation=held, model=str(tiny_st), strategy="fewshot", max_length=32,
                        strategy_options={"body_epochs": 2, "pair_batch": 8}, out=tmp_path / "run", progress="off")
    assert run.info["refit"] is None and run.info["num_train_examples"] == 24
    off = thawkit.train(data=data, model=str(tiny_st), strategy="fewshot", max_length=32, out=tmp_path / "off", progress="off",
                        strategy_options={"body_epochs": 2, "pair_batch": 8, "refit": False})
    assert off.info["refit"] is None


def test_fewshot_body_loads_in_sentence_transformers(fewshot_run):
    from sentence_transformers import SentenceTransformer

    run, folder = fewshot_run
    texts = ["the film was great", "awful and boring plot", "fine"]
    model = SentenceTransformer(str(folder / "run" / "backbone"), device="cpu")
    assert model.max_seq_length == 32
    assert np.allclose(model.encode(texts), run.embeddings(texts), atol=1e-5)
    reloaded = thawkit.load(folder / "run")
    assert np.allclose(reloaded.probabilities(texts), run.probabilities(texts), atol=1e-6)


def test_fewshot_multi_label_and_the_other_losses(tiny_st, tmp_path):
    rows = [(text, label if i % 3 else f"{label},neutral") for i, (text, label) in enumerate(toy_sentiment_rows(36, seed=5))]
    run = thawkit.train(data=_write(tmp_path / "multi.csv", rows), multi_label=True, model=str(tiny_st), strategy="fewshot", lr=3e-3,
                        max_length=32, strategy_options={"body_epochs": 2, "pair_batch": 8, "loss": "supcon"},
                        out=tmp_path / "multi", progress="off")
    assert run.multi_label and run.info["body_training"]["loss"] == "supcon"
    predicted = run.predict(["great film", "awful film"])
    assert all(set(p["scores"]) == {"negative", "neutral", "positive"} for p in predicted)
    hard = thawkit.train(data=_write(tmp_path / "single.csv", toy_sentiment_rows(30, seed=6, classes=3)), model=str(tiny_st),
                         strategy="fewshot", lr=3e-3, max_length=32, out=tmp_path / "hard", progress="off",
                         strategy_options={"body_epochs": 2, "pair_batch": 9, "loss": "batch-hard", "body_layers": 1})
    assert hard.info["body_training"]["loss"] == "batch-hard"
    assert hard.info["cache"]["used"] is True  # the bottom layer is frozen: its states come from the cache
    assert [s["trainable_blocks"] for s in hard.info["stages"]] == [["layer.1"]]


# --- select -------------------------------------------------------------------------------------

def _clusters(per: int = 50, count: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.eye(16)[:count] * 5
    points = np.concatenate([c + 0.05 * rng.standard_normal((per, 16)) for c in centres])
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_kmeans_pp_covers_the_clusters_and_extends_a_labeled_set():
    points = _clusters()
    for seed in range(10):
        assert sorted(i // 50 for i in kmeans_pp(points, 4, seed)) == [0, 1, 2, 3]
    # Clusters 0 and 1 are labeled already: the next two picks come from 2 and 3.
    labeled = points[[0, 60]]
    assert sorted(i // 50 for i in kmeans_pp(points, 2, 0, centres=labeled)) == [2, 3]
    # A cluster the model is sure about (weight ~0) is left for last.
    weights = np.where(np.arange(200) // 50 == 3, 0.0, 1.0)
    assert all(i // 50 != 3 for i in kmeans_pp(points, 3, 0, weights=weights))
    assert kmeans_pp(points, 4, 7) == kmeans_pp(points, 4, 7)


def test_uncertainty_is_high_where_the_top_two_labels_are_close():
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.4, 0.35, 0.25]][:2])
    assert uncertainty_of(probabilities, False).tolist() == pytest.approx([1.0, 0.2])
    assert uncertainty_of(np.array([[0.5, 1.0], [0.0, 1.0]]), True).tolist() == pytest.approx([0.5, 0.0])


def test_select_cli_is_reproducible_and_writes_a_csv_to_label(fewshot_run, tiny_st, tmp_path, capsys):
    run, _ = fewshot_run
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(text for text, _ in toy_sentiment_rows(60, seed=11)) + "\n")

    def select(out: str, *extra: str) -> list[dict]:
        main(["select", "--pool", str(pool), "--budget", "6", "--out", str(tmp_path / out), *extra])
        with (tmp_path / out).open() as handle:
            return list(csv.DictReader(handle))

    first = select("a.csv", "--model", str(tiny_st))
    assert len(first) == 6 and all(row["label"] == "" for row in first) and set(first[0]) == {"text", "label"}
    assert first == select("b.csv", "--model", str(tiny_st))
    assert first != select("c.csv", "--model", str(tiny_st), "--seed", "7")
    # The next round: the labeled texts are left out, and picks spread away from them.
    labeled = tmp_path / "labeled.csv"
    _write(labeled, [(row["text"], "positive") for row in first])
    second = select("d.csv", "--model", str(tiny_st), "--from-labeled", str(labeled))
    assert not {row["text"] for row in second} & {row["text"] for row in first}
    # With a run: its uncertainty weights the draw, and the CSV says what it predicted.
    with_run = select("e.csv", "--run", str(run.path))
    assert {"predicted", "uncertainty"} <= set(with_run[0])
    assert all(0.0 <= float(row["uncertainty"]) <= 1.0 and row["predicted"] in run.labels for row in with_run)
    capsys.readouterr()
    main(["select", "--pool", str(pool), "--budget", "3", "--run", str(run.path), "--out", str(tmp_path / "f.csv"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"].startswith("uncertainty x diversity") and summary["embedder"].startswith("the run's body")


def test_select_refuses_a_run_without_label_probabilities(tiny_bert, tmp_path, capsys):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence1\tsentence2\tscore\n" + "".join(f"a cat {i}\ta dog {i}\t{i % 5}\n" for i in range(20)))
    thawkit.train(task="similarity", data=pairs, validation=pairs, model=str(tiny_bert), strategy="frozen", epochs=1,
                  max_length=16, out=tmp_path / "sim", progress="off")
    pool = tmp_path / "pool.txt"
    pool.write_text("one text\nanother text\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["select", "--pool", str(pool), "--budget", "1", "--run", str(tmp_path / "sim"), "--out", str(tmp_path / "p.csv")])
    assert exit_info.value.code == 2
    assert "gives no label probabilities" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()


def test_the_fewshot_cards_snippet_runs_without_thawkit_and_agrees(fewshot_run):
    run, folder = fewshot_run
    card = (folder / "run" / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "strategy-fewshot" in card
    snippet = card.split("Without thawkit", 1)[1].split("```python\n", 1)[1].split("\n```", 1)[0]
    from stock_python import run_without_thawkit

    # The card's lines, in an interpreter where thawkit cannot be imported.
    scores, _ = run_without_thawkit(snippet.replace("RUN_FOLDER", str(folder / "run")).replace("print(", "scores = ("), "scores")
    assert scores == pytest.approx(run.predict(["your text"])[0]["scores"], abs=1e-5)


def test_a_fewshot_run_exports_to_onnx_and_serves(fewshot_run, tmp_path):
    from fastapi.testclient import TestClient

    from thawkit.serve import create_app, load_served

    run, folder = fewshot_run
    texts = ["the film was great", "awful and boring plot", "fine"]
    main(["export", str(folder / "run"), "--onnx", "--out", str(tmp_path / "onnx")])
    exported = thawkit.load(tmp_path / "onnx")  # pooling, normalisation and head inside the graph
    np.testing.assert_allclose(exported.logits(texts), run.logits(texts), atol=1e-4)
    with TestClient(create_app(load_served({"few": folder / "run"}))) as client:
        answer = client.post("/predict", json={"inputs": texts[0]}).json()
    assert {d["label"]: d["score"] for d in answer} == pytest.approx(run.predict(texts[:1])[0]["scores"], abs=1e-6)


def test_keep_pretrained_mixes_the_weights_back():
    from thawkit.engine.core.feature_heads import mix_back

    layer = torch.nn.Linear(3, 2)
    pretrained = {k: torch.zeros_like(v) for k, v in layer.state_dict().items()}
    trained = {k: v.clone() for k, v in layer.state_dict().items()}
    mix_back(layer, pretrained, 0.25)  # three quarters of the way from the pretrained weights to the trained ones
    assert all(torch.allclose(layer.state_dict()[k], 0.75 * trained[k]) for k in trained)
    mix_back(layer, pretrained, 0.0)
    assert all(torch.allclose(layer.state_dict()[k], 0.75 * trained[k]) for k in trained)


def test_a_feature_head_run_is_a_model_to_continue_from(fewshot_run, tiny_st, tmp_path):
    """``--model RUN`` of a fewshot (or frozen-head) run starts from its adapted body, not an error."""
    from safetensors.torch import load_file

    from thawkit.models.backbone import resolve_model_path

    run, _ = fewshot_run
    assert resolve_model_path(str(run.path)) == str(run.path / "backbone")
    # A learning rate too small to move anything: the continued model holds the weights it started from.
    continued = thawkit.train(data=run.info["config"]["data"], model=str(run.path), strategy="full", epochs=1, lr=1e-12,
                              max_length=32, progress="off", measure_forgetting=False, out=tmp_path / "continued")
    assert continued.info["base_model_path"] == str(run.path / "backbone")
    key = "encoder.layer.1.attention.self.query.weight"  # a layer the contrastive phase trained
    body = next(v for k, v in load_file(str(run.path / "backbone" / "model.safetensors")).items() if k.endswith(key))
    pretrained = next(v for k, v in load_file(str(Path(tiny_st) / "model.safetensors")).items() if k.endswith(key))
    start = thawkit.load(continued.path).model.base_model.encoder.layer[1].attention.self.query.weight.detach()
    assert torch.allclose(start, body, atol=1e-6) and not torch.allclose(body, pretrained, atol=1e-4)


def test_a_frozen_logreg_head_on_a_sentence_transformer_loads_without_thawkit(tiny_st, tmp_path):
    """The frozen default on a sentence-transformers checkpoint (its mean pooling, unnormalised
    features, logistic regression): the body is saved as a sentence-transformers folder without the
    Normalize module the head never saw, so the card's stock lines reproduce thawkit predict."""
    from stock_python import run_without_thawkit

    data = _write(tmp_path / "train.csv", toy_sentiment_rows(60, seed=4))
    run = thawkit.train(data=data, model=str(tiny_st), strategy="frozen", strategy_options={"head": "logreg"}, max_length=32,
                        out=tmp_path / "run", progress="off", measure_forgetting=False)
    modules = json.loads((tmp_path / "run" / "backbone" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling"]
    card = (tmp_path / "run" / "README.md").read_text()
    assert "Without thawkit" in card and "No stock loader" not in card
    snippet = card.split("Without thawkit", 1)[1].split("```python\n", 1)[1].split("\n```", 1)[0]
    scores, _ = run_without_thawkit(snippet.replace("RUN_FOLDER", str(tmp_path / "run")).replace("print(", "scores = ("), "scores")
    assert scores == pytest.approx(run.predict(["your text"])[0]["scores"], abs=1e-5)
