"""The mechanisms behind the defaults (docs/defaults.md has the real-data measurements): the
checkpoint's own pooling, class weights on skewed data, majority-class models reported as failed,
and `thawkit info` telling what a run really is."""

from __future__ import annotations

import json

import numpy as np
import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.guards.imbalance import check_collapse
from thawkit.models.backbone import checkpoint_pooling
from thawkit.strategies.frozen import resolve_features
from thawkit.tasks.ner import ner_detailed_metrics
from thawkit.testing import make_tiny_model, write_toy_csv


@pytest.fixture(scope="module")
def sentence_transformers_model(tmp_path_factory):
    """A tiny checkpoint in the sentence-transformers layout, trained (as it says) with max pooling."""
    path = make_tiny_model(tmp_path_factory.mktemp("st-model"))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
                                                                 "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}))
    return path


def test_pooling_is_read_from_the_checkpoint(sentence_transformers_model, tiny_bert):
    pooling = checkpoint_pooling(str(sentence_transformers_model))
    assert pooling is not None and pooling.mode == "max" and not pooling.normalize
    assert checkpoint_pooling(str(tiny_bert)) is None  # a plain transformers folder
    embedded = checkpoint_pooling("minilm-l6")
    assert embedded is not None and embedded.mode == "mean" and embedded.normalize
    # auto: the checkpoint's pooling with logistic regression; a plain checkpoint keeps its own [CLS] head.
    assert resolve_features("auto", "auto", "max", multi_label=False) == ("max", "select")
    assert resolve_features("auto", "auto", None, multi_label=False) == ("cls", "linear")
    assert resolve_features("auto", "auto", "mean", multi_label=True) == ("mean", "linear")


def test_frozen_and_similarity_use_the_checkpoint_pooling(sentence_transformers_model, toy_csv, tmp_path):
    run = thawkit.train(data=toy_csv, model=str(sentence_transformers_model), strategy="frozen", max_length=32,
                        out=tmp_path / "frozen", progress="off")
    assert run.info["strategy_resolved"] == {"pooling": "max", "head": "select", "checkpoint_pooling": "max"}
    assert run.info["learning_rate"] is None and run.info["global_steps"] == 0  # fitted, not trained
    assert run.model.pooling == "max"
    # The better of logistic regression and an MLP on validation is kept, and the saved run is that head.
    chosen = run.model.head_kind
    assert chosen in ("logreg", "mlp") and f"{chosen} chosen on validation" in run.info["head_fit"]
    reloaded = thawkit.load(tmp_path / "frozen")
    assert reloaded.model.head_kind == chosen
    assert reloaded.predict(["a great film"]) == run.predict(["a great film"])
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("sentence1,sentence2,score\n" + "a cat sleeps,a cat is sleeping,5\na dog runs,stocks fell,0\n" * 10)
    similarity = thawkit.train(task="similarity", data=pairs, model=str(sentence_transformers_model), strategy="full",
                               epochs=1, max_length=32, out=tmp_path / "sim", progress="off")
    assert similarity.model.pooling == "max"
    assert json.loads((tmp_path / "sim" / "1_Pooling" / "config.json").read_text())["pooling_mode_max_tokens"] is True
    assert thawkit.load(tmp_path / "sim").model.pooling == "max"


def test_class_weights_follow_the_skew(tiny_bert, tmp_path):
    skewed = tmp_path / "skewed.csv"
    rows = [("great film superb", "positive")] * 90 + [("awful film dull", "negative")] * 20
    skewed.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    run = thawkit.train(data=skewed, model=str(tiny_bert), strategy="frozen", epochs=1, max_length=16,
                        out=tmp_path / "a", progress="off", measure_forgetting=False)
    weights = dict(zip(run.labels, run.info["class_weights"]))
    assert weights["negative"] > 3 * weights["positive"]  # auto: 4.5:1 is skewed
    balanced = write_toy_csv(tmp_path / "balanced.csv", n=60)
    run = thawkit.train(data=balanced, model=str(tiny_bert), strategy="frozen", epochs=1, max_length=16,
                        out=tmp_path / "b", progress="off", measure_forgetting=False)
    assert run.info["class_weights"] is None
    run = thawkit.train(data=skewed, model=str(tiny_bert), strategy="frozen", epochs=1, max_length=16, class_weights="none",
                        out=tmp_path / "c", progress="off", measure_forgetting=False)
    assert run.info["class_weights"] is None


def test_majority_class_model_is_a_failure():
    collapsed = {"macro_f1": 0.4, "confusion_matrix": {"format": "rows = gold, columns = predicted", "labels": ["a", "b"],
                                                       "matrix": [[30, 0], [10, 0]]}}
    [finding] = check_collapse(collapsed)
    assert "'a' for every validation example" in finding.message
    healthy = {"confusion_matrix": {"format": "rows = gold, columns = predicted", "labels": ["a", "b"], "matrix": [[25, 5], [3, 7]]}}
    assert check_collapse(healthy) == []
    # A few-shot validation split (2 examples, both called 'a') is no evidence either way.
    tiny = {"confusion_matrix": {"format": "rows = gold, columns = predicted", "labels": ["a", "b"], "matrix": [[1, 0], [1, 0]]}}
    assert check_collapse(tiny) == []


def test_tagger_that_finds_no_entity_is_a_failure():
    labels = ["O", "B-PER", "I-PER"]
    gold = np.array([[-100, 1, 2, 0, -100], [-100, 0, 1, 0, -100]])
    all_o = np.zeros((2, 5, 3))
    all_o[..., 0] = 1.0
    metrics = ner_detailed_metrics(all_o, gold, labels)
    assert (metrics["gold_entities"], metrics["predicted_entities"], metrics["f1"]) == (2, 0, 0.0)
    [finding] = check_collapse(metrics)
    assert finding.guard == "majority-class" and "none of its 2 entities" in finding.message
    one_hit = all_o.copy()
    one_hit[0, 1] = [0.0, 1.0, 0.0]  # one B-PER found: a weak tagger, not a collapsed one
    assert check_collapse(ner_detailed_metrics(one_hit, gold, labels)) == []
    assert check_collapse({"predicted_entities": 0, "gold_entities": 0}) == []  # nothing to find


def test_info_describes_a_pooled_logistic_regression_run(tiny_bert, toy_csv, tmp_path, capsys):
    thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="frozen", strategy_options={"pooling": "mean", "head": "logreg"},
                  max_length=32, out=tmp_path / "run", progress="off")
    capsys.readouterr()
    main(["info", str(tmp_path / "run")])
    shown = " ".join(capsys.readouterr().out.split())
    assert "closed-form (scikit-learn logistic regression)" in shown and "n/a (closed-form fit)" in shown
    assert "pooled-feature classifier" in shown and "66 of" in shown  # 32 x 2 + 2: the head only, no pooler


def test_head_multiplier_flag_reaches_the_run(tiny_bert, toy_csv, tmp_path):
    main(["train", "--data", str(toy_csv), "--model", str(tiny_bert), "--strategy", "full", "--epochs", "1",
          "--head-lr-mult", "3", "--max-length", "32", "--out", str(tmp_path / "run"), "--progress", "off"])
    saved = json.loads((tmp_path / "run" / "thawkit.json").read_text())
    assert saved["config"]["head_lr_mult"] == 3.0


def test_default_learning_rate_follows_model_size(tiny_bert, toy_csv, tmp_path):
    full = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="full", epochs=1, max_length=32,
                         out=tmp_path / "full", progress="off", measure_forgetting=False)
    # A small encoder: the classification table's full entry (1e-4, its fresh head at 10x; docs/defaults.md)
    assert full.info["learning_rate"] == 1e-4 and full.info["config"]["head_lr_mult"] == 10
    partial = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="partial", epochs=1, max_length=32,
                            out=tmp_path / "partial", progress="off", measure_forgetting=False)
    assert partial.info["learning_rate"] == 3e-4 and partial.info["config"]["head_lr_mult"] == 1
    assert "measured for classification/partial/small" in partial.info["defaults_source"]
    for name, base_lr in (("full", 3e-5), ("partial", 5e-5)):  # BERT-base keeps the usual LRs and a 1x head
        base = thawkit.registry.get_strategy_class(name)().defaults_for("classification", 110_000_000)
        assert (base["lr"], base["head_lr_mult"]) == (base_lr, 1.0)


def test_collapsed_model_is_marked_and_strict_stops_it(tiny_bert, toy_csv, tmp_path, capsys):
    # The tiny random model cannot learn the toy task in one epoch: it predicts one class.
    run = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="full", epochs=1, max_length=32,
                        out=tmp_path / "run", progress="off", measure_forgetting=False)
    matrix = run.metrics["validation"]["confusion_matrix"]["matrix"]
    single = sum(1 for j in range(len(matrix)) if any(row[j] for row in matrix)) == 1
    assert bool(run.info["failed"]) == single
    if not single:
        pytest.skip("this tiny model happened to predict both classes")
    assert "majority-class" in [g["guard"] for g in run.info["guards"]]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(toy_csv), "--model", str(tiny_bert), "--epochs", "1", "--max-length", "32",
              "--strict", "--out", str(tmp_path / "strict"), "--progress", "off", "--no-measure-forgetting"])
    assert exit_info.value.code == 2 and "majority-class" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists() and not list(tmp_path.glob(".strict*"))


def test_measured_defaults_table_applies_per_task_and_model_size(tiny_bert, tmp_path):
    """The LR comes from strategies/measured_defaults.json for (task, strategy, size) when it has
    an entry (NER on a small model), else from the strategy (classification); a given --lr wins."""
    from thawkit.strategies import get_strategy_class
    from thawkit.strategies.base import measured_defaults
    from test_matrix import CONLL

    table = measured_defaults()
    assert table["ner"]["full"]["small"]["lr"] != get_strategy_class("full")().default_lr_for(1_000_000)
    (tmp_path / "train.txt").write_text(CONLL)
    run = thawkit.train(task="ner", data=tmp_path / "train.txt", model=str(tiny_bert), strategy="full", epochs=1, max_length=32,
                        out=tmp_path / "ner", progress="off", measure_forgetting=False)
    assert run.info["learning_rate"] == table["ner"]["full"]["small"]["lr"]
    assert "measured for ner/full/small" in run.info["defaults_source"]
    big = get_strategy_class("full")().defaults_for("ner", 110_000_000)
    assert big["lr"] == get_strategy_class("full").default_lr and "default" in big["source"]
    given = thawkit.train(task="ner", data=tmp_path / "train.txt", model=str(tiny_bert), strategy="full", epochs=1, max_length=32,
                          lr=2e-5, out=tmp_path / "given", progress="off", measure_forgetting=False)
    assert given.info["learning_rate"] == 2e-5


def test_a_measured_default_does_not_trip_the_learning_rate_guard(tiny_bert, tmp_path):
    """NER partial on a small model defaults to 1e-3, over 3x partial's general sane maximum:
    thawkit must not warn about its own measured default, yet still warns at 3x above it."""
    from thawkit.strategies import get_strategy_class
    from thawkit.strategies.base import measured_defaults
    from test_matrix import CONLL

    default = measured_defaults()["ner"]["partial"]["small"]["lr"]
    assert default > 3 * get_strategy_class("partial").sane_max_lr  # the case this test is about
    (tmp_path / "train.txt").write_text(CONLL)
    common = dict(task="ner", data=tmp_path / "train.txt", model=str(tiny_bert), strategy="partial", epochs=1, max_length=32,
                  progress="off", measure_forgetting=False)
    run = thawkit.train(**common, out=tmp_path / "default")
    assert run.info["learning_rate"] == default
    assert "learning-rate" not in [g["guard"] for g in run.info["guards"]]
    high = thawkit.train(**common, lr=4 * default, out=tmp_path / "high")
    assert "learning-rate" in [g["guard"] for g in high.info["guards"]]


def test_small_data_gets_enough_optimizer_steps(tiny_bert, toy_csv, tmp_path):
    from thawkit.engine.core.arguments import MAX_RAISED_EPOCHS, MIN_TRAINING_STEPS
    from thawkit.testing import write_toy_csv

    def planned(n: int, **options):
        data = write_toy_csv(tmp_path / f"train{n}.csv", n=n)
        return thawkit.plan(data=data, validation=toy_csv, model=str(tiny_bert), **options)

    small = planned(200)  # 13 steps an epoch at batch 16: 39 steps at 3 epochs
    assert small.config.epochs == MAX_RAISED_EPOCHS and "13 optimizer steps" in small.source("epochs")
    medium = planned(700)  # 44 steps an epoch: 4 epochs reach 150
    assert medium.config.epochs == 4 and 44 * 4 >= MIN_TRAINING_STEPS
    large = planned(5000)  # enough steps at the default
    assert large.config.epochs == 3 and large.source("epochs") == "default"
    given = planned(200, epochs=3)
    assert given.config.epochs == 3 and given.source("epochs") == "argument"  # --epochs always wins


def test_early_stopping_waits_for_warmup_and_a_minimum_of_steps():
    from types import SimpleNamespace

    from thawkit.engine.core.best import BestStateCallback

    def run(count_from: int) -> list[bool]:
        best = BestStateCallback([], "accuracy", greater_is_better=True, patience=2, restore=False, count_from_step=count_from)
        stops = []
        for step, value in ((13, 0.5), (26, 0.5), (39, 0.5), (52, 0.5), (65, 0.5)):  # flat: still the starting point
            control = SimpleNamespace(should_training_stop=False)
            best.on_evaluate(None, SimpleNamespace(global_step=step, epoch=step / 13), control, metrics={"eval_accuracy": value})
            stops.append(control.should_training_stop)
        return stops

    assert run(0) == [False, False, True, True, True]  # the old rule: stopped at step 39
    assert run(40) == [False, False, False, False, True]  # steps 52 and 65 count, not 26 and 39


def test_default_epochs_rise_on_a_tiny_training_set(tiny_bert, toy_csv, tmp_path):
    run = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="partial", max_length=32, out=tmp_path / "run",
                        progress="off", measure_forgetting=False, early_stopping_patience=0)
    # 108 training rows at batch 16 = 7 steps an epoch: 10 epochs (70 steps) instead of 3 (21)
    assert run.info["config"]["epochs"] == 10 and "7 optimizer steps" in run.info["epochs_source"]
    assert run.info["global_steps"] == 70
    given = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="partial", epochs=1, max_length=32,
                          out=tmp_path / "given", progress="off", measure_forgetting=False)
    assert given.info["config"]["epochs"] == 1 and given.info["epochs_source"] is None
    # A head fitted in closed form runs no epochs: nothing is raised, and thawkit.json does not say so.
    closed = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="frozen", strategy_options={"pooling": "mean", "head": "logreg"},
                           max_length=32, out=tmp_path / "closed", progress="off", measure_forgetting=False)
    assert "closed-form" in closed.info["head_fit"]
    assert closed.info["config"]["epochs"] == 3 and closed.info["epochs_source"] is None


def test_frozen_feature_layer_feeds_the_head_from_a_lower_layer(tiny_bert, tmp_path):
    """``feature_layer`` k keeps layers 1..k: the head reads what was layer k's output in the full model, the
    saved run is a standard model of depth k, and a layer the model lacks is a one-line error."""
    import torch
    from transformers import AutoModel, AutoModelForTokenClassification

    from thawkit.models.layout import find_layer_list, keep_layers
    from test_matrix import CONLL

    full = AutoModel.from_pretrained(str(tiny_bert)).eval()
    depth = len(find_layer_list(full)[1])
    assert depth >= 2  # the case this test is about
    inputs = {"input_ids": torch.tensor([[2, 7, 11, 5, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with torch.no_grad():
        layer_one = full(**inputs, output_hidden_states=True).hidden_states[1]
        keep_layers(full, [0])
        assert torch.allclose(full(**inputs).last_hidden_state, layer_one, atol=1e-6)

    (tmp_path / "train.txt").write_text((CONLL + "\n") * 4)
    common = dict(task="ner", data=tmp_path / "train.txt", model=str(tiny_bert), strategy="frozen", epochs=1, max_length=32,
                  progress="off", measure_forgetting=False)
    run = thawkit.train(**common, strategy_options={"feature_layer": -depth}, out=tmp_path / "bottom")
    assert run.info["strategy_resolved"]["feature_layer"] == 1
    assert run.info["strategy_resolved"]["encoder_layers"] == depth
    saved = AutoModelForTokenClassification.from_pretrained(str(tmp_path / "bottom"))
    assert saved.config.num_hidden_layers == 1 and len(find_layer_list(saved)[1]) == 1
    assert thawkit.load(tmp_path / "bottom").predict("Peter visited Paris") == run.predict("Peter visited Paris")
    with pytest.raises(thawkit.ThawkitError, match="--feature-layer"):
        thawkit.train(**common, strategy_options={"feature_layer": depth + 1}, out=tmp_path / "too-deep")
    assert not (tmp_path / "too-deep").exists()


def test_measured_strategy_options_apply_unless_given(tiny_bert, tmp_path):
    """measured_defaults.json carries strategy options too (frozen NER: features from a lower layer); on a
    shallower model the measured layer is clamped, and an option the user gives wins."""
    from thawkit.strategies import get_strategy_class
    from thawkit.strategies.base import measured_defaults
    from test_matrix import CONLL

    measured = measured_defaults()["ner"]["frozen"]["small"]["options"]["feature_layer"]
    assert measured < -1  # below the top layer
    assert get_strategy_class("frozen")().defaults_for("ner", 1_000_000)["options"] == {"feature_layer": measured}
    assert get_strategy_class("frozen")().defaults_for("ner", 110_000_000)["options"] == {}
    (tmp_path / "train.txt").write_text((CONLL + "\n") * 4)
    common = dict(task="ner", data=tmp_path / "train.txt", model=str(tiny_bert), strategy="frozen", epochs=1, max_length=32,
                  progress="off", measure_forgetting=False)
    run = thawkit.train(**common, out=tmp_path / "measured")
    depth = run.info["strategy_resolved"]["encoder_layers"]
    assert run.info["strategy_resolved"]["feature_layer"] == max(1, depth + 1 + measured)
    given = thawkit.train(**common, strategy_options={"feature_layer": -1}, out=tmp_path / "given")
    assert given.info["strategy_resolved"]["feature_layer"] == depth


@pytest.mark.parametrize("strategy, small, base", [
    ("dora", 3e-3, 5e-4),     # SST-2 2k sweep; from 50M parameters LoRA's base default
    ("ia3", 1e-2, 3e-3),
    ("adalora", 1e-2, 1e-3),
    ("prompt", 3e-2, 3e-3),   # small: the strategy's own small-model rate; base: 10x lower (3e-2 diverged on smollm2-135m)
])
def test_peft_family_defaults_per_model_size(strategy, small, base):
    from thawkit.strategies import get_strategy_class

    cls = get_strategy_class(strategy)
    small_defaults, base_defaults = cls().defaults_for("classification", 22_700_000), cls().defaults_for("classification", 134_500_000)
    assert small_defaults["lr"] == small and base_defaults["lr"] == base
    measured = strategy != "prompt"
    assert ("measured for classification/" in small_defaults["source"]) == measured
    assert base_defaults["lr"] < cls.sane_max_lr and small_defaults["lr"] <= cls.sane_max_lr
