"""The advisor: rule decisions on synthetic profiles, measured domain similarity, the CLI."""

from __future__ import annotations

import json
import math

import pytest

import thawkit
from thawkit.advisor import parse_budget, parse_memory
from thawkit.advisor.rules import FAR_DOMAIN, Situation, dapt_advice, decide
from thawkit.tasks import get_task

RULES = get_task("classification").advisor_rules()  # the default task's rules, as data in its own module
from thawkit.cli.app import main
from thawkit.errors import ConfigError


def situation(n, similarity=0.9, memory=None, model_memory=2.0, budget=None, full_seconds=100.0, per_class=None):
    return Situation(n, similarity, memory, model_memory, budget, full_seconds, per_class)


# profile -> (rule, strategy), following the written rules
PROFILES = [
    (situation(16, per_class=8), "few-labels", "fewshot"),  # docs/benchmarks.md, "Few labels"
    (situation(128, per_class=64), "few-labels", "fewshot"),
    (situation(832, per_class=64), "medium-data", "partial"),  # 13 classes of 64: not measured as few-shot
    (situation(130, per_class=65), "small-data", "frozen"),
    (situation(16, per_class=8, memory=1.0, model_memory=4.0), "memory-short", "lora"),
    (situation(50), "tiny-data", "frozen"),
    (situation(99), "tiny-data", "frozen"),
    (situation(100), "small-data", "frozen"),
    (situation(500, similarity=0.3), "small-data-far-domain", "lora"),
    (situation(499), "small-data", "frozen"),
    (situation(999), "medium-data", "partial"),  # the size sweep and the defaults' seeds (docs/benchmarks.md)
    (situation(1000), "medium-data", "partial"),
    (situation(5000, similarity=0.3), "medium-data-far-domain", "full"),
    (situation(9999), "medium-data", "partial"),
    (situation(10_000), "large-data", "full"),
    (situation(200_000, similarity=0.2), "large-data-far-domain", "full"),
    (situation(200_000, memory=1.0, model_memory=4.0), "memory-short", "lora"),
    (situation(50, memory=1.0, model_memory=4.0), "memory-short", "lora"),
    (situation(20_000, budget=60, full_seconds=3600), "budget-short", "frozen"),
    (situation(20_000, budget=7200, full_seconds=3600), "large-data", "full"),
]


@pytest.mark.parametrize("profile, rule, strategy", PROFILES)
def test_rules_table(profile, rule, strategy):
    decided = decide(profile)
    assert (decided.name, decided.strategy) == (rule, strategy)
    assert decided.reason


def test_dapt_is_recommended_for_far_domains_with_unlabeled_text():
    assert dapt_advice(0.3, None) is None  # no unlabeled text: nothing to pretrain on
    far, near = dapt_advice(FAR_DOMAIN - 0.01, 5000), dapt_advice(FAR_DOMAIN, 5000)
    assert far["recommended"] is True and "5,000" in far["reason"]
    assert near["recommended"] is False and "close to" in near["reason"]


def test_rules_are_readable_data():
    assert len({rule.name for rule in RULES}) == len(RULES)
    assert all(rule.strategy in thawkit.available_strategies() for rule in RULES)
    assert "dapt" in " ".join(decide(situation(200_000, similarity=0.2)).suggestions)
    assert decide(situation(50)).warnings  # tiny data warns


def test_budget_and_memory_parsing():
    assert parse_budget("30m") == 1800 and parse_budget("2h") == 7200 and parse_budget("1h30m") == 5400
    assert parse_memory("16GB") == 16 and parse_memory("512MB") == 0.5
    with pytest.raises(ConfigError, match="--budget"):
        parse_budget("soon")
    with pytest.raises(ConfigError, match="--memory"):
        parse_memory("lots")


@pytest.mark.real
def test_similarity_is_higher_for_general_english(shared_datasets):
    from transformers import AutoModel

    from thawkit.advisor.similarity import measure_domain_similarity
    from thawkit.models.backbone import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer("minilm-l6")
    encoder = AutoModel.from_pretrained(resolve_model_path("minilm-l6"))
    import pandas as pd

    sst2 = pd.read_csv(shared_datasets / "sst2" / "test.tsv", sep="\t", quoting=3)["sentence"].tolist()
    biomedical = [line for line in (shared_datasets / "pubmed_unlabeled" / "biomed_sentences.txt").read_text().splitlines() if line.strip()]
    code = [
        f"def f{i}(x, y=None): return [k ** {i} for k in range({i}, x) if k % 3 == 0] or {{'a': y}}"
        for i in range(60)
    ] + [f"for (int i{i} = 0; i{i} < n; ++i{i}) {{ buf[i{i}] ^= 0x{i:02x}; }}" for i in range(60)]
    general = measure_domain_similarity(sst2, tokenizer, encoder)
    bio = measure_domain_similarity(biomedical, tokenizer, encoder)
    code_like = measure_domain_similarity(code, tokenizer, encoder)
    print("similarity: sst2", general.score, "biomedical", bio.score, "code", code_like.score)
    assert general.score > bio.score + 0.1
    assert general.score > code_like.score + 0.1
    assert set(general.parts) >= {"fragmentation", "unknown_tokens", "embedding"}


@pytest.mark.real
def test_advise_cli_and_strategy_auto(tmp_path, capsys):
    from thawkit.demo import demo_data_path

    main(["advise", "--data", str(demo_data_path()), "--json"])
    advice = json.loads(capsys.readouterr().out)
    # 270 examples, 5 classes of 54 (243 of them train): a few labels per class, measured as fewshot's ground
    assert advice["strategy"] == "fewshot" and advice["rule"] == "few-labels"
    assert "thawkit select" in " ".join(advice["suggestions"])
    assert advice["profile"]["num_classes"] == 5 and advice["profile"]["leaked"] == 0
    assert advice["expected_seconds"] > 0 and advice["expected_memory_gb"] > 0
    # The advice plans the run that will happen: the engine's batch size, and the epochs raised for
    # small data (the rule's 3 epochs at 16 steps each are under the minimum run length).
    from thawkit.engine.core.arguments import MIN_TRAINING_STEPS

    steps_per_epoch = math.ceil(advice["profile"]["num_train"] / advice["batch_size"])
    assert advice["batch_size"] == 16 and steps_per_epoch * 3 < MIN_TRAINING_STEPS
    assert advice["epochs"] > 3 and steps_per_epoch * advice["epochs"] >= MIN_TRAINING_STEPS
    assert 0.0 <= advice["domain"]["score"] <= 1.0
    main(["advise", "--data", str(demo_data_path()), "--budget", "30m"])
    out = capsys.readouterr().out
    assert "strategy" in out and "why" in out
    unlabeled = tmp_path / "tickets.txt"
    unlabeled.write_text("my invoice is wrong\nthe app crashes on login\nplease reset my password\n")
    main(["advise", "--data", str(demo_data_path()), "--unlabeled", str(unlabeled), "--json"])
    dapt = json.loads(capsys.readouterr().out)["dapt"]
    assert dapt["recommended"] is (advice["domain"]["score"] < FAR_DOMAIN) and dapt["unlabeled"] == str(unlabeled)
    run = thawkit.train(data=demo_data_path(), strategy="auto", epochs=1, out=tmp_path / "auto")
    assert run.info["strategy"] == "fewshot" and run.info["advice"]["rule"] == "few-labels"
    assert run.info["body_training"]["steps"] > 0  # the advised strategy really trained its body


def test_masked_lm_signal_where_the_checkpoint_has_a_head(tmp_path, tiny_bert):
    """Pseudo-perplexity is used only with a trained MLM head; a bare encoder checkpoint has none."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from thawkit.advisor.similarity import measure_domain_similarity, pseudo_perplexity
    from thawkit.models.backbone import load_mlm_if_trained

    assert load_mlm_if_trained(str(tiny_bert)) is None  # saved as AutoModel: no MLM head
    with_head = tmp_path / "mlm"
    AutoModelForMaskedLM.from_pretrained(str(tiny_bert)).save_pretrained(str(with_head))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    mlm = load_mlm_if_trained(str(with_head))
    assert mlm is not None
    assert pseudo_perplexity(mlm, tokenizer, ["the film was great"]) > 1.0
    from transformers import AutoModel

    similarity = measure_domain_similarity(["the film was great"] * 5, tokenizer, AutoModel.from_pretrained(str(tiny_bert)), mlm)
    assert "mlm" in similarity.parts and 0.0 <= similarity.parts["mlm"] <= 1.0


@pytest.mark.parametrize("task, n, strategy, rule", [
    ("ner", 1000, "llrd", "ner"), ("ner", 50_000, "llrd", "ner"),
    ("similarity", 50, "frozen", "tiny-data"), ("similarity", 2000, "gradual", "similarity"),
    ("qa", 1000, "llrd", "qa"),
])
def test_task_rules_follow_the_measurements(task, n, strategy, rule):
    chosen = decide(situation(n), task)
    assert (chosen.name, chosen.strategy) == (rule, strategy)
    assert decide(situation(n, memory=1.0, model_memory=4.0), task).strategy == "lora"  # memory first, every task


def test_advise_reads_ner_qa_and_similarity_data(tmp_path, capsys):
    from test_matrix import TASK_ROWS

    for task in ("ner", "similarity", "qa"):
        files = TASK_ROWS[task][0](tmp_path)
        flags = ["--validation", str(files["validation"])] if "validation" in files else []
        main(["advise", "--task", task, "--data", str(files["data"]), *flags, "--json"])
        advice = json.loads(capsys.readouterr().out)
        assert advice["strategy"] == decide(situation(advice["profile"]["num_train"], advice["domain"]["score"]), task).strategy
        assert advice["profile"]["num_train"] > 0 and advice["expected_seconds"] > 0
        measured = thawkit.registry.get_strategy_class(advice["strategy"])().defaults_for(task, 22_700_000)["lr"]
        assert advice["learning_rate"] == measured  # the task's measured default, not classification's
        if task == "ner":
            assert advice["profile"]["num_classes"] == 9 and advice["max_length"] == 32  # B-/I- of 4 types + O; short sentences
        if task == "qa":
            assert advice["max_length"] == 384  # windows over long contexts: the task's own length
    main(["advise", "--task", "ner", "--data", str(tmp_path / "train.txt")])
    assert "thawkit train --task ner" in capsys.readouterr().out


def test_strategy_auto_for_ner(tmp_path, tiny_bert):
    from test_matrix import TASK_ROWS

    files = TASK_ROWS["ner"][0](tmp_path)
    run = thawkit.train(task="ner", data=files["data"], model=str(tiny_bert), strategy="auto", epochs=1, max_length=32,
                        out=tmp_path / "auto", progress="off", measure_forgetting=False)
    assert run.info["strategy"] == "llrd" and run.info["advice"]["rule"] == "ner"
    assert run.info["learning_rate"] == 3e-4  # the NER table's llrd entry for a small encoder


def test_time_estimate_knows_the_cache():
    """Issue 10: the advisor promised 49 min for a gradual run that took 22 s. The estimate must
    charge cached strategies for what they compute: frozen one pass whatever the epochs, partial and
    gradual less than full fine-tuning, and every trained strategy in proportion to its epochs."""
    from thawkit.advisor.estimate import FEATURE_HEAD_FIT_SECONDS, RUN_FIXED_SECONDS, Throughput, expected_seconds

    probe = Throughput(train_seconds_per_example=0.01, forward_seconds_per_example=0.003, optimizer_step_seconds=0.05)
    seconds = {name: expected_seconds(name, probe, 5000, 3, 1000, 16) for name in ("frozen", "partial", "gradual", "lora", "full")}
    assert seconds["frozen"] == pytest.approx(RUN_FIXED_SECONDS + 0.003 * 6000 + FEATURE_HEAD_FIT_SECONDS)
    assert expected_seconds("frozen", probe, 5000, 10, 1000, 16) == seconds["frozen"]  # no epochs to pay for
    assert seconds["frozen"] < seconds["partial"] < seconds["full"] and seconds["gradual"] < seconds["full"]
    doubled = expected_seconds("full", probe, 5000, 6, 1000, 16) - RUN_FIXED_SECONDS
    assert doubled == pytest.approx(2 * (seconds["full"] - RUN_FIXED_SECONDS))


STALL_SECONDS = 3.0


def test_speed_probe_ignores_a_one_off_stall(tiny_bert):
    """A busy machine made one timed pass of the probe many times slower and the advisor promised
    1,352 s for a run of a few minutes; the probe keeps the fastest of several passes."""
    import time as time_module

    from transformers import AutoModel, AutoTokenizer

    from thawkit.advisor.estimate import probe_throughput

    model, tokenizer = AutoModel.from_pretrained(tiny_bert), AutoTokenizer.from_pretrained(tiny_bert)
    texts = ["a short sentence about the weather"] * 16
    quiet = probe_throughput(model, tokenizer, texts, 32)
    calls = {"n": 0}
    forward = model.forward

    def stalls_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the first timed training pass (after the warm-up)
            time_module.sleep(STALL_SECONDS)
        return forward(*args, **kwargs)

    model.forward = stalls_once
    stalled = probe_throughput(model, tokenizer, texts, 32)
    assert calls["n"] >= 4
    # Kept, the stall alone would add STALL_SECONDS / 16 per example; the slack (a tenth of that) absorbs a busy
    # machine's noise on passes of a few milliseconds (0.5 s with 0.003 s of slack failed under a parallel benchmark).
    assert stalled.train_seconds_per_example < 5 * quiet.train_seconds_per_example + STALL_SECONDS / 16 / 10


def test_busy_machine_is_reported():
    from thawkit.advisor.estimate import busy_machine_note

    assert busy_machine_note(load_average=0.5, cores=2) is None
    assert busy_machine_note(load_average=2.5, cores=2) is None  # this process and the cores' worth of others
    note = busy_machine_note(load_average=4.0, cores=2)
    assert note and "load average 4.0 on 2 cores" in note


def test_the_advisor_warns_that_a_decoder_tags_from_the_left_only(tmp_path, tiny_bert, tiny_decoders):
    from test_matrix import TASK_ROWS

    from thawkit.advisor import advise

    files = TASK_ROWS["ner"][0](tmp_path)
    decoder = advise(files["data"], model=str(tiny_decoders["llama"]), task="ner", max_length=32)
    assert any("only the words to its left" in w and "0.395-0.469" in w for w in decoder.warnings)
    encoder = advise(files["data"], model=str(tiny_bert), task="ner", max_length=32)
    assert not any("to its left" in w for w in encoder.warnings)
    toy = tmp_path / "toy.csv"
    thawkit.testing.write_toy_csv(toy, n=60)
    classification = advise(toy, model=str(tiny_decoders["llama"]), max_length=32)  # the last token reads the whole text
    assert not any("to its left" in w for w in classification.warnings)
