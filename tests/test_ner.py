"""Token classification (NER): tag schemes, sub-word alignment, chunking, spans, every strategy."""

from __future__ import annotations

import json

import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.data.ner import chunk_and_align, normalise_tags, read_ner_file
from thawkit.models.backbone import load_tokenizer
from thawkit.tasks.ner import entities_from_tags

CONLL = """-DOCSTART- O

Peter B-PER
Blackburn I-PER
visited O
Tarceva B-ORG
in O
Brussels B-LOC
. O

EU B-ORG
rejects O
German B-MISC
call O
"""


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm-l6")


def test_tag_schemes_normalise_to_iob2():
    assert normalise_tags(["B-PER", "I-PER", "O", "B-LOC"]) == ["B-PER", "I-PER", "O", "B-LOC"]  # IOB2 unchanged
    assert normalise_tags(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]  # IOB1
    assert normalise_tags(["B-ORG", "I-ORG", "E-ORG", "S-LOC", "O"]) == ["B-ORG", "I-ORG", "I-ORG", "B-LOC", "O"]  # BIOES
    assert normalise_tags(["B-PER", "I-ORG"]) == ["B-PER", "B-ORG"]  # a type change starts a new entity


def test_readers(tmp_path):
    conll = tmp_path / "d.txt"
    conll.write_text(CONLL)
    sentences = read_ner_file(conll)
    assert [len(w) for w, _ in sentences] == [7, 4]  # -DOCSTART- ignored
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps({"tokens": ["EU", "rejects"], "tags": ["S-ORG", "O"]}) + "\n")
    assert read_ner_file(jsonl) == [(["EU", "rejects"], ["B-ORG", "O"])]


def test_first_subtoken_carries_the_label(tokenizer):
    # 'Tarceva' -> 'tar', '##ce', '##va': three sub-tokens, one label.
    assert tokenizer.tokenize("Tarceva") == ["tar", "##ce", "##va"]
    label_to_id = {"O": 0, "B-ORG": 1, "I-ORG": 2}
    [feature] = chunk_and_align((["visited", "Tarceva", "today"], ["O", "B-ORG", "O"]), tokenizer, 32, label_to_id)
    # [CLS] visited tar ##ce ##va today [SEP]
    assert feature["labels"] == [-100, 0, 1, -100, -100, 0, -100]


def test_long_sentences_are_split_not_truncated(tokenizer):
    words = ["Tarceva"] * 20  # 3 sub-tokens each: 60 sub-tokens
    tags = ["B-ORG"] * 20
    features = chunk_and_align((words, tags), tokenizer, 16, {"O": 0, "B-ORG": 1, "I-ORG": 2})
    assert len(features) > 1
    assert all(len(f["input_ids"]) <= 16 for f in features)
    assert sum(sum(1 for label in f["labels"] if label != -100) for f in features) == 20  # every word labeled once


def test_entity_spans_with_character_offsets():
    text = "Peter Blackburn went to Brussels"
    words = [("Peter", 0, 5), ("Blackburn", 6, 15), ("went", 16, 20), ("to", 21, 23), ("Brussels", 24, 32)]
    entities = entities_from_tags(words, ["B-PER", "I-PER", "O", "O", "B-LOC"], [0.9, 0.8, 0.99, 0.99, 0.7])
    assert [(e["type"], text[e["start"]:e["end"]]) for e in entities] == [("PER", "Peter Blackburn"), ("LOC", "Brussels")]
    assert entities[0]["score"] == pytest.approx(0.85)


def test_bad_ner_input(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "ner", "--data", str(bad), "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and "2 tokens but 1 tags" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ner_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ner") / "train.txt"
    path.write_text((CONLL.split("\n\n", 1)[1] + "\n") * 15)
    return path


@pytest.mark.parametrize("strategy", ["full", "frozen", "partial", "gradual", "llrd", "lora"])
def test_every_strategy_trains_ner_and_saves_a_loadable_run(tiny_bert, ner_file, tmp_path, strategy):
    from transformers import AutoModelForTokenClassification, pipeline

    run = thawkit.train(task="ner", data=ner_file, model=str(tiny_bert), strategy=strategy, epochs=2, max_length=32,
                        out=tmp_path / "run", strategy_options={"merge": True} if strategy == "lora" else {})
    assert run.info["task"] == "token-classification"
    assert {"f1", "precision", "recall", "per_type"} <= set(run.metrics["validation"])
    assert run.info["cache"]["used"] == (strategy in ("frozen", "partial", "gradual"))
    reloaded = thawkit.load(tmp_path / "run")
    text = "Peter Blackburn visited Brussels"
    assert reloaded.predict(text) == run.predict(text)
    model = AutoModelForTokenClassification.from_pretrained(str(tmp_path / "run"))
    assert model.config.id2label[0] == "O"
    tagger = pipeline("token-classification", model=str(tmp_path / "run"), device=-1)
    assert isinstance(tagger(text), list)


def _conll_head(shared_datasets, source, target, count):
    """The first ``count`` sentences of a CoNLL-2003 file, written to ``target``."""
    blocks = [b.strip() for b in (shared_datasets / "conll2003" / source).read_text().split("\n\n") if b.strip()]
    target.write_text("\n\n".join(blocks[:count]) + "\n")
    return target


@pytest.mark.real
def test_minilm_ner_on_conll(shared_datasets, tmp_path):
    train = _conll_head(shared_datasets, "train.txt", tmp_path / "train.txt", 2000)
    validation = _conll_head(shared_datasets, "validation.txt", tmp_path / "validation.txt", 500)
    run = thawkit.train(task="ner", data=train, validation=validation, strategy="full", lr=1e-4, epochs=1,
                        batch_size=16, max_length=64, out=tmp_path / "run", measure_forgetting=False)
    print("conll entity F1", run.metrics["validation"]["f1"])
    assert run.metrics["validation"]["f1"] > 0.5
    entities = run.predict("Peter Blackburn flew to Brussels on Monday")[0]["entities"]
    assert any(e["type"] == "PER" and e["text"].startswith("Peter") for e in entities)


@pytest.mark.real
def test_frozen_minilm_ner_reads_a_lower_layer_than_the_top(shared_datasets, tmp_path):
    """The measured frozen NER default (features from layer -3 of MiniLM-L6) beats the top layer, which
    the sentence-embedding checkpoint tuned for pooled sentence meaning (docs/defaults.md: 0.659 vs 0.496)."""
    common = dict(task="ner", data=_conll_head(shared_datasets, "train.txt", tmp_path / "train.txt", 1000),
                  validation=_conll_head(shared_datasets, "validation.txt", tmp_path / "validation.txt", 500), strategy="frozen",
                  max_length=64, progress="off", measure_forgetting=False)
    default = thawkit.train(**common, out=tmp_path / "default")
    top = thawkit.train(**common, strategy_options={"feature_layer": -1}, out=tmp_path / "top")
    f1 = default.metrics["validation"]["f1"], top.metrics["validation"]["f1"]
    print("frozen conll entity F1, measured layer / top layer", f1)
    assert default.info["strategy_resolved"]["feature_layer"] == 4
    assert f1[0] > f1[1] + 0.05
