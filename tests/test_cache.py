"""Frozen-layer caching: exact, equivalent to the plain path, and never stale."""

from __future__ import annotations

import os
import numpy as np
import pytest
import torch

import thawkit
from thawkit.engine.cache.store import FeatureStore, compute_states
from thawkit.engine.cache.cached_training import SwitchableCollator, pad_states
from thawkit.engine.cache.surgery import ModelSurgery
from thawkit.models.layout import build_layout

TEXTS = [
    "the film was great",
    "a long and dull story with a weak ending and poor music",
    "superb",
    "the cast was brilliant and the plot delightful",
]


def _classifier(model_dir, num_layers_expected=2):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=3).eval()
    return model


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "deberta-v2"])
def test_cached_logits_equal_plain_logits_at_every_boundary(tiny_models, arch):
    from transformers import AutoTokenizer

    model = _classifier(tiny_models[arch])
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models[arch]))
    layout = build_layout(model)
    surgery = ModelSurgery(model, layout)
    features = [dict(tokenizer(text)) for text in TEXTS]
    collator = SwitchableCollator(tokenizer)
    with torch.inference_mode():
        plain = model(**collator(features)).logits
    # DeBERTa-v2's encoder cannot run with zero layers: the engine's self-check sends that case
    # to the plain path (tested below); every other boundary is exact.
    top = layout.num_layers if arch != "deberta-v2" else layout.num_layers - 1
    boundaries = list(range(top + 1))
    for first_token_only in ((False, True) if arch != "deberta-v2" else (False,)):
        wanted = [layout.num_layers] if first_token_only else boundaries
        states = compute_states(surgery, [{k: f[k] for k in f if k != "attention_mask"} for f in features], wanted, first_token_only, "float32", batch_size=3)
        for boundary in wanted:
            surgery.start_at(boundary)
            try:
                embeds, mask = pad_states([states[boundary].get(i) for i in range(len(TEXTS))])
                with torch.inference_mode():
                    cached = model(inputs_embeds=embeds, attention_mask=mask).logits
            finally:
                surgery.restore()
            torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5, msg=f"{arch} boundary {boundary}")
    # Only real tokens are stored: no padding rows.
    lengths = [len(f["input_ids"]) for f in features]
    assert states_total_rows(compute_states(surgery, features, [1], False, "float32")[1]) == sum(lengths)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_decoders_run_exactly_from_every_boundary(tiny_decoders, arch):
    """A decoder keeps its input_ids (its head reads each example's last real token) while the token
    embedding hands over the cached states; GPT-2 adds no second position embedding."""
    from thawkit.models.backbone import align_pad_token, load_tokenizer

    model = _classifier(tiny_decoders[arch])
    tokenizer = load_tokenizer(str(tiny_decoders[arch]))  # no pad token of its own: end-of-text pads
    align_pad_token(model, tokenizer)
    layout = build_layout(model)
    surgery = ModelSurgery(model, layout)
    assert surgery.supported and surgery.decoder is not None
    features = [dict(tokenizer(text)) for text in TEXTS]
    collator = SwitchableCollator(tokenizer)
    batch = collator(features)
    with torch.inference_mode():
        plain = model(**batch).logits
    boundaries = list(range(layout.num_layers + 1))
    states = compute_states(surgery, [{"input_ids": f["input_ids"]} for f in features], boundaries, False, "float32", batch_size=3)
    for boundary in boundaries:
        surgery.start_at(boundary)
        try:
            embeds, mask = pad_states([states[boundary].get(i) for i in range(len(TEXTS))])
            with torch.inference_mode():
                cached = model(**surgery.call_inputs(embeds, mask, batch["input_ids"])).logits
        finally:
            surgery.restore()
        torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5, msg=f"{arch} boundary {boundary}")
    # The final norm belongs to the head (above the last layer), the token embedding to the embeddings.
    assert any(n.endswith(("norm.weight", "ln_f.weight")) for n in layout.params["head"])
    assert any("embed_tokens" in n or "wte" in n for n in layout.params["embeddings"])


def test_cached_training_matches_plain_training_on_a_decoder(tiny_decoders, toy_csv, tmp_path):
    common = dict(data=toy_csv, model=str(tiny_decoders["llama"]), strategy="gradual", epochs=3, lr=2e-3, max_length=32,
                  batch_size=16, seed=3, early_stopping_patience=0, select_best=False, cache_dtype="float32", precision="fp32")
    cached = thawkit.train(**common, out=tmp_path / "cached", cache=True)
    plain = thawkit.train(**common, out=tmp_path / "plain", cache=False)
    assert cached.info["cache"]["used"] is True and plain.info["cache"]["used"] is False
    plain_params = dict(plain.model.named_parameters())
    for name, param in cached.model.named_parameters():
        torch.testing.assert_close(param, plain_params[name], atol=2e-5, rtol=1e-4, msg=name)
    assert cached.history[-1]["validation"]["loss"] == pytest.approx(plain.history[-1]["validation"]["loss"], abs=1e-4)


def states_total_rows(states) -> int:
    return int(states.offsets[-1])


@pytest.mark.parametrize(
    "strategy, options, epochs",
    [("frozen", {}, 2), ("partial", {"freeze_layers": 1}, 2), ("gradual", {}, 3), ("llrd", {"gradual": True}, 3)],
)
def test_cached_training_matches_plain_training(tiny_bert, toy_csv, tmp_path, strategy, options, epochs):
    # Exactness is a claim about fp32 arithmetic on both paths (fp32 cache, fp32 training); under bf16
    # autocast the plain path's frozen layers run in bf16 while the cache holds what it was asked for.
    common = dict(
        data=toy_csv, model=str(tiny_bert), strategy=strategy, strategy_options=options, epochs=epochs, lr=2e-3,
        max_length=32, batch_size=16, seed=3, early_stopping_patience=0, select_best=False, cache_dtype="float32",
        precision="fp32",
    )
    cached = thawkit.train(**common, out=tmp_path / "cached", cache=True)
    plain = thawkit.train(**common, out=tmp_path / "plain", cache=False)
    assert cached.info["cache"]["used"] is True
    assert plain.info["cache"]["used"] is False
    plain_params = dict(plain.model.named_parameters())
    before = dict(_classifier(tiny_bert).named_parameters())
    moved = 0
    for name, param in cached.model.named_parameters():
        torch.testing.assert_close(param, plain_params[name], atol=2e-5, rtol=1e-4, msg=name)
        if name in before and not torch.equal(param, before[name]):
            moved += 1
    assert moved > 0  # trainable layers did change, identically in both paths
    assert cached.history[-1]["validation"]["loss"] == pytest.approx(plain.history[-1]["validation"]["loss"], abs=1e-4)


def test_cache_is_reused_and_invalidated(tiny_models, toy_csv, tmp_path):
    FeatureStore.forget_in_memory()
    store_dir = tmp_path / "features"
    common = dict(strategy="partial", strategy_options={"freeze_layers": 1}, epochs=1, max_length=32, cache_dir=store_dir)

    def cache_info(name, **overrides):
        FeatureStore.forget_in_memory()  # a fresh process: only the disk cache remains
        settings = {**common, "data": toy_csv, "model": str(tiny_models["bert"]), **overrides}
        return thawkit.train(**settings, out=tmp_path / name).info["cache"]

    first = cache_info("a")
    assert first["used"] and not first["reused"]
    assert cache_info("b")["reused"]  # same weights, tokenizer, settings, data
    assert not cache_info("c", max_length=24)["reused"]  # a tokenizer setting changed
    changed_data = tmp_path / "changed.csv"
    changed_data.write_text(toy_csv.read_text().replace("great", "good"))
    assert not cache_info("d", data=changed_data)["reused"]  # the data changed
    assert not cache_info("e", model=str(tiny_models["roberta"]))["reused"]  # another checkpoint
    # The same checkpoint folder with different weights inside must not reuse either.
    from transformers import AutoModel

    altered = tmp_path / "altered"
    model = AutoModel.from_pretrained(str(tiny_models["bert"]))
    with torch.no_grad():
        model.encoder.layer[0].output.dense.weight.add_(0.01)
    model.save_pretrained(str(altered))
    (altered / "tokenizer.json").write_bytes((tiny_models["bert"] / "tokenizer.json").read_bytes())
    (altered / "tokenizer_config.json").write_bytes((tiny_models["bert"] / "tokenizer_config.json").read_bytes())
    assert not cache_info("f", model=str(altered))["reused"]
    # Changing only the unfrozen top layer keeps the cache valid (layer 0 is below the boundary).
    top_only = tmp_path / "top-only"
    model = AutoModel.from_pretrained(str(tiny_models["bert"]))
    with torch.no_grad():
        model.encoder.layer[1].output.dense.weight.add_(0.01)
    model.save_pretrained(str(top_only))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (top_only / name).write_bytes((tiny_models["bert"] / name).read_bytes())
    assert cache_info("g", model=str(top_only))["reused"]


def test_memory_mapped_cache_gives_the_same_model(tiny_bert, toy_csv, tmp_path):
    common = dict(data=toy_csv, model=str(tiny_bert), strategy="gradual", epochs=2, lr=2e-3, max_length=32, seed=5,
                  early_stopping_patience=0, select_best=False)
    FeatureStore.forget_in_memory()
    in_ram = thawkit.train(**common, out=tmp_path / "ram", cache_dir=tmp_path / "c1")
    FeatureStore.forget_in_memory()
    mapped = thawkit.train(**common, out=tmp_path / "mmap", cache_dir=tmp_path / "c2", cache_ram_budget_mb=1e-6)
    assert mapped.info["cache"]["memory_mapped"] and not in_ram.info["cache"]["memory_mapped"]
    for (name, a), (_, b) in zip(in_ram.model.named_parameters(), mapped.model.named_parameters()):
        assert torch.equal(a, b), name


def test_bfloat16_cache_trains_close_to_fp32(tiny_bert, toy_csv, tmp_path):
    common = dict(data=toy_csv, model=str(tiny_bert), strategy="frozen", epochs=2, lr=2e-3, max_length=32, seed=5)
    fp32 = thawkit.train(**common, out=tmp_path / "fp32", cache_dtype="float32")
    bf16 = thawkit.train(**common, out=tmp_path / "bf16", cache_dtype="bfloat16")
    assert bf16.info["cache"]["storage"] == "bfloat16"
    # The training split's states take half the bytes; evaluation states stay float32 in both.
    halves, full = bf16.info["cache"]["bytes_by_split"], fp32.info["cache"]["bytes_by_split"]
    assert halves["train"] * 2 == full["train"] and halves["validation"] == full["validation"]
    texts = ["a great film", "awful plot"]
    torch.testing.assert_close(torch.tensor(bf16.logits(texts)), torch.tensor(fp32.logits(texts)), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("strategy", ["frozen", "gradual"])
def test_the_metric_that_selects_is_the_metric_reported(tiny_bert, toy_csv, tmp_path, strategy):
    # bf16 training states, yet the best evaluation of the curve is what metrics.json reports:
    # evaluation runs on exact fp32 states, as the saved model does from tokens.
    run = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy=strategy, epochs=3, lr=5e-3, max_length=32, seed=3,
                        cache_dtype="bfloat16", early_stopping_patience=0, out=tmp_path / strategy)
    assert run.info["cache"]["used"] and run.info["cache"]["storage"] == "bfloat16"
    curve = [h for h in run.history if "type" not in h]
    best = max(curve, key=lambda h: h["validation"][run.info["metric"]])
    for name in (run.info["metric"], "loss"):
        assert run.metrics["validation"][name] == pytest.approx(best["validation"][name], abs=1e-5)


def test_inexact_boundary_falls_back_to_plain_path(tiny_models, toy_csv, tmp_path):
    run = thawkit.train(data=toy_csv, model=str(tiny_models["deberta-v2"]), strategy="frozen", epochs=1, max_length=32, out=tmp_path / "d")
    assert run.info["cache"]["used"] is False and "self-check" in run.info["cache"]["reason"]
    partial = thawkit.train(data=toy_csv, model=str(tiny_models["deberta-v2"]), strategy="partial", epochs=1, max_length=32, out=tmp_path / "p")
    assert partial.info["cache"]["used"] is True


def test_lora_and_full_use_the_plain_path(tiny_bert, toy_csv, tmp_path):
    for strategy in ("full", "lora"):
        run = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy=strategy, epochs=1, max_length=32, out=tmp_path / strategy)
        assert run.info["cache"]["used"] is False and "reason" in run.info["cache"]


@pytest.mark.parametrize("pooling, head", [("mean", "linear"), ("cls", "mlp"), ("mean", "logreg")])
def test_frozen_pooled_heads(tiny_bert, toy_csv, tmp_path, pooling, head):
    run = thawkit.train(
        data=toy_csv, model=str(tiny_bert), strategy="frozen", strategy_options={"pooling": pooling, "head": head},
        epochs=2, lr=1e-2, max_length=32, out=tmp_path / "run",
    )
    assert run.info["cache"]["used"] is True
    assert (tmp_path / "run" / "thawkit_head.json").exists() and (tmp_path / "run" / "backbone" / "config.json").exists()
    texts = ["a great film", "awful and boring plot", "the ending"]
    reloaded = thawkit.load(tmp_path / "run")
    np.testing.assert_allclose(reloaded.logits(texts), run.logits(texts), atol=1e-5)
    # The backbone never changed: its weights equal the pretrained ones.
    from transformers import AutoModel

    pretrained = dict(AutoModel.from_pretrained(str(tiny_bert)).named_parameters())
    for name, param in run.model.backbone.named_parameters():
        assert torch.equal(param, pretrained[name]), name
    assert len(run.history) == (1 if head == "logreg" else 2)
    assert run.history[0]["trainable_blocks"] == ["head"]


def test_logreg_head_matches_scikit_learn(tiny_bert, toy_csv, tmp_path):
    """The stored linear head gives scikit-learn's own probabilities, fitted on the same rows."""
    from sklearn.linear_model import LogisticRegression

    from thawkit.data import load_classification_data
    from thawkit.models.pooled import pool

    run = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="frozen", strategy_options={"pooling": "mean", "head": "logreg"},
                        max_length=32, out=tmp_path / "run", seed=42, cache_dtype="float32")
    data = load_classification_data(toy_csv, seed=42)  # the same seeded split as the run

    def features(texts):
        batch = run.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        with torch.inference_mode():
            return pool(run.model.backbone(**batch).last_hidden_state, batch["attention_mask"], "mean").numpy()

    reference = LogisticRegression(max_iter=2000, random_state=42).fit(features(list(data.train["text"])), data.train["labels"])
    texts = list(data.validation["text"])
    expected = reference.predict_proba(features(texts))
    ours = np.array([[p["scores"][label] for label in run.labels] for p in run.predict(texts)])
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_strategies_share_boundary_entries(tiny_bert, toy_csv, tmp_path):
    """A gradual run's pass serves a later partial run (one entry per boundary)."""
    common = dict(data=toy_csv, model=str(tiny_bert), max_length=32, cache_dir=tmp_path / "features", cache_dtype="float32")
    FeatureStore.forget_in_memory()
    gradual = thawkit.train(**common, strategy="gradual", epochs=2, out=tmp_path / "gradual")
    assert gradual.info["cache"]["boundaries"] == [1, 2] and not gradual.info["cache"]["reused"]
    FeatureStore.forget_in_memory()
    partial = thawkit.train(**common, strategy="partial", strategy_options={"freeze_layers": 1}, epochs=1, out=tmp_path / "partial")
    assert partial.info["cache"]["boundaries"] == [1] and partial.info["cache"]["reused"]


def test_checkpoints_are_full_models_on_the_cached_path(tiny_bert, toy_csv, tmp_path):
    from transformers import AutoModelForSequenceClassification

    run = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="partial", strategy_options={"freeze_layers": 1},
                        epochs=2, max_length=32, out=tmp_path / "run", save_checkpoints=True, select_best=False)
    assert run.info["cache"]["used"]
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2
    last = AutoModelForSequenceClassification.from_pretrained(str(checkpoints[-1]))
    assert len(last.bert.encoder.layer) == 2  # not the truncated upper part
    final = dict(run.model.named_parameters())
    for name, param in last.named_parameters():  # no early stop/restore here: last epoch = final weights
        assert torch.equal(param, final[name]), name


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    """A run killed during the cached pass leaves `.<key>.<pid>.partial`; the next write removes it
    (the pid is gone) and never touches a live writer's temporary."""
    import subprocess

    import numpy as np

    from thawkit.engine.cache.store import FeatureStore, LayerStates

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".abc.{dead.pid}.partial"
    live = tmp_path / f".def.{os.getpid()}.partial"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "states.npy").write_bytes(b"half")
    store = FeatureStore(tmp_path)
    store.save("k1", LayerStates(np.zeros((3, 4), dtype=np.float32), np.array([0, 1, 3]), "float32"), {})
    assert not stale.exists() and live.exists()
    assert store.load("abc", "float32") is None  # never loaded as an entry
