"""Sentence similarity (bi-encoder): scored, binary and positive-only pairs; every strategy."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import thawkit


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rows = [("a plane is taking off", "an air plane is taking off", 5.0), ("a man plays a flute", "a man plays a guitar", 2.2),
            ("a cat sleeps", "the stock market fell", 0.0), ("a woman slices onions", "a woman is cutting an onion", 4.6),
            ("kids play football", "children are playing soccer", 4.2), ("a dog runs", "the senate passed a bill", 0.2)]
    scored = root / "scored.tsv"
    with scored.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["sentence1", "sentence2", "score"])
        writer.writerows(rows * 8)
    binary = root / "binary.csv"
    binary.write_text("sentence1,sentence2,label\n" + "".join(f"{a},{b},{int(s > 2.5)}\n" for a, b, s in rows * 8))
    positive = root / "positive.csv"
    positive.write_text("anchor,positive\n" + "".join(f"{a} {i},{b} {i}\n" for i, (a, b, _) in enumerate(rows * 8)))
    return scored, binary, positive


@pytest.mark.parametrize("strategy", ["full", "frozen", "partial", "gradual", "llrd", "lora"])
def test_every_strategy_trains_similarity(tiny_bert, pair_files, tmp_path, strategy):
    from sentence_transformers import SentenceTransformer

    run = thawkit.train(task="similarity", data=pair_files[0], model=str(tiny_bert), strategy=strategy, epochs=1,
                        max_length=32, out=tmp_path / "run")
    assert run.info["task"] == "sentence-similarity" and run.info["pair_kind"] == "scored"
    assert {"spearman", "pearson"} <= set(run.metrics["validation"])
    reloaded = thawkit.load(tmp_path / "run")
    pair = ("a plane is taking off", "an air plane is taking off")
    assert reloaded.predict(pair[0], pair[1])[0]["similarity"] == pytest.approx(run.predict(pair[0], pair[1])[0]["similarity"], abs=1e-5)
    st = SentenceTransformer(str(tmp_path / "run"), device="cpu")
    vectors = st.encode(list(pair), normalize_embeddings=True)
    assert float(np.dot(vectors[0], vectors[1])) == pytest.approx(run.similarity(*pair)[0], abs=1e-4)
    assert reloaded.embed(["one", "two", "three"]).shape[0] == 3


def test_binary_and_positive_only_pairs(tiny_bert, pair_files, tmp_path):
    binary = thawkit.train(task="similarity", data=pair_files[1], model=str(tiny_bert), strategy="full", epochs=1,
                           max_length=32, out=tmp_path / "binary")
    assert binary.info["pair_kind"] == "binary"
    assert {"accuracy", "average_precision", "spearman"} <= set(binary.metrics["validation"])
    positive = thawkit.train(task="similarity", data=pair_files[2], model=str(tiny_bert), strategy="full", epochs=1,
                             max_length=32, out=tmp_path / "positive")
    assert positive.info["pair_kind"] == "positive" and positive.model.loss_kind == "mnrl"
    assert "mean_cosine" in positive.metrics["validation"]


@pytest.mark.real
def test_minilm_similarity_not_below_zero_shot(shared_datasets, tmp_path):
    import pandas as pd
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from thawkit.models.backbone import resolve_model_path

    read = lambda name: pd.read_csv(shared_datasets / "stsb" / name, sep="\t", quoting=csv.QUOTE_MINIMAL)  # noqa: E731
    read("train.tsv").sample(n=2000, random_state=0).to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    validation = read("validation.tsv").sample(n=500, random_state=0)
    validation.to_csv(tmp_path / "validation.tsv", sep="\t", index=False)
    zero_shot_model = SentenceTransformer(resolve_model_path("minilm-l6"), device="cpu")
    a = zero_shot_model.encode(validation["sentence1"].tolist(), normalize_embeddings=True)
    b = zero_shot_model.encode(validation["sentence2"].tolist(), normalize_embeddings=True)
    zero_shot = spearmanr((a * b).sum(1), validation["score"]).statistic
    run = thawkit.train(task="similarity", data=tmp_path / "train.tsv", validation=tmp_path / "validation.tsv",
                        strategy="full", lr=2e-5, epochs=1, batch_size=16, max_length=64, out=tmp_path / "run")
    trained = run.metrics["validation"]["spearman"]
    print(f"STS-B spearman: zero-shot {zero_shot:.4f}, trained {trained:.4f}")
    assert trained >= zero_shot


def test_the_score_scale_is_declared_or_the_smallest_standard_one(tmp_path):
    from thawkit.data.pairs import score_scale
    from thawkit.errors import DataError

    path = tmp_path / "pairs.tsv"
    assert score_scale(path, [0.0, 2.5, 5.0], None) == 5.0  # STS-B's 0-5
    assert score_scale(path, [0.0, 0.3, 1.0], None) == 1.0
    assert score_scale(path, [0.0, 4.0, 3.5], None) == 5.0  # its top need not occur
    assert score_scale(path, [0.0, 2.5, 5.0], 10.0) == 10.0  # declared: honoured (targets halve)
    spread = [float(i % 11) for i in range(200)]  # a real 0-10 scale
    assert score_scale(path, spread, None) == 10.0
    with pytest.raises(DataError, match=r"score 7.5 at row 3 \(line 4\) is above 5, the scale every other score fits"):
        score_scale(path, [0.0, 5.0, 7.5, *[2.0] * 50], None)
    with pytest.raises(DataError, match="above the scale's top, 4"):
        score_scale(path, [0.0, 5.0], 4.0)
