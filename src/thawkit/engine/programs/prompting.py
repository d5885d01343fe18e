"""``thawkit prompt``: a decoder prompted with the label names (and k demonstrations per class) as
a no-training baseline for classification, scored like a trained run on the same files.

What is scored: the --validation and --test files given; with neither, the seeded 10% validation
split ``thawkit train`` would hold out of --data. Demonstrations come from the rest of --data
(every row of it when a held-out file is given), ``shots`` per class, drawn with ``seed``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from thawkit.data.classification import load_classification_data
from thawkit.engine.core.arguments import peak_memory_mb
from thawkit.errors import ConfigError
from thawkit.models.backbone import DEFAULT_DECODER, from_pretrained_checked, load_tokenizer
from thawkit.tasks.classification_metrics import detailed_metrics, scalar_metrics
from thawkit.tasks.classification_prompting import (
    build_prompt,
    calibrated,
    check_fits,
    content_free_bias,
    draw_demonstrations,
    score_labels,
)
from thawkit.tasks.generation_text import not_a_decoder


CALIBRATIONS = ("content-free", "none")


@dataclass
class PromptReport:
    model: str
    labels: list[str]
    shots_per_class: int
    demonstrations: int
    prompt_format: str
    prompt_tokens: int
    total_params: int
    calibration: dict[str, Any]
    seed: int
    metrics: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    peak_memory_mb: float
    predictions: dict[str, pd.DataFrame] = field(repr=False, default_factory=dict)
    rendered_prompt: str = field(repr=False, default="")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("predictions", "rendered_prompt")}


def prompt_classifier(data: Path, validation: Path | None = None, test: Path | None = None, model: str | None = None,
                      shots: int = 0, instruction: str | None = None, text_col: str | None = None, label_col: str | None = None,
                      label_names: list[str] | None = None, max_length: int = 128, batch_size: int = 8,
                      seed: int = 42, calibration: str = "content-free", like_train: bool = False,
                      val_fraction: float = 0.1) -> PromptReport:
    """``like_train``: split validation exactly as ``thawkit train`` does (a seeded ``val_fraction`` of
    ``data`` unless a validation file is given, whether or not there is a test file): compare's row
    scores the examples every job is scored on. Otherwise a lone test file is what is scored and every
    row of ``data`` may be a demonstration."""
    model = model or DEFAULT_DECODER
    if calibration not in CALIBRATIONS:
        raise ConfigError(f"--calibration {calibration}: not one of {', '.join(CALIBRATIONS)}; fix: content-free (the "
                          "default) or none")
    if shots < 0:
        raise ConfigError(f"--shots {shots}: demonstrations per class cannot be negative; fix: 0 (zero-shot) or e.g. 8")
    started = time.perf_counter()
    split = like_train or test is None
    loaded = load_classification_data(data, validation=validation if split else validation or test,
                                      test=test if split or validation is not None else None, text_col=text_col,
                                      label_col=label_col, label_names=label_names, seed=seed, val_fraction=val_fraction)
    if loaded.multi_label:
        raise ConfigError(f"{data}: multi-label rows; thawkit prompt scores one label per text; fix: train a model "
                          "(thawkit train --strategy fewshot) for multi-label data")
    splits = {"validation" if split or validation is not None else "test": loaded.validation}
    if loaded.test is not None:
        splits["test"] = loaded.test
    from transformers import AutoConfig, AutoModelForCausalLM

    config = from_pretrained_checked(AutoConfig, model)
    if not_a_decoder(config):
        raise ConfigError(f"thawkit prompt needs a decoder (a causal language model); {model} is a {config.model_type} "
                          "encoder; fix: --model smollm2-135m, or another decoder (Llama, Qwen2, GPT-2, ...)")
    tokenizer = load_tokenizer(model)
    causal_lm = from_pretrained_checked(AutoModelForCausalLM, model)
    loaded_at = time.perf_counter()
    train = loaded.train
    names = [loaded.labels[int(i)] for i in train["labels"]]
    demos = draw_demonstrations(train["text"].astype(str).tolist(), names, shots, seed) if shots else []
    prompt = build_prompt(tokenizer, loaded.labels, demos, instruction, max_length)
    check_fits(prompt, causal_lm, shots, tokenizer, [t for frame in splits.values() for t in frame["text"].astype(str)])
    bias = content_free_bias(causal_lm, tokenizer, prompt) if calibration == "content-free" else None
    metrics, predictions = {}, {}
    for name, frame in splits.items():
        texts = frame["text"].astype(str).tolist()
        raw = score_labels(causal_lm, tokenizer, prompt, texts, batch_size)
        scores = raw if bias is None else calibrated(raw, bias)
        gold = frame["labels"].to_numpy()
        metrics[name] = detailed_metrics(scores, gold, loaded.labels, multi_label=False)
        if bias is not None:
            metrics[name]["uncalibrated"] = {k: v for k, v in scalar_metrics(raw, gold, multi_label=False).items()
                                             if k in ("accuracy", "macro_f1")}
        predictions[name] = pd.DataFrame({"text": texts, "label": [loaded.labels[int(i)] for i in gold],
                                          "predicted": [loaded.labels[int(i)] for i in scores.argmax(axis=1)],
                                          **{f"loglik:{label}": raw[:, j] for j, label in enumerate(loaded.labels)}})
    done = time.perf_counter()
    return PromptReport(
        model=model, labels=loaded.labels, shots_per_class=shots, demonstrations=len(demos),
        prompt_format="the model's chat template" if prompt.chat else "plain text (the tokenizer has no chat template)",
        prompt_tokens=len(prompt.prefix), total_params=sum(p.numel() for p in causal_lm.parameters()), seed=seed, metrics=metrics,
        calibration={"method": calibration} if bias is None else {
            "method": calibration, "content_free_share": {label: float(np.exp(b)) for label, b in zip(loaded.labels, bias)}},
        seconds={"loading": round(loaded_at - started, 2), "scoring": round(done - loaded_at, 2), "total": round(done - started, 2)},
        peak_memory_mb=peak_memory_mb(), predictions=predictions,
        rendered_prompt=prompt.rendered_prefix + "{text}" + prompt.rendered_tail,
    )


def write_report(report: PromptReport, out: Path, overwrite: bool = False) -> None:
    """prompt.json (settings, metrics, seconds), prompt.txt (what the model read around each text),
    predictions-SPLIT.csv; written beside ``out`` and moved in place whole (an existing ``out`` is
    replaced only with ``overwrite`` and only if thawkit wrote it, as for runs)."""
    from thawkit.rundir import partial_dir_for, publish

    partial = partial_dir_for(out)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "prompt.json").write_text(json.dumps(report.as_dict(), indent=2, default=_plain) + "\n", encoding="utf-8")
    (partial / "prompt.txt").write_text(report.rendered_prompt, encoding="utf-8")
    for name, frame in report.predictions.items():
        frame.to_csv(partial / f"predictions-{name}.csv", index=False)
    publish(partial, out, overwrite)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)
