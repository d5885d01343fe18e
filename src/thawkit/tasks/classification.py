"""Sequence classification: single-label, multi-label and sentence pairs; scikit-learn metrics.

The run is a standard Hugging Face model (``AutoModelForSequenceClassification``), a PEFT adapter
for unmerged LoRA, or a pooled-feature head (``thawkit_head.json``) for ``frozen`` with
``pooling``/``head`` options.
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

import numpy as np
import torch
from torch import nn

from thawkit.data.classification import load_classification_data
from thawkit.errors import ConfigError, RunDirError
from thawkit.models.backbone import load_peft_run, load_sequence_classifier
from thawkit.models.pooled import HEAD_CONFIG, PooledHeadClassifier
from thawkit.tasks.base import RunBase, Task, TaskData, register_task
from thawkit.tasks.classification_advice import CLASSIFICATION_RULES
from thawkit.tasks import classification_update
from thawkit.tasks.roles import AdviceInput, Route, Rule, ServedCall, ServeRequest, UpdateData
from thawkit.tasks.roles.model import check_head_size, check_label_names
from thawkit.tasks.roles.serving import RequestError
from thawkit.tasks.classification_calibration import MIN_EXAMPLES, TemperatureScaling, fit_temperature
from thawkit.tasks.classification_windows import check_window_settings, pool_windows, text_labels, window_tokens
from thawkit.tasks.classification_metrics import calibration_metrics, detailed_metrics, scalar_metrics, split_slices
from thawkit.tasks.classification_run import ClassificationRun, Run  # noqa: F401 - Run: the name users and older code know

if TYPE_CHECKING:
    from thawkit.config import TrainConfig

log = logging.getLogger("thawkit")

# Per teacher run (weakly: gone with it), its logits per text already computed by distillation.
_TEACHER_LOGITS: "weakref.WeakKeyDictionary[RunBase, dict[str, np.ndarray]]" = weakref.WeakKeyDictionary()


def _problem_type(multi_label: bool) -> str:
    return "multi_label_classification" if multi_label else "single_label_classification"


def tokenize_frame(frame: Any, tokenizer: Any, max_length: int, overlap: int | None = None) -> tuple[Any, list[int] | None]:
    """A split's texts (and pairs) as token ids with their ``labels``; no padding (the collator pads).
    With ``overlap`` (--long-text window), one row per window and the text each comes from."""
    from datasets import Dataset

    labels = frame["labels"].tolist()
    if overlap is not None:
        columns, mapping = window_tokens(tokenizer, frame["text"].tolist(), max_length, overlap)
        return Dataset.from_dict({**columns, "labels": [labels[i] for i in mapping]}), mapping
    has_pair = "text_pair" in frame
    encoded = tokenizer(frame["text"].tolist(), frame["text_pair"].tolist() if has_pair else None,
                        truncation=True, max_length=max_length)
    return Dataset.from_dict({**encoded, "labels": labels}), None


class PredictRequest(ServeRequest):
    inputs: Union[str, list[str], list[list[str]]]
    raw_scores: bool = False


async def _predict(body: PredictRequest, call: ServedCall) -> Any:
    """TEI's /predict: label scores per text (or [text, pair]), best first."""
    single = isinstance(body.inputs, str)
    rows = [body.inputs] if single else list(body.inputs)
    if all(isinstance(r, list) for r in rows):
        if any(len(r) != 2 for r in rows):
            raise RequestError(422, "a pair input must be [text, text_pair]")
        texts, pairs = [r[0] for r in rows], [r[1] for r in rows]
    elif all(isinstance(r, str) for r in rows):
        texts, pairs = rows, None
    else:
        raise RequestError(422, "inputs: all strings or all [text, pair] lists")
    if body.raw_scores:
        logits, _ = await call.batch("logits", texts, pairs)
        answers = [sorted(({"label": l, "score": float(s)} for l, s in zip(call.labels, row)), key=lambda d: -d["score"])
                   for row in logits]
    else:
        predictions, _ = await call.batch("predict", texts, pairs)
        answers = [sorted(({"label": l, "score": float(s)} for l, s in p["scores"].items()), key=lambda d: -d["score"])
                   for p in predictions]
    return answers[0] if single else answers


@register_task("classification")
class ClassificationTask(Task):
    run_type = "sequence-classification"
    own_settings = (("--label-names", "label_names"), ("--slice-col", "slice_cols"), ("--calibrate", "calibrate"),
                    ("--long-text", "long_text"), ("--window-overlap", "window_overlap"), ("--window-pooling", "window_pooling"))
    default_metric = "macro_f1"
    metrics = ("macro_f1", "accuracy", "weighted_f1", "loss")
    peft_task_type = "SEQ_CLS"
    supports_class_weights = True
    supports_prompting = True
    supports_distillation = True
    pipeline_tag = "text-classification"
    stock_python = ('from transformers import pipeline\n'
                    'classifier = pipeline("text-classification", model="{run}", truncation=True, top_k=None)\n'
                    'print(classifier("your text"))')
    usage_arguments = ("a text to classify",)
    truncation_fix = "fix: --long-text window (overlapping windows, each text's score pooled over all of it)"

    def routes(self) -> tuple[Route, ...]:
        return (Route("/predict", PredictRequest, _predict, "label scores (TEI schema)"),)

    def advisor_rules(self) -> list[Rule]:
        return list(CLASSIFICATION_RULES)

    def advice_input(self, data: TaskData) -> AdviceInput:
        train = data.train
        return AdviceInput(train["text"].tolist(), train["text_pair"].tolist() if "text_pair" in train else None,
                           train["label_names"].tolist(), data.validation["text"].tolist())

    def run_facts(self, data: TaskData) -> dict[str, Any]:
        return {**data.facts, "label_distribution": self.class_counts(data)}

    def describe_data(self, num_train: int, num_classes: int) -> str:
        return f"{num_train:,} training examples in {num_classes} classes"

    supports_update = True

    def update_data(self, info: dict[str, Any], labels: dict[str, Any], new: "TrainConfig", replay: int | None, seed: int,
                    old_data: str | None = None) -> UpdateData:
        return classification_update.update_data(self, info, labels, new, replay, seed, old_data)

    def old_model_for_update(self, run: RunBase) -> Any:
        return classification_update.old_model(run)

    def update_scores(self, run: RunBase, frame: Any, labels: list[str]) -> dict[str, float]:
        return classification_update.scores(run, frame, labels)

    def teacher_labelled(self, teacher: RunBase, path: Path, cfg: "TrainConfig") -> Any:
        """Unlabeled texts with the teacher's most probable label (its soft targets come at training time)."""
        import pandas as pd

        from thawkit.data.texts import read_texts

        if cfg.text_pair_col is not None:
            raise ConfigError("--unlabeled takes single texts; sentence-pair classification cannot use it; fix: drop --unlabeled")
        texts = read_texts(path, cfg.text_col, flag="--unlabeled")
        ids = self.teacher_logits(teacher, texts).argmax(-1).tolist()
        return pd.DataFrame({"text": texts, "label_names": [[teacher.labels[i]] for i in ids], "labels": ids})

    def teacher_targets(self, teacher: RunBase, data: TaskData, tokenizer: Any, cfg: "TrainConfig") -> list[Any]:
        """The teacher's logits per training text (each of a text's windows gets the text's)."""
        frame = data.train
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        logits = torch.from_numpy(self.teacher_logits(teacher, frame["text"].tolist(), pairs))
        mapping = data.scratch.get("windows:train")
        return [logits[i] for i in (mapping if mapping is not None else range(len(logits)))]

    @staticmethod
    def teacher_logits(teacher: RunBase, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """The teacher's logits per text; a single text it already scored in this process (the
        ``--unlabeled`` texts it labelled, a repeated text) is not run through it again."""
        if pairs is not None:
            return teacher.logits(texts, pairs)  # type: ignore[attr-defined]
        seen = _TEACHER_LOGITS.setdefault(teacher, {})
        missing = list(dict.fromkeys(t for t in texts if t not in seen))
        if missing:
            seen.update(zip(missing, teacher.logits(missing)))  # type: ignore[attr-defined]
        return np.stack([seen[t] for t in texts]) if texts else np.zeros((0, len(teacher.labels)), dtype=np.float32)

    def add_training_examples(self, data: TaskData, examples: Any) -> None:
        import pandas as pd

        if "text_pair" in data.train:
            raise ConfigError("--unlabeled takes single texts; this data has text pairs; fix: drop --unlabeled")
        data.train = pd.concat([data.train, examples[["text", "label_names", "labels"]]], ignore_index=True)

    def load_data(self, cfg: "TrainConfig") -> TaskData:
        loaded = load_classification_data(
            cfg.data, validation=cfg.validation, test=cfg.test, text_col=cfg.text_col, text_pair_col=cfg.text_pair_col,
            label_col=cfg.label_col, multi_label=cfg.multi_label, label_sep=cfg.label_sep, val_fraction=cfg.val_fraction,
            seed=cfg.data_split_seed(), fmt=cfg.table_format(), label_names=cfg.label_names, slice_cols=cfg.slice_cols,
        )
        facts = {"problem_type": _problem_type(loaded.multi_label), "text_col": loaded.text_col,
                 "text_pair_col": loaded.text_pair_col, "label_col": loaded.label_col, **loaded.extra}
        return TaskData(loaded.train, loaded.validation, loaded.test, loaded.labels, loaded.multi_label,
                        loaded.validation_source, facts)

    def task_settings(self, cfg: "TrainConfig", data: TaskData) -> dict[str, tuple[Any, str]]:
        settings: dict[str, tuple[Any, str]] = {"calibrate": (True, "on for classification: temperature scaling fitted on the validation split")}
        if cfg.long_text == "window":
            overlap = cfg.window_overlap if cfg.window_overlap is not None else cfg.max_length // 4
            check_window_settings(cfg.max_length, overlap, "text_pair" in data.train)
            settings["window_overlap"] = (overlap, f"a quarter of --max-length {cfg.max_length}")
        return settings

    def check_config(self, cfg: "TrainConfig", strategy: Any) -> None:
        if cfg.metric is not None and cfg.metric not in self.metrics:
            raise ConfigError(f"--metric {cfg.metric} is not a classification metric; fix: use one of {', '.join(self.metrics)}")

    def build_model(self, cfg: "TrainConfig", data: TaskData, strategy: Any) -> nn.Module:
        problem_type = _problem_type(data.multi_label)
        model = strategy.load_model(cfg.model, len(data.labels), data.id2label, problem_type)
        return model if model is not None else load_sequence_classifier(cfg.model, len(data.labels), data.id2label, problem_type)

    def save_model(self, model: nn.Module, folder: Path, base_model: str, max_length: int) -> None:
        if isinstance(model, PooledHeadClassifier):  # its body also a sentence-transformers folder, at the trained length
            model.save_pretrained(folder, max_length=max_length)
            return
        super().save_model(model, folder, base_model, max_length)

    def encode(self, data: TaskData, split: str, tokenizer: Any, cfg: "TrainConfig") -> Any:
        frame = data.split(split)
        windowed = cfg.long_text == "window"
        if windowed:
            # Scores pool each text's windows, which sit next to each other in the split's order.
            self.eval_in_length_order = False
            data.scratch["window_pooling"] = cfg.window_pooling
        dataset, mapping = tokenize_frame(frame, tokenizer, cfg.max_length, cfg.window_overlap if windowed else None)
        if mapping is not None:
            data.scratch[f"windows:{split}"] = mapping
            if split == "train":
                log.info("--long-text window: %d training texts make %d windows of up to %d tokens", len(frame), len(dataset),
                         cfg.max_length)
        elif split == "train":
            cut = sum(len(ids) >= cfg.max_length for ids in dataset["input_ids"]) / max(len(dataset), 1)
            if cut > 0.05:
                log.warning("Hint: %.0f%% of training texts reach --max-length %d and are cut there; fix: raise --max-length, "
                            "or --long-text window (overlapping windows, every part scored)", 100 * cut, cfg.max_length)
        return dataset

    @staticmethod
    def _per_text(data: TaskData, split: str, logits: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window logits and labels pooled to one row per text (--long-text window); as they are otherwise."""
        mapping = data.scratch.get(f"windows:{split}")
        if mapping is None:
            return logits, gold
        count = len(data.split(split))
        return pool_windows(logits, mapping, count, data.scratch["window_pooling"]), text_labels(gold, mapping, count)

    def sample_texts(self, data: TaskData, limit: int = 500) -> list[str]:
        return data.train["text"].tolist()[:limit]

    def class_counts(self, data: TaskData) -> dict[str, int]:
        counts = {label: 0 for label in data.labels}
        for names in data.train["label_names"]:
            for name in names:
                counts[name] += 1
        return counts

    def metric_function(self, data: TaskData, split: str) -> Callable[[Any], dict[str, float]]:
        def compute(prediction: Any) -> dict[str, float]:
            logits, gold = self._per_text(data, split, _logits(prediction), np.asarray(prediction.label_ids))
            return scalar_metrics(logits, gold, data.multi_label)

        return compute

    def final_metrics(self, data: TaskData, split: str, output: Any) -> dict[str, Any]:
        logits, gold = self._per_text(data, split, _logits(output), np.asarray(output.label_ids))
        metrics = detailed_metrics(logits, gold, data.labels, data.multi_label)
        metrics["loss"] = float(output.metrics.get(f"{split}_loss", float("nan")))
        temperature = data.scratch.get("temperature")
        if temperature is not None:  # the saved model's scores are these logits / T
            metrics["calibration"] = {
                "temperature": temperature, "ece_uncalibrated": metrics["ece"], "brier_uncalibrated": metrics["brier"],
                "reliability_uncalibrated": metrics["reliability"],
                **({"note": "the temperature was fitted on this split: its calibrated figures are in-sample"} if split == "validation" else {}),
            }
            metrics.update(calibration_metrics(logits, gold.astype(int), data.multi_label, temperature))
        metrics.update(split_slices(data.split(split), logits, gold, data.multi_label))
        return metrics

    def fit_calibration(self, data: TaskData, output: Any, cfg: "TrainConfig") -> TemperatureScaling:
        """Temperature scaling on the validation split's logits (``output``, in row order)."""
        examples = len(data.validation)
        if not cfg.calibrate:
            return TemperatureScaling.skipped("off (--no-calibrate)")
        if examples < MIN_EXAMPLES:
            return TemperatureScaling.skipped(f"not fitted: the validation split has {examples} examples, fewer than {MIN_EXAMPLES}")
        logits, gold = self._per_text(data, "validation", _logits(output), np.asarray(output.label_ids))
        temperature, before, after, reason = fit_temperature(logits, gold, data.multi_label)
        if temperature is None:
            return TemperatureScaling.skipped(reason or "not fitted")
        data.scratch["temperature"] = round(temperature, 4)
        return TemperatureScaling(round(temperature, 4), len(data.labels), before, after, examples)

    def make_run(self, model: nn.Module, tokenizer: Any, data: TaskData, info: dict[str, Any], path: Path | None) -> RunBase:
        return ClassificationRun(model, tokenizer, info, path, data.labels, data.multi_label)

    def check_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> None:
        check_head_size(path, check_label_names(path, labels, minimum=2))
        if not isinstance(labels.get("multi_label"), bool):
            from thawkit.rundir import DAMAGED_FIX, LABELS_FILE

            raise RunDirError(f"{path / LABELS_FILE}: 'multi_label' is not true or false; {DAMAGED_FIX}")

    def load_run(self, path: Path, info: dict[str, Any], labels: dict[str, Any]) -> RunBase:
        from transformers import AutoTokenizer

        from thawkit.models.onnx import exported_model

        names = labels["labels"]
        # An exported folder: onnxruntime behind the same run class.
        model = exported_model(path) or self._pytorch_model(path, info, names)
        return ClassificationRun(model.eval(), AutoTokenizer.from_pretrained(str(path)), info, path, names, labels["multi_label"])

    def validation_metrics(self, run: RunBase, cfg: "TrainConfig") -> tuple[dict[str, Any], int] | None:
        """On the run's own validation split, rebuilt from its config (same files, same seeded split)."""
        from thawkit.errors import ThawkitError

        try:
            frame = self.load_data(cfg).validation
        except (ThawkitError, OSError):
            return None
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        logits = run.logits(frame["text"].tolist(), pairs)  # type: ignore[attr-defined]
        return scalar_metrics(logits, np.asarray(frame["labels"].tolist()), run.multi_label), len(frame)  # type: ignore[attr-defined]

    @staticmethod
    def _pytorch_model(path: Path, info: dict[str, Any], names: list[str]) -> nn.Module:
        from transformers import AutoModelForSequenceClassification

        if (path / HEAD_CONFIG).exists():
            return PooledHeadClassifier.from_pretrained(path)
        if (path / "adapter_config.json").exists():
            base = load_sequence_classifier(info["config"]["model"], len(names), dict(enumerate(names)), info["problem_type"])
            return load_peft_run(base, path)
        return AutoModelForSequenceClassification.from_pretrained(str(path), use_safetensors=True)  # a standard Hugging Face model folder


def _logits(prediction: Any) -> np.ndarray:
    logits = prediction.predictions
    return np.asarray(logits[0] if isinstance(logits, tuple) else logits)
