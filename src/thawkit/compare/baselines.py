"""Rows of a comparison that train nothing: the prompting baseline (``--prompt-shots K``), a decoder
prompted with the label names (``thawkit prompt``) and scored on the examples every job is scored on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thawkit.config import CompareConfig
from thawkit.errors import ConfigError

PROMPTING = "prompting"  # the row's name in place of a strategy's


def check_prompting(cfg: CompareConfig) -> None:
    """Refusals before any job trains."""
    from thawkit.tasks import get_task

    if cfg.prompt_shots is not None and not get_task(cfg.task).supports_prompting:
        raise ConfigError(f"--prompt-shots: the prompting baseline scores label names, which --task {cfg.task} does not "
                          "have; fix: drop --prompt-shots")
    if cfg.prompt_shots is not None and cfg.text_pair_col is not None:
        raise ConfigError("--prompt-shots: the prompting baseline classifies single texts; fix: drop --prompt-shots for "
                          "pairs (--text-pair-col)")


def prompting_summary(cfg: CompareConfig, folder: Path) -> dict[str, Any]:
    """Score the prompting baseline (its files written to ``folder``) as a run summary: the
    validation split every job has (same file or the same seeded split), the test file, no training."""
    from thawkit.engine.core.arguments import reset_peak_memory
    from thawkit.engine.programs.prompting import prompt_classifier, write_report

    reset_peak_memory()
    report = prompt_classifier(
        Path(cfg.data), Path(cfg.validation) if cfg.validation else None, Path(cfg.test) if cfg.test else None,
        model=cfg.prompt_model, shots=int(cfg.prompt_shots or 0), text_col=cfg.text_col, label_col=cfg.label_col,
        label_names=cfg.label_names, seed=cfg.data_split_seed(), like_train=True, val_fraction=cfg.val_fraction,
        **({"max_length": cfg.max_length} if cfg.max_length is not None else {}))  # else the prompt's own per-text cut
    write_report(report, folder, overwrite=True)  # a resumed comparison scores it again
    info = {"strategy": PROMPTING, "seed": cfg.seed, "config": {"model": report.model}, "metric": None,
            "trainable_params": 0, "total_params": report.total_params, "train_seconds": report.seconds["total"],
            "peak_memory_mb": report.peak_memory_mb, "num_validation_examples": report.metrics["validation"]["num_examples"],
            "baseline": f"thawkit prompt: {report.model}, {report.shots_per_class} demonstrations per class, no training "
                        f"(calibration: {report.calibration['method']})"}
    return {"path": str(folder), "info": info, "metrics": {k: v for k, v in report.metrics.items()}, "history": []}
