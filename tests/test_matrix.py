"""Every task × every strategy, generated from the two registries (tiny models).

A new strategy adds one row to STRATEGY_ROWS; a new task adds one row to TASK_ROWS (its toy data
and a prediction input). The tests below fail until the row exists.
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import thawkit
from thawkit.cli.app import main
from thawkit.errors import ThawkitError
from thawkit.guards.forgetting import encoder_state
from thawkit.testing import make_tiny_model, toy_sentiment_rows

QA_EDGE_CASES = Path(__file__).parent / "data" / "qa_edge_cases.json"

CONLL = "\n\n".join([
    "Peter B-PER\nBlackburn I-PER\nvisited O\nBrussels B-LOC\n. O",
    "EU B-ORG\nrejects O\nGerman B-MISC\ncall O",
    "Angela B-PER\nMerkel I-PER\nflew O\nto O\nParis B-LOC",
    "The O\nUN B-ORG\nmet O\nin O\nGeneva B-LOC",
] * 6) + "\n"

PAIRS = [("a plane is taking off", "an air plane is taking off", 5.0), ("a man plays a flute", "a man plays a guitar", 2.2),
         ("a cat sleeps", "the stock market fell", 0.0), ("a woman slices onions", "a woman is cutting an onion", 4.6)]


def _classification(folder: Path) -> dict:
    path = folder / "train.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *toy_sentiment_rows(60)])
    return {"data": path}


def _ner(folder: Path) -> dict:
    path = folder / "train.txt"
    path.write_text(CONLL)
    return {"data": path}


def _qa(folder: Path) -> dict:
    return {"data": QA_EDGE_CASES, "validation": QA_EDGE_CASES, "max_length": 48}


def _similarity(folder: Path) -> dict:
    path = folder / "pairs.tsv"
    path.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS * 6))
    # A validation file with every score level: a random 10% of 24 pairs can hold one score only,
    # where Spearman is undefined (written as null).
    return {"data": path, "validation": path}


def _generation(folder: Path) -> dict:
    path = folder / "pairs.csv"
    with path.open("w", newline="") as handle:  # two references per prompt: held out together
        csv.writer(handle).writerows([("prompt", "completion"), *GENERATION_ROWS])
    return {"data": path, "max_length": 24}


GENERATION_ROWS = [(f"say {word}", answer) for word in ("great", "awful", "boring", "superb", "movie", "plot", "story", "music")
                   for answer in (f"{word} film", f"a {word} film")] * 3

# task -> (toy data writer, prediction input (texts, pairs))
TASK_ROWS = {
    "classification": (_classification, (["the film was great", "awful and boring"], None)),
    "ner": (_ner, (["Peter Blackburn visited Brussels"], None)),
    "qa": (_qa, (["When was the lighthouse built?"], [json.loads(QA_EDGE_CASES.read_text())["data"][0]["paragraphs"][0]["context"]])),
    "similarity": (_similarity, (["a plane is taking off"], ["an air plane is taking off"])),
    "generation": (_generation, (["say great", "say plot"], None)),
}
# Tasks whose models are decoders (a language model's head): the matrix trains them on the tiny Llama.
DECODER_TASKS = {"generation"}

# row id -> (strategy, options)
STRATEGY_ROWS = {
    "full": ("full", {}),
    "frozen": ("frozen", {}),
    "partial": ("partial", {"freeze_layers": 1}),
    "gradual": ("gradual", {}),
    "llrd": ("llrd", {"decay": 0.5}),
    "lora": ("lora", {}),
    "lora-merged": ("lora", {"merge": True}),  # the merged model must predict what the adapter did, every task
    "dora": ("dora", {}),
    "ia3": ("ia3", {}),
    "adalora": ("adalora", {"every": 1}),  # reallocates ranks on the toy run's few steps
    "prompt": ("prompt", {"virtual_tokens": 4}),
    "p-tuning": ("prompt", {"method": "p-tuning", "virtual_tokens": 4}),
    "prefix": ("prompt", {"method": "prefix", "virtual_tokens": 4}),
    "fewshot": ("fewshot", {"body_epochs": 4, "pair_batch": 8}),
}
# Refused with a fix, before training: thawkit uses peft's prompt learning for sequence classification
# and generation only, and peft's prefix tuning passes past_key_values, which transformers 5 models do not take.
REFUSED = {**{(row, task): f"--strategy prompt is not available for --task {task}" for row in ("prompt", "p-tuning", "prefix")
              for task in ("ner", "qa", "similarity")},
           **{("prefix", task): "--prompt-method prefix needs a model whose forward takes past_key_values"
              for task in ("classification", "generation")},
           # A pooled-feature classifier: classification only.
           **{("fewshot", task): "--strategy fewshot with a pooled-feature head .* is for classification"
              for task in ("ner", "qa", "similarity", "generation")}}


def test_every_registered_task_and_strategy_has_a_row():
    assert set(TASK_ROWS) == set(thawkit.available_tasks())
    assert {strategy for strategy, _ in STRATEGY_ROWS.values()} == set(thawkit.available_strategies())


def _block(name: str) -> str:
    """Block of a bare-backbone parameter name (AutoModel naming: BERT's or Llama's)."""
    parts = name.split(".")
    if parts[0] == "layers":
        return f"layer.{parts[1]}"
    if parts[0] == "norm":
        return "head"
    if "layer" in parts and parts[parts.index("layer") - 1] in ("encoder", "transformer"):
        return f"layer.{parts[parts.index('layer') + 1]}"
    return "head" if parts[0] == "pooler" else "embeddings"


@pytest.mark.parametrize("row", list(STRATEGY_ROWS))
@pytest.mark.parametrize("task", list(TASK_ROWS))
def test_task_with_strategy(task, row, tiny_bert, tiny_decoders, tmp_path, capsys):
    from transformers import AutoModel

    if task in DECODER_TASKS:
        tiny_bert = tiny_decoders["llama"]
    strategy, options = STRATEGY_ROWS[row]
    write_data, (texts, pairs) = TASK_ROWS[task]
    (tmp_path / "data").mkdir()
    files = {"max_length": 32, **write_data(tmp_path / "data")}
    if (row, task) in REFUSED:
        with pytest.raises(ThawkitError, match=REFUSED[row, task]):
            thawkit.train(task=task, model=str(tiny_bert), strategy=strategy, strategy_options=options, epochs=1,
                          out=tmp_path / "run", progress="off", **files)
        assert not (tmp_path / "run").exists()
        return
    run = thawkit.train(task=task, model=str(tiny_bert), strategy=strategy, strategy_options=options, epochs=2, lr=5e-3,
                        batch_size=8, out=tmp_path / "run", early_stopping_patience=0, select_best=False, progress="off", **files)

    # The run records what it is, and every evaluation.
    assert run.info["strategy"] == strategy and run.info["metric"] in run.metrics["validation"]
    assert [h["epoch"] for h in run.history] == [1.0, 2.0] or run.info["global_steps"] == 0
    # Blocks no stage ever trained are bitwise the pretrained ones (adapters merged in a copy).
    trainable_blocks = {b for stage in run.info["stages"] for b in stage["trainable_blocks"]}
    pretrained = AutoModel.from_pretrained(str(tiny_bert)).state_dict()
    trained = encoder_state(run.model)
    frozen = [n for n in trained if n in pretrained and _block(n) not in trainable_blocks]
    assert all(torch.equal(trained[n], pretrained[n]) for n in frozen), [n for n in frozen if not torch.equal(trained[n], pretrained[n])]
    if trainable_blocks - {"head"}:  # some encoder block trained: it moved
        moved = [n for n in trained if n in pretrained and _block(n) in trainable_blocks and not torch.equal(trained[n], pretrained[n])]
        assert moved
    # The saved run predicts what the trained one did.
    reloaded = thawkit.load(tmp_path / "run")
    expected, got = run.predict(texts, pairs), reloaded.predict(texts, pairs)
    assert json.dumps(got, sort_keys=True, default=lambda v: round(float(v), 4)) == json.dumps(expected, sort_keys=True, default=lambda v: round(float(v), 4)) or \
        np.allclose(_numbers(got), _numbers(expected), atol=1e-4)
    # Stock tools see the training length and a model card with the measured metrics.
    saved = tmp_path / "run"
    assert json.loads((saved / "tokenizer_config.json").read_text())["model_max_length"] == run.info["config"]["max_length"]
    card = (saved / "README.md").read_text()
    assert card.startswith("---\n") and "model-index:" in card and f"strategy-{strategy}" in card
    if options.get("merge"):
        assert run.info["merged_lora"] and not (tmp_path / "run" / "adapter_config.json").exists()
    if row in ("full", "lora"):  # the card's usage snippet runs as written (a standard folder and an adapter)
        snippet = card.split("## Use", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
        argv = shlex.split(snippet.replace("RUN_FOLDER", str(saved)))
        assert argv[:2] == ["thawkit", "predict"]
        capsys.readouterr()
        main(argv[1:])  # returns normally: exit code 0
        printed = capsys.readouterr().out.strip().splitlines()
        assert printed and all(isinstance(json.loads(line), dict) for line in printed)


# Decoders: every task through the same pipeline; a static, a cached and an adapter strategy per task.
DECODER_STRATEGY_ROWS = ("full", "partial", "lora")


@pytest.mark.parametrize("strategy", DECODER_STRATEGY_ROWS)
@pytest.mark.parametrize("task", list(TASK_ROWS))
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_decoder_backbones(arch, task, strategy, tiny_decoders, tmp_path):
    write_data, (texts, pairs) = TASK_ROWS[task]
    (tmp_path / "data").mkdir()
    files = {"max_length": 32, **write_data(tmp_path / "data")}
    run = thawkit.train(task=task, model=str(tiny_decoders[arch]), strategy=strategy, epochs=2, lr=5e-3, batch_size=8,
                        out=tmp_path / "run", early_stopping_patience=0, select_best=False, progress="off", **files)
    assert run.info["model_type"] == arch and run.info["metric"] in run.metrics["validation"]
    if strategy == "partial" and TASK_ROWS[task] and thawkit.tasks.get_task(task).cacheable:
        assert run.info["cache"]["used"] is True, run.info["cache"]
    if strategy == "partial":  # the frozen bottom layer is the pretrained one (every head loads the real backbone)
        from transformers import AutoModel

        pretrained = AutoModel.from_pretrained(str(tiny_decoders[arch])).state_dict()
        trained = dict(run.model.named_parameters())
        bottom = [k for k in pretrained if k.startswith(("layers.0.", "h.0."))]
        matched = [(k, n) for k in bottom for n in trained if n.endswith("." + k)]
        assert bottom and len(matched) == len(bottom)
        assert all(torch.equal(trained[n], pretrained[k]) for k, n in matched)
    reloaded = thawkit.load(tmp_path / "run")
    assert np.allclose(_numbers(reloaded.predict(texts, pairs)), _numbers(run.predict(texts, pairs)), atol=1e-4)
    assert reloaded.tokenizer.pad_token is not None  # the run's tokenizer pads as training did


# The rest of the PEFT family on decoders (peft's own module tables for Llama and GPT-2). peft's prefix
# tuning passes past_key_values, which transformers 5 models no longer take: refused with a fix.
DECODER_PEFT_ROWS_INIT_R = 12  # AdaLoRA's default
DECODER_PEFT_ROWS = {"dora": {}, "ia3": {}, "adalora": {"every": 1}, "prompt": {"virtual_tokens": 4},
                     "prefix": {"method": "prefix", "virtual_tokens": 4}}


@pytest.mark.parametrize("row", list(DECODER_PEFT_ROWS))
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_peft_family_on_decoders(arch, row, tiny_decoders, tmp_path):
    write_data, (texts, pairs) = TASK_ROWS["classification"]
    (tmp_path / "data").mkdir()
    strategy = "prompt" if row == "prefix" else row
    if row == "prefix":
        with pytest.raises(ThawkitError, match="--prompt-method prefix needs a model whose forward takes past_key_values"):
            thawkit.train(task="classification", model=str(tiny_decoders[arch]), strategy=strategy, strategy_options=DECODER_PEFT_ROWS[row],
                          epochs=1, out=tmp_path / "run", progress="off", **write_data(tmp_path / "data"))
        assert not (tmp_path / "run").exists()
        return
    run = thawkit.train(task="classification", model=str(tiny_decoders[arch]), strategy=strategy, strategy_options=DECODER_PEFT_ROWS[row],
                        epochs=2, lr=5e-3, batch_size=8, max_length=32, out=tmp_path / "run", early_stopping_patience=0,
                        select_best=False, progress="off", **write_data(tmp_path / "data"))
    assert (tmp_path / "run" / "adapter_config.json").exists()
    trained = run.info["trainable_params"]
    assert 0 < trained < run.info["total_params"] / 2
    if row == "adalora":  # the budget was reallocated during training: some ranks were cut below init_r
        pattern = run.model.peft_config["default"].rank_pattern
        assert pattern and any(sum(mask) < DECODER_PEFT_ROWS_INIT_R for mask in pattern.values()), pattern
    reloaded = thawkit.load(tmp_path / "run")
    assert np.allclose(_numbers(reloaded.predict(texts, pairs)), _numbers(run.predict(texts, pairs)), atol=1e-4)


def _numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _numbers(value[k])]
    if isinstance(value, list):
        return [x for item in value for x in _numbers(item)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


@pytest.fixture(scope="module")
def small_vocab_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("small-vocab"), vocab_size=1000)


@pytest.fixture(scope="module")
def small_vocab_decoder(tmp_path_factory):
    """A tiny Llama with 256 embedding rows and the 512-token tokenizer."""
    from transformers import AutoModelForCausalLM

    from thawkit.testing import tiny_decoder_config, tiny_decoder_tokenizer

    path = tmp_path_factory.mktemp("small-vocab-decoder")
    AutoModelForCausalLM.from_config(tiny_decoder_config(vocab_size=256)).save_pretrained(str(path))
    tiny_decoder_tokenizer().save_pretrained(str(path))
    return path


@pytest.mark.parametrize("task", list(TASK_ROWS))
def test_guards_fire_for_every_task(task, tiny_bert, small_vocab_model, tiny_decoders, small_vocab_decoder, tmp_path):
    write_data, _ = TASK_ROWS[task]
    (tmp_path / "data").mkdir()
    files = {"max_length": 32, **write_data(tmp_path / "data")}
    if task in DECODER_TASKS:
        tiny_bert, small_vocab_model = tiny_decoders["llama"], small_vocab_decoder
    # A tokenizer with more ids than the model has embedding rows: always an error.
    with pytest.raises(ThawkitError, match=r"tokenizer has \d+ tokens but the model.s embedding matrix only"):
        thawkit.train(task=task, model=str(small_vocab_model), strategy="full", epochs=1, out=tmp_path / "a", **files)
    # A learning rate far above the strategy's sane range: an error under --strict.
    with pytest.raises(ThawkitError, match="learning-rate"):
        thawkit.train(task=task, model=str(tiny_bert), strategy="full", lr=0.5, strict=True, epochs=1, out=tmp_path / "b", **files)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_qa_evaluates_the_test_file(tiny_bert, tmp_path):
    run = thawkit.train(task="qa", data=QA_EDGE_CASES, validation=QA_EDGE_CASES, test=QA_EDGE_CASES, model=str(tiny_bert),
                        strategy="frozen", epochs=1, max_length=48, out=tmp_path / "run", progress="off")
    assert {"exact_match", "f1", "first_sentence_baseline"} <= set(run.metrics["test"])
    assert run.metrics["test"]["num_questions"] == run.metrics["validation"]["num_questions"]


def test_max_length_defaults_per_task(tiny_bert, tmp_path):
    run = thawkit.train(task="qa", data=QA_EDGE_CASES, validation=QA_EDGE_CASES, model=str(tiny_bert), strategy="frozen",
                        epochs=1, out=tmp_path / "qa", progress="off", measure_forgetting=False)
    # The task's default (384), capped at the tiny model's 130 positions; recorded and used at prediction.
    assert run.info["config"]["max_length"] == 130 == run.max_length
    shutil.rmtree(tmp_path / "qa")
    run = thawkit.train(**TASK_ROWS["classification"][0](tmp_path), model=str(tiny_bert), strategy="frozen", epochs=1,
                        out=tmp_path / "cls", progress="off", measure_forgetting=False)
    assert run.info["config"]["max_length"] == 128 == run.max_length


@pytest.mark.parametrize("task", ["ner", "similarity"])
def test_compare_runs_any_task(task, tiny_bert, tmp_path):
    from thawkit.compare import compare

    write_data, _ = TASK_ROWS[task]
    (tmp_path / "data").mkdir()
    comparison = compare(task=task, model=str(tiny_bert), strategies=["frozen", "full"], epochs=1, max_length=32,
                         out=tmp_path / "cmp", progress="off", **write_data(tmp_path / "data"))
    metric = {"ner": "f1", "similarity": "spearman"}[task]
    assert comparison.metric == metric
    assert {r["strategy"] for r in comparison.rows} == {"frozen", "full"}
    assert all(r[f"validation_{metric}_mean"] is not None for r in comparison.rows)
    assert (comparison.path / "report.html").exists()
