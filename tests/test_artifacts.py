"""Runs load in the stock tools (transformers, peft) with the predictions `thawkit predict` gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import thawkit
from thawkit.testing import write_toy_csv

TEXTS = ["the film was great and the music was wonderful " * 4, "awful and boring", "okay average fine"]


@pytest.fixture(scope="module")
def three_class_csv(tmp_path_factory):
    return write_toy_csv(tmp_path_factory.mktemp("three") / "train.csv", n=90, classes=3)


def _train(tiny_bert, data, out, strategy, **extra):
    return thawkit.train(model=str(tiny_bert), data=data, strategy=strategy, epochs=1, lr=5e-3, batch_size=16, max_length=16,
                         out=out, progress="off", measure_forgetting=False, **extra)


def _thawkit_probabilities(run_dir) -> np.ndarray:
    run = thawkit.load(run_dir)
    predictions = run.predict(TEXTS)
    return np.array([[p["scores"][label] for label in run.labels] for p in predictions])


def _stock_probabilities(model, tokenizer) -> np.ndarray:
    # Truncation at the tokenizer's own model_max_length, as stock pipelines do.
    batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        return torch.softmax(model.eval()(**batch).logits, dim=-1).numpy()


def test_lora_adapter_loads_in_stock_peft_with_labels(tiny_bert, three_class_csv, tmp_path):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoConfig, AutoTokenizer

    _train(tiny_bert, three_class_csv, tmp_path / "run", "lora")
    run_dir = tmp_path / "run"
    adapter = json.loads((run_dir / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_bert)  # as given, not thawkit's resolved copy
    config = AutoConfig.from_pretrained(run_dir)  # the labels travel with the adapter
    assert config.num_labels == 3 and set(config.id2label.values()) == {"positive", "negative", "neutral"}
    model = AutoPeftModelForSequenceClassification.from_pretrained(
        run_dir, num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    assert tokenizer.model_max_length == 16
    stock = _stock_probabilities(model, tokenizer)
    order = [config.label2id[label] for label in thawkit.load(run_dir).labels]
    np.testing.assert_allclose(stock[:, order], _thawkit_probabilities(run_dir), atol=1e-5)


def test_full_run_loads_in_stock_transformers(tiny_bert, three_class_csv, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _train(tiny_bert, three_class_csv, tmp_path / "run", "full")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    stock = _stock_probabilities(model, AutoTokenizer.from_pretrained(tmp_path / "run"))
    order = [model.config.label2id[label] for label in thawkit.load(tmp_path / "run").labels]
    np.testing.assert_allclose(stock[:, order], _thawkit_probabilities(tmp_path / "run"), atol=1e-5)


def test_packaged_alias_is_recorded_as_its_hub_id():
    from thawkit.models.backbone import portable_model_name

    assert portable_model_name("minilm-l6") == "sentence-transformers/all-MiniLM-L6-v2"
    assert portable_model_name("./my-model") == "./my-model"


def test_nan_metrics_are_written_as_null(tmp_path):
    from thawkit.rundir import write_json

    write_json(tmp_path / "m.json", {"validation": {"spearman": float("nan"), "loss": 0.5}, "curve": [float("inf")]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"validation": {"spearman": None, "loss": 0.5}, "curve": [None]}


def test_tensorboard_logs_are_kept_in_the_run(tiny_bert, three_class_csv, tmp_path):
    _train(tiny_bert, three_class_csv, tmp_path / "run", "full", report_to=["tensorboard"])
    events = list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_frozen_head_fit_reaches_the_loggers(tiny_bert, three_class_csv, tmp_path, monkeypatch):
    """No Trainer.train runs for a closed-form head: its fit still goes to TensorBoard and MLflow."""
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)  # MLflow keeps artifacts in ./mlruns beside a sqlite store
    _train(tiny_bert, three_class_csv, tmp_path / "frozen-run", "frozen", report_to=["tensorboard", "mlflow"],
           strategy_options={"head": "logreg"})
    events = list((tmp_path / "frozen-run" / "logs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    client = mlflow.MlflowClient(store)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED" and run.info.run_name == "frozen-run"
    assert {"loss", "head_logreg_validation_macro_f1", "eval_macro_f1"} <= set(run.data.metrics)


def test_a_frozen_heads_learning_curve_clock_covers_its_fit(tiny_bert, three_class_csv, tmp_path):
    """The report plots the curve's seconds beside the table's training time: both cover the fit."""
    run = _train(tiny_bert, three_class_csv, tmp_path / "frozen-run", "frozen", strategy_options={"head": "logreg"})
    assert run.history[-1]["elapsed_seconds"] >= 0.5 * run.info["train_seconds"]


def test_missing_logger_is_one_clear_error(tiny_bert, three_class_csv, tmp_path):
    with pytest.raises(thawkit.ThawkitError, match="--report-to wandb: the logger is not installed; fix: pip install wandb"):
        _train(tiny_bert, three_class_csv, tmp_path / "run", "full", report_to=["wandb"])
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


def test_mlflow_gets_a_named_run_with_thawkits_facts_metrics_and_folder(tiny_bert, three_class_csv, tmp_path, monkeypatch):
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)
    _train(tiny_bert, three_class_csv, tmp_path / "sentiment-v2", "full", report_to=["mlflow"])
    client = mlflow.MlflowClient(store)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.run_name == "sentiment-v2"
    params, logged = run.data.params, run.data.metrics
    assert params["thawkit.strategy"] == "full" and params["thawkit.task"] == "sequence-classification"
    assert int(params["thawkit.trainable_params"]) > 0 and "thawkit.cache.used" in params
    assert logged["final_validation_accuracy"] == pytest.approx(json.loads((tmp_path / "sentiment-v2" / "metrics.json").read_text())
                                                                ["validation"]["accuracy"])
    assert len(client.get_metric_history(run.info.run_id, "loss")) > 1  # every --logging-steps, not once an epoch
    files = {a.path for a in client.list_artifacts(run.info.run_id, "run")}
    assert {"run/thawkit.json", "run/metrics.json", "run/README.md"} <= files


def test_an_mlflow_store_that_cannot_start_is_one_line(tiny_bert, three_class_csv, tmp_path, monkeypatch):
    """MLflow 3 refuses its file store (./mlruns) unless told to: said before training, exit 2, nothing written."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path / 'mlruns'}")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(thawkit.ThawkitError, match=r"--report-to mlflow: the tracking store 'file://.*mlruns' cannot be used "
                                                   r"\(The filesystem tracking backend .*fix: set MLFLOW_TRACKING_URI to a database"):
        _train(tiny_bert, three_class_csv, tmp_path / "run", "full", report_to=["mlflow"])
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


def test_ner_and_qa_runs_load_in_stock_transformers(tiny_bert, tmp_path):
    """NER and QA runs are plain Hugging Face folders: the Auto classes load them with their labels
    and compute the logits thawkit's own model does."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification, AutoTokenizer

    from test_matrix import CONLL, QA_EDGE_CASES

    (tmp_path / "ner.txt").write_text(CONLL)
    ner = _train(tiny_bert, tmp_path / "ner.txt", tmp_path / "ner", "lora", task="ner")  # an unmerged adapter
    qa = thawkit.train(task="qa", model=str(tiny_bert), data=QA_EDGE_CASES, validation=QA_EDGE_CASES, strategy="full", epochs=1,
                       max_length=48, out=tmp_path / "qa", progress="off", measure_forgetting=False)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "qa")
    batch = tokenizer(["When was it built?"], ["The lighthouse was built in 1850."], return_tensors="pt")
    stock = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "qa").eval()
    with torch.inference_mode():
        torch.testing.assert_close(stock(**batch).start_logits, qa.model.eval()(**batch).start_logits)
    from peft import PeftModel
    from transformers import AutoConfig

    assert (tmp_path / "ner" / "adapter_config.json").exists()
    config = AutoConfig.from_pretrained(tmp_path / "ner")  # the labels travel with the adapter
    assert set(config.id2label.values()) == set(ner.labels)
    base = AutoModelForTokenClassification.from_pretrained(str(tiny_bert), config=config)
    stock_ner = PeftModel.from_pretrained(base, str(tmp_path / "ner")).eval()
    words = tokenizer(["Peter Blackburn visited Brussels"], return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(stock_ner(**words).logits, ner.model.eval()(**words).logits)


def test_a_quantized_packaged_model_is_not_its_hub_checkpoint():
    """smollm2-135m is SmolLM2-135M-Instruct de-quantized from Q4_1: the card names the Hub model as
    lineage and says so; the hub id does not silently mean the quantized package."""
    from thawkit.models.backbone import lineage_model_name, lineage_note
    from thawkit.models.packaged import packaged

    assert packaged("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    assert packaged("sentence-transformers/all-MiniLM-L6-v2")[0] == "minilm-l6"  # same weights: same model
    assert lineage_model_name("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "de-quantized from SmolLM2-135M-Instruct.Q4_1.gguf" in lineage_note("smollm2-135m")
    assert lineage_note("minilm-l6") is None


def test_the_card_is_huggingface_hub_metadata_with_the_bases_license(tiny_bert, three_class_csv, tmp_path):
    """Front matter that huggingface_hub parses: the base's license and language inherited from its
    own card, the model-index named after the run with its data file (no local path) and scores
    only (no counts, no loss), metric names given."""
    import shutil

    from huggingface_hub import ModelCard

    base = tmp_path / "base"
    shutil.copytree(tiny_bert, base)
    (base / "README.md").write_text("---\nlicense: mit\nlanguage:\n- en\n---\n# a base\n")
    _train(base, three_class_csv, tmp_path / "sentiment-v1", "full")
    card = ModelCard.load(tmp_path / "sentiment-v1" / "README.md")
    data = card.data
    assert data.license == "mit" and data.language == ["en"] and data.base_model == str(base)
    assert data.model_name == "sentiment-v1" and "strategy-full" in data.tags
    names = {result.metric_type for result in data.eval_results}
    assert {"accuracy", "macro_f1"} <= names and not {"loss", "num_examples"} & names
    assert all(str(tmp_path) not in result.dataset_name for result in data.eval_results)
    assert {result.dataset_name for result in data.eval_results} == {"train.csv (held-out split)"}
    assert all(result.metric_name for result in data.eval_results)
    assert "License: `mit`" in card.text


def test_label_names_name_numeric_labels_everywhere(tiny_bert, tmp_path):
    """--label-names: a file labelled 0/1 gives a run whose predictions, config and stock pipeline
    say negative/positive; evaluate still reads files labelled 0/1 (or by the names)."""
    from transformers import pipeline

    data = tmp_path / "numeric.csv"
    data.write_text("text,label\n" + "".join(f"good thing {i},1\nbad thing {i},0\n" for i in range(20)))
    run = _train(tiny_bert, data, tmp_path / "run", "full", label_names=["negative", "positive"])
    assert run.labels == ["negative", "positive"] and run.info["label_values"] == ["0", "1"]
    assert set(run.predict(["good thing"])[0]["scores"]) == {"negative", "positive"}
    classifier = pipeline("text-classification", model=str(tmp_path / "run"), device=-1)
    assert classifier("good thing")[0]["label"] in ("negative", "positive")
    reloaded = thawkit.load(tmp_path / "run")
    named = tmp_path / "named.csv"
    named.write_text(data.read_text().replace(",1\n", ",positive\n").replace(",0\n", ",negative\n"))
    assert reloaded.evaluate(data)["accuracy"] == reloaded.evaluate(named)["accuracy"]


def _card_python(run_dir) -> str:
    card = (run_dir / "README.md").read_text()
    return card.split("Without thawkit", 1)[1].split("```python\n", 1)[1].split("\n```", 1)[0].replace("RUN_FOLDER", str(run_dir))


def test_each_cards_stock_snippet_runs_without_thawkit_and_agrees_with_thawkit_predict(tiny_bert, three_class_csv, tmp_path):
    """The card's own lines, pasted into an interpreter where thawkit cannot be imported."""
    from stock_python import run_without_thawkit
    from test_matrix import CONLL, PAIRS

    (tmp_path / "ner.txt").write_text(CONLL)
    (tmp_path / "pairs.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS * 6))
    classifier_run = _train(tiny_bert, three_class_csv, tmp_path / "cls", "full")
    answer, _ = run_without_thawkit(_card_python(classifier_run.path), 'classifier("your text")')
    answer = answer[0] if answer and isinstance(answer[0], list) else answer  # one text: a list per text, or the one list
    stock = {d["label"]: d["score"] for d in answer}
    assert stock == pytest.approx(classifier_run.predict(["your text"])[0]["scores"], abs=1e-5)

    ner_run = _train(tiny_bert, tmp_path / "ner.txt", tmp_path / "ner", "full", task="ner")
    text = "Peter Blackburn flew to Brussels"
    found, _ = run_without_thawkit(_card_python(ner_run.path), f'[(e["entity_group"], e["start"], e["end"]) for e in tagger({text!r})]')
    expected_entities = {(e["type"], e["start"], e["end"]) for e in ner_run.predict(text)[0]["entities"]}
    assert expected_entities and {tuple(e) for e in found} == expected_entities

    sim_run = _train(tiny_bert, tmp_path / "pairs.tsv", tmp_path / "sim", "full", task="similarity")
    _, printed = run_without_thawkit(_card_python(sim_run.path))
    expected = sim_run.predict(["A plane takes off"], ["An airplane is taking off"])[0]["similarity"]
    assert float(printed.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-5)


def test_a_feature_head_card_says_no_stock_loader_reads_it(tiny_bert, three_class_csv, tmp_path):
    run = _train(tiny_bert, three_class_csv, tmp_path / "fh", "frozen", strategy_options={"head": "logreg"})
    card = (run.path / "README.md").read_text()
    assert (run.path / "thawkit_head.json").exists() and "No stock loader reads this folder whole" in card
    assert "Without thawkit" not in card and "standard Hugging Face model folder" not in card
