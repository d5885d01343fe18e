"""`thawkit prompt`: a decoder prompted as a classifier. The cached-prefix scorer must give exactly the
log-likelihoods of scoring each full sequence from scratch; the command scores the right files with
demonstrations drawn per class, writes its folder whole, and refuses what it cannot do."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from thawkit.cli.app import main
from thawkit.models.backbone import load_tokenizer
from thawkit.tasks.classification_prompting import build_prompt, draw_demonstrations, score_labels
from thawkit.testing import toy_sentiment_rows, write_toy_csv

CHAT_TEMPLATE = ("{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}")


def _scratch_scores(model, tokenizer, prompt, texts):
    """Each (text, label) sequence scored from scratch: prefix + text + tail + label, no cache."""
    out = np.zeros((len(texts), len(prompt.labels)))
    for i, text in enumerate(texts):
        for j, verbalizer in enumerate(prompt.verbalizers):
            ids = prompt.prefix + prompt.text_ids(tokenizer, text) + prompt.tail + verbalizer
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
            first = len(ids) - len(verbalizer)
            out[i, j] = sum(logp[first - 1 + k, token].item() for k, token in enumerate(verbalizer))
    return out


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat-template"])
def test_cached_prefix_scores_equal_scoring_from_scratch(tiny_decoders, arch, chat):
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(str(tiny_decoders[arch]))
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(str(tiny_decoders[arch]))
    demos = [("the movie was great", "positive"), ("awful plot", "negative"), ("loved the music", "positive")]
    prompt = build_prompt(tokenizer, ["negative", "positive", "very mixed"], demos, None, 16)
    assert prompt.chat is chat
    assert "negative, positive, very mixed" in prompt.rendered_prefix and "awful plot" in prompt.rendered_prefix
    assert len(prompt.verbalizers[2]) > 1  # a multi-token label: every token counts
    texts = ["the plot was dull and boring", "loved it", "fine", "the ending " * 30]  # the last is cut at 16 tokens
    cached = score_labels(model, tokenizer, prompt, texts, batch_size=3)  # batches of unequal lengths, one partial
    np.testing.assert_allclose(cached, _scratch_scores(model, tokenizer, prompt, texts), atol=1e-4)


def test_a_template_without_a_system_turn_takes_the_instruction_in_the_first_user_turn(tiny_decoders):
    tokenizer = load_tokenizer(str(tiny_decoders["llama"]))
    tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
                               "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    prompt = build_prompt(tokenizer, ["negative", "positive"], [("great fun", "positive")], "Sentiment? {labels}", 16)
    assert prompt.rendered_prefix.startswith("user: Sentiment? negative, positive\n\ngreat fun\nassistant: positive\nuser: ")


def test_demonstrations_are_drawn_per_class_with_the_seed():
    texts = [f"t{i}" for i in range(30)]
    labels = ["a"] * 20 + ["b"] * 7 + ["c"] * 3
    first = draw_demonstrations(texts, labels, 5, seed=1)
    assert first == draw_demonstrations(texts, labels, 5, seed=1)
    assert first != draw_demonstrations(texts, labels, 5, seed=2)
    counts = pd.Series([label for _, label in first]).value_counts().to_dict()
    assert counts == {"a": 5, "b": 5, "c": 3}  # a class with fewer gives all it has
    assert all(labels[texts.index(text)] == label for text, label in first)
    assert [label for _, label in first][:5] != ["a"] * 5 or [label for _, label in first][5:10] != ["b"] * 5  # interleaved


def test_prompt_command_scores_the_test_file_with_demonstrations_from_all_of_data(tiny_decoders, tmp_path, capsys):
    rows = toy_sentiment_rows(40, seed=3)
    pd.DataFrame({"sentence": [t for t, _ in rows], "y": [1 if label == "positive" else 0 for _, label in rows]}).to_csv(
        tmp_path / "train.csv", index=False)
    test_rows = toy_sentiment_rows(12, seed=4)
    pd.DataFrame({"sentence": [t for t, _ in test_rows], "y": [1 if label == "positive" else 0 for _, label in test_rows]}).to_csv(
        tmp_path / "test.csv", index=False)
    out = tmp_path / "baseline"
    main(["prompt", "--data", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"), "--model",
          str(tiny_decoders["llama"]), "--shots", "3", "--label-names", "negative,positive", "--text-col", "sentence",
          "--label-col", "y", "--out", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert list(report["metrics"]) == ["test"] and report["metrics"]["test"]["num_examples"] == 12
    assert report["demonstrations"] == 6 and report["labels"] == ["negative", "positive"]
    assert sorted(p.name for p in out.iterdir()) == [".thawkit-written", "predictions-test.csv", "prompt.json", "prompt.txt"]
    assert not list(tmp_path.glob(".baseline*"))
    shown = (out / "prompt.txt").read_text()
    assert "one of: negative, positive" in shown and shown.count("\nAnswer: ") == 6 and shown.endswith("{text}\nAnswer:")
    predictions = pd.read_csv(out / "predictions-test.csv")
    assert predictions["text"].tolist() == [t for t, _ in test_rows]
    assert set(predictions["label"]) <= {"negative", "positive"}
    raw = predictions[["loglik:negative", "loglik:positive"]].to_numpy()
    lean = np.log([report["calibration"]["content_free_share"][label] for label in ("negative", "positive")])
    normalised = raw - np.logaddexp.reduce(raw, axis=1, keepdims=True)
    chosen = np.where(normalised[:, 1] - lean[1] > normalised[:, 0] - lean[0], "positive", "negative")
    assert predictions["predicted"].tolist() == chosen.tolist()  # the content-free lean divided out
    assert report["metrics"]["test"]["uncalibrated"]["accuracy"] == pytest.approx(
        float((np.where(raw[:, 1] > raw[:, 0], "positive", "negative") == predictions["label"]).mean()))
    accuracy = float((predictions["predicted"] == predictions["label"]).mean())
    assert report["metrics"]["test"]["accuracy"] == pytest.approx(accuracy)
    assert json.loads((out / "prompt.json").read_text())["metrics"]["test"]["accuracy"] == pytest.approx(accuracy)


def test_prompt_without_held_out_files_scores_the_split_train_would_hold_out(tiny_decoders, tmp_path):
    import thawkit
    from thawkit.data.classification import load_classification_data

    data = write_toy_csv(tmp_path / "toy.csv", n=60)
    report = thawkit.prompt(data, model=str(tiny_decoders["gpt2"]), shots=2, seed=7)
    held_out = load_classification_data(data, seed=7).validation
    assert list(report.metrics) == ["validation"]
    assert report.predictions["validation"]["text"].tolist() == held_out["text"].tolist()
    assert report.demonstrations == 4 and report.prompt_format.startswith("plain text")
    assert not set(report.rendered_prompt.split("\n")) & set(held_out["text"])  # no scored text among the demonstrations


def test_prompt_refuses_multi_label_data(tiny_decoders, tmp_path):
    import thawkit
    from thawkit.errors import ConfigError

    (tmp_path / "multi.jsonl").write_text("\n".join(json.dumps({"text": f"t {i}", "label": ["a", "b"][: 1 + i % 2]})
                                                    for i in range(20)) + "\n")
    with pytest.raises(ConfigError, match="multi-label"):
        thawkit.prompt(tmp_path / "multi.jsonl", model=str(tiny_decoders["llama"]))


def test_calibration_divides_out_the_content_free_lean_and_none_keeps_the_raw_scores(tiny_decoders, tmp_path):
    import thawkit
    from thawkit.tasks.classification_prompting import calibrated

    # A prompt leaning 90/10 toward the first label: a text at 80/20 is really evidence for the second.
    scores = np.log(np.array([[0.8, 0.2], [0.95, 0.05]]))
    assert calibrated(scores, np.log(np.array([0.9, 0.1]))).argmax(axis=1).tolist() == [1, 0]
    data = write_toy_csv(tmp_path / "toy.csv", n=60)
    raw = thawkit.prompt(data, model=str(tiny_decoders["llama"]), calibration="none")
    assert raw.calibration == {"method": "none"} and "uncalibrated" not in raw.metrics["validation"]
    columns = raw.predictions["validation"][["loglik:negative", "loglik:positive"]].to_numpy()
    assert raw.predictions["validation"]["predicted"].tolist() == [["negative", "positive"][i] for i in columns.argmax(axis=1)]
    shares = thawkit.prompt(data, model=str(tiny_decoders["llama"])).calibration["content_free_share"]
    assert set(shares) == {"negative", "positive"} and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)


def test_prompt_out_is_replaced_only_when_thawkit_wrote_it(tiny_decoders, tmp_path, capsys):
    data = write_toy_csv(tmp_path / "toy.csv", n=40)
    out = tmp_path / "baseline"
    args = ["prompt", "--data", str(data), "--model", str(tiny_decoders["llama"]), "--out", str(out)]
    main(args)
    main([*args, "--shots", "2", "--overwrite"])  # its own folder: replaced whole
    assert json.loads((out / "prompt.json").read_text())["shots_per_class"] == 2
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.txt").write_text("keep me")
    with pytest.raises(SystemExit) as refused:
        main(["prompt", "--data", str(data), "--model", str(tiny_decoders["llama"]), "--out", str(mine), "--overwrite"])
    assert refused.value.code == 2 and "thesis.txt" in capsys.readouterr().err
    assert (mine / "thesis.txt").read_text() == "keep me"
