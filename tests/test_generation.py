"""--task generation: data shapes, the completion-only loss, held-out prompt groups, generation
metrics with several references, the zero-shot baseline, PEFT keeping the LM head, and predict's
generation options (tiny random Llama; the real smollm2 run is in test_real_smollm2.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.data.generation import group_references, load_generation_data, read_generation_file
from thawkit.errors import ConfigError, DataError, ThawkitError
from thawkit.tasks.generation_text import IGNORE, encode_example, render, text_scores, token_accuracy

WORDS = ("great", "awful", "boring", "superb", "movie", "plot", "story", "music")


def _write_pairs(path: Path, header: tuple[str, str] = ("prompt", "completion"), repeat: int = 3) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *[(f"say {w}", a) for w in WORDS for a in (f"{w} film", f"a {w} film")] * repeat])
    return path


@pytest.fixture
def llama(tiny_decoders):
    return tiny_decoders["llama"]


def _train(model, data, tmp_path, strategy="lora", name="run", **extra):
    return thawkit.train(task="generation", data=data, model=str(model), strategy=strategy, epochs=1, lr=5e-3, batch_size=8,
                         max_length=24, out=tmp_path / name, progress="off", measure_forgetting=False, **extra)


# --- data -----------------------------------------------------------------------------------------

def test_three_data_shapes_read_into_the_same_examples(tmp_path):
    pairs = _write_pairs(tmp_path / "pairs.csv", repeat=1)
    messages = tmp_path / "chat.jsonl"
    messages.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"say {w}"},
                                                         {"role": "assistant", "content": a}]}) + "\n"
                                for w in WORDS for a in (f"{w} film", f"a {w} film")))
    alpaca = tmp_path / "alpaca.jsonl"
    alpaca.write_text("".join(json.dumps({"instruction": "say", "input": w, "output": a}) + "\n"
                              for w in WORDS for a in (f"{w} film", f"a {w} film")))
    (a, fa), (b, fb), (c, fc) = read_generation_file(pairs), read_generation_file(messages), read_generation_file(alpaca)
    assert fa.startswith("prompt/completion") and fb == "chat messages" and fc == "instruction/input/output"
    assert [e.messages for e in a] == [e.messages for e in b] and [e.completion for e in a] == [e.completion for e in c]
    assert c[0].prompt_text == "say\n\ngreat"  # the instruction, a blank line, the input
    named = _write_pairs(tmp_path / "e2e.csv", header=("mr", "ref"), repeat=1)
    with pytest.raises(DataError, match="cannot tell which column to use for --prompt-col"):
        read_generation_file(named)
    assert [e.completion for e in read_generation_file(named, "mr", "ref")[0]] == [e.completion for e in a]


@pytest.mark.parametrize("line, message", [
    ({"messages": [{"role": "user", "content": "hi"}]}, r"chat.jsonl: row 2: the last message is the user's, not the assistant's"),
    ({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "row 2: message 1 has role 'robot'"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}, "row 2: message 1 lacks a 'role' and a text 'content'"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": " "}]}, "row 2: the assistant's answer is empty"),
    ({"messages": "hello"}, "row 2: 'messages' is not a list of messages"),
])
def test_bad_chat_rows_are_named(tmp_path, line, message):
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError, match=message):
        read_generation_file(path)


def test_an_empty_completion_cell_is_named_and_the_cli_exits_2_without_a_run(llama, tmp_path, capsys):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,completion\nsay a,a film\nsay b,\nsay c,c film\n")
    with pytest.raises(DataError, match=r"pairs.csv: empty completions in column 'completion' at row 2 \(line 3\)"):
        read_generation_file(path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "generation", "--data", str(path), "--model", str(llama), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and not (tmp_path / "run").exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "fix:" in err


def test_validation_holds_out_whole_prompt_groups(tmp_path):
    data = load_generation_data(_write_pairs(tmp_path / "pairs.csv"), None, None, 0.25, seed=3)
    train_prompts, held = {e.group for e in data.train}, {e.group for e in data.validation}
    assert held and not (train_prompts & held)  # no reference of a held-out prompt is trained on
    assert len(held) == 2 and len(data.validation) == 2 * 2 * 3  # 25% of 8 prompts, each with all 6 references
    prompts, references = group_references(data.validation)
    assert len(prompts) == 2 and all(len(r) == 6 for r in references)


# --- encoding and metrics ---------------------------------------------------------------------------

def test_only_the_completion_carries_the_loss(tiny_decoders):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_decoders["llama"]))
    messages = [{"role": "user", "content": "say great"}]
    row = encode_example(tokenizer, messages, "great film", 64)
    prompt, answer = render(tokenizer, messages, "great film")
    assert prompt == "say great\n" and answer == "great film<|endoftext|>"  # no chat template: plain, closed by end-of-text
    masked = [i for i, label in enumerate(row["labels"]) if label == IGNORE]
    assert masked == list(range(len(tokenizer(prompt)["input_ids"])))
    assert tokenizer.decode([t for t in row["labels"] if t != IGNORE]) == "great film<|endoftext|>"
    assert encode_example(tokenizer, messages, "great film", len(masked)) is None  # the prompt alone fills the length
    cut = encode_example(tokenizer, messages, "great film", len(masked) + 1)
    assert len(cut["input_ids"]) == len(masked) + 1


def test_a_chat_template_renders_the_prompt_and_closes_the_answer(tiny_decoders):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_decoders["llama"]))
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    prompt, answer = render(tokenizer, [{"role": "user", "content": "hi"}], "hello")
    assert prompt == "<|user|>hi<|endoftext|><|assistant|>" and answer == "hello<|endoftext|>"
    row = encode_example(tokenizer, [{"role": "user", "content": "hi"}], "hello", 64)
    assert tokenizer.decode([t for t in row["labels"] if t != IGNORE]) == "hello<|endoftext|>"


@pytest.mark.parametrize("wrapped", ["plain", "prompt-tuning", "lora"])
def test_the_completion_loss_equals_the_models_own(tiny_decoders, wrapped):
    """The LM head runs only from the first labelled position, and the loss is the model's own."""
    import torch
    from peft import LoraConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForTokenClassification

    from thawkit.tasks.generation_text import completion_loss

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_decoders["llama"]))
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(tiny_decoders["llama"]))
    if wrapped == "prompt-tuning":
        model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    elif wrapped == "lora":
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]))
    rows = [encode_example(tokenizer, [{"role": "user", "content": f"say {w} " * (i + 1)}], f"{w} film", 64)
            for i, w in enumerate(WORDS[:4])]
    batch = DataCollatorForTokenClassification(tokenizer)(rows)
    own = model(**batch).loss
    ours = completion_loss(model, dict(batch))
    assert ours is not None and torch.allclose(own, ours, atol=1e-6), (float(own), float(ours))
    items = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert torch.allclose(completion_loss(model, dict(batch), torch.tensor(items * 2)), own / 2, atol=1e-6)
    # Evaluation takes the same path: the kept logits, realigned, score as the full ones.
    from thawkit.tasks.generation_text import argmax_aligned

    loss, outputs = completion_loss(model.eval(), dict(batch), None, True)
    full = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert outputs.logits.shape[1] < full.shape[1] and torch.allclose(loss, model(**batch).loss, atol=1e-6)
    kept, everything = argmax_aligned(outputs.logits, batch["labels"]), argmax_aligned(full, batch["labels"])
    assert kept.shape == batch["labels"].shape
    assert token_accuracy(kept.numpy(), batch["labels"].numpy()) == token_accuracy(everything.numpy(), batch["labels"].numpy())


@pytest.mark.parametrize("kind", ["prompt", "p-tuning"])
def test_a_prompt_learning_model_generates_from_its_own_forward_pass(tiny_decoders, kind):
    """Each generated token's scores are the prompt-tuned model's forward pass over the virtual tokens,
    the prompt (unpadded) and what came before, in left-padded batches; peft's own cached generate drifts from the second
    token on (0.03 here, garbled text on smollm2-135m)."""
    import torch
    from peft import PromptEncoderConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from thawkit.models.backbone import load_tokenizer
    from thawkit.tasks.generation_text import generate_texts, generation_inputs, generation_options, prompt_ids

    tokenizer = load_tokenizer(str(tiny_decoders["llama"]))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_decoders["llama"]))
    config = PromptTuningConfig if kind == "prompt" else PromptEncoderConfig
    model = get_peft_model(model, config(task_type="CAUSAL_LM", num_virtual_tokens=4)).eval()
    prompts = [prompt_ids(tokenizer, render(tokenizer, [{"role": "user", "content": text}])[0])
               for text in ("the film was", "a dull and boring movie with a poor plot")]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    generator, inputs, front = generation_inputs(model, ids, mask)
    with torch.inference_mode():
        out = generator.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
        new = out.sequences[:, front:]
        for step, scores in enumerate(out.scores):  # each row alone, unpadded, as the forward pass reads it
            expected = torch.stack([model(input_ids=torch.tensor([p + new[i, :step].tolist()])).logits[0, -1]
                                    for i, p in enumerate(prompts)])
            finite = torch.isfinite(scores)  # min_new_tokens masks the end token
            assert torch.allclose(scores[finite], expected[finite], atol=1e-4), (step, float((scores[finite] - expected[finite]).abs().max()))
    conversations = [[{"role": "user", "content": "the film was"}]]
    assert generate_texts(model, tokenizer, conversations, generation_options(6)) == \
        generate_texts(model, tokenizer, conversations, generation_options(6), batch_size=1)


def test_text_scores_use_every_reference_of_a_prompt():
    hypotheses = ["the black cat sat on the mat today", "a brown dog ran in the park very fast"]
    references = [["a cat was on a mat", "the black cat sat on the mat today"], ["a brown dog ran in the park very fast"]]
    scores = text_scores(hypotheses, references)
    assert scores["bleu"] == pytest.approx(100.0) and scores["rouge_l"] == pytest.approx(100.0)
    assert scores["exact_match"] == 100.0
    worse = text_scores(["a cat sat", "a dog"], references)
    assert worse["bleu"] < 50 and worse["rouge_l"] < 80 and worse["exact_match"] == 0.0


def test_token_accuracy_compares_each_prediction_with_the_next_token():
    import numpy as np

    labels = np.array([[IGNORE, IGNORE, 5, 6, 7]])
    right = np.array([[0, 5, 6, 7, 9]])  # position t predicts token t + 1
    assert token_accuracy(right, labels) == 1.0
    assert token_accuracy(np.array([[0, 5, 0, 0, 9]]), labels) == pytest.approx(1 / 3)


# --- training ---------------------------------------------------------------------------------------

def test_lora_keeps_the_pretrained_lm_head_and_scores_generations(llama, tmp_path):
    data = _write_pairs(tmp_path / "pairs.csv")
    test = _write_pairs(tmp_path / "test.csv", repeat=1)
    run = _train(llama, data, tmp_path, "lora", test=test, generation_samples=1)
    adapter = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and not adapter.get("modules_to_save")
    validation, tested = run.metrics["validation"], run.metrics["test"]
    assert {"loss", "perplexity", "token_accuracy", "bleu", "rouge_l", "exact_match"} <= set(validation)
    assert validation["num_prompts"] == 1  # --generation-samples 1
    assert tested["num_prompts"] == len(WORDS) and tested["num_references"] == 2 * len(WORDS)  # the test file: every prompt
    assert run.info["data_format"].startswith("prompt/completion") and run.info["prompt_format"].startswith("plain")
    plan = run.info["plan"]["settings"]["max_new_tokens"]
    assert plan["value"] == 16 and plan["source"].startswith("the longest training completion")
    saved = json.loads((tmp_path / "run" / "thawkit.json").read_text())
    assert saved["config"]["max_new_tokens"] == 16


def test_prompt_tuning_starts_generation_from_vocabulary_embeddings(llama, tiny_bert, toy_csv, tmp_path, capsys):
    """--prompt-init auto: a language model's virtual tokens start as rows of its own embedding matrix
    (peft's SAMPLE_VOCAB; random vectors took smollm2-135m to BLEU 9.8 against 52.4 on E2E NLG), a task
    head's as peft's random init; recorded; refused for the prompt methods that do not take it."""
    import torch
    from peft import get_peft_model

    from thawkit.strategies import get_strategy_class
    from transformers import AutoModelForCausalLM

    strategy = get_strategy_class("prompt")()
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(llama)), strategy.peft_config(None, "CAUSAL_LM"))
    prompt = model.prompt_encoder["default"].embedding.weight
    vocabulary = model.get_input_embeddings().weight
    assert all(torch.isclose(vocabulary, row).all(-1).any() for row in prompt)  # each virtual token is some token's embedding
    assert strategy.init_for("CAUSAL_LM") == "vocab" and strategy.init_for("SEQ_CLS") == "random"
    run = thawkit.train(task="generation", data=_write_pairs(tmp_path / "pairs.csv"), model=str(llama), strategy="prompt", epochs=1,
                        batch_size=8, max_length=24, out=tmp_path / "run", progress="off", measure_forgetting=False)
    assert run.info["strategy_resolved"]["init"] == "vocab" and run.info["learning_rate"] == 3e-2
    classifier = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="prompt", epochs=1, max_length=16,
                               out=tmp_path / "cls", progress="off", measure_forgetting=False)
    assert classifier.info["strategy_resolved"]["init"] == "random"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "generation", "--data", str(tmp_path / "pairs.csv"), "--model", str(llama), "--strategy", "prompt",
              "--prompt-method", "p-tuning", "--prompt-init", "vocab", "--out", str(tmp_path / "refused")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--prompt-init" in err and "Traceback" not in err
    assert not (tmp_path / "refused").exists()


def test_frozen_is_the_zero_shot_model(llama, tmp_path):
    from transformers import AutoModelForCausalLM

    run = _train(llama, _write_pairs(tmp_path / "pairs.csv"), tmp_path, "frozen", generation_samples=2, val_fraction=0.25)
    assert run.info["trainable_params"] == 0 and run.info["global_steps"] == 0
    assert run.info["strategy_resolved"]["zero_shot"] is True
    assert run.info["cache"]["used"] is False and "nothing trains" in run.info["cache"]["reason"]
    assert run.metrics["validation"]["num_prompts"] == 2
    pretrained = AutoModelForCausalLM.from_pretrained(str(llama)).state_dict()
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "run")).state_dict()
    assert all((pretrained[k] == reloaded[k]).all() for k in pretrained)


def test_an_encoder_is_refused_before_any_work(tiny_bert, tmp_path):
    with pytest.raises(ConfigError, match="--task generation needs a decoder .* is a bert encoder"):
        _train(tiny_bert, _write_pairs(tmp_path / "pairs.csv"), tmp_path)
    assert not (tmp_path / "run").exists()


def test_generation_settings_are_refused_for_other_tasks(tiny_bert, toy_csv, tmp_path):
    for option in ({"max_new_tokens": 8}, {"generation_samples": 4}):
        with pytest.raises(ThawkitError, match="is for --task generation"):
            thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="frozen", out=tmp_path / "x", progress="off", **option)


def test_predict_generates_greedy_beam_sampled_and_streamed(llama, tmp_path, capsys):
    run = _train(llama, _write_pairs(tmp_path / "pairs.csv"), tmp_path, "full", generation_samples=0)
    greedy = run.predict(["say great", "say plot"], max_new_tokens=4)
    assert [set(r) for r in greedy] == [{"generated_text"}] * 2
    assert run.predict("say great", max_new_tokens=4) == greedy[:1]  # one prompt alone: the same answer as in a batch
    assert "bleu" not in run.metrics["validation"]  # --generation-samples 0
    folder = str(tmp_path / "run")
    capsys.readouterr()
    main(["predict", folder, "say great", "--max-new-tokens", "4"])
    assert json.loads(capsys.readouterr().out) == {"text": "say great", **greedy[0]}
    main(["predict", folder, "say great", "--max-new-tokens", "4", "--num-beams", "2"])
    assert set(json.loads(capsys.readouterr().out)) == {"text", "generated_text"}
    sampled = []
    for _ in range(2):
        main(["predict", folder, "say great", "--max-new-tokens", "6", "--sample", "--temperature", "1.5", "--seed", "7"])
        sampled.append(json.loads(capsys.readouterr().out))
    assert sampled[0] == sampled[1]  # seeded
    main(["predict", folder, "say great", "--max-new-tokens", "4", "--stream"])
    assert capsys.readouterr().out.strip() == greedy[0]["generated_text"].strip()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("say great\nsay plot\n")
    main(["predict", folder, "--file", str(prompts), "--max-new-tokens", "4"])
    assert [json.loads(line)["generated_text"] for line in capsys.readouterr().out.splitlines()] == [r["generated_text"] for r in greedy]
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", folder, "say great", "--temperature", "0.5"])
    assert exit_info.value.code == 2 and "add --sample" in capsys.readouterr().err


def test_generation_options_are_refused_for_a_classifier(tiny_bert, toy_csv, tmp_path, capsys):
    thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="frozen", out=tmp_path / "cls", progress="off", measure_forgetting=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(tmp_path / "cls"), "good film", "--max-new-tokens", "4"])
    assert exit_info.value.code == 2 and "--max-new-tokens is for generation runs" in capsys.readouterr().err


def test_evaluate_scores_a_file_against_grouped_references(llama, tmp_path):
    run = _train(llama, _write_pairs(tmp_path / "pairs.csv"), tmp_path, "full", generation_samples=0)
    scores = thawkit.load(tmp_path / "run").evaluate(_write_pairs(tmp_path / "eval.csv", repeat=1))
    assert scores["num_prompts"] == len(WORDS) and scores["num_references"] == 2 * len(WORDS)
    assert 0 <= scores["bleu"] <= 100 and 0 <= scores["rouge_l"] <= 100
    assert run.headline().startswith("generation full: validation loss")


def test_onnx_export_refuses_a_generation_run_with_a_fix(llama, tmp_path):
    from thawkit.engine.programs.export import export_onnx

    _train(llama, _write_pairs(tmp_path / "pairs.csv"), tmp_path, "full", generation_samples=0)
    with pytest.raises(ConfigError, match="ONNX export of generation runs is not built"):
        export_onnx(tmp_path / "run", tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_the_cli_trains_with_prompt_and_completion_columns_named(llama, tmp_path, capsys):
    data = _write_pairs(tmp_path / "e2e.csv", header=("mr", "ref"))
    main(["train", "--task", "generation", "--data", str(data), "--prompt-col", "mr", "--completion-col", "ref", "--model", str(llama),
          "--strategy", "lora", "--epochs", "1", "--max-length", "24", "--generation-samples", "1", "--max-new-tokens", "5",
          "--out", str(tmp_path / "run"), "--progress", "off", "--no-forgetting"])
    info = json.loads((tmp_path / "run" / "thawkit.json").read_text())
    assert info["config"]["text_col"] == "mr" and info["config"]["label_col"] == "ref"
    assert info["plan"]["settings"]["max_new_tokens"] == {"value": 5, "source": "command line (--max-new-tokens)"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["validation"]["max_new_tokens"] == 5
