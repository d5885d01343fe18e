"""The run's final scores: every split on the plain (uncached) model, in row order, with the task's
calibration fitted on validation on the way."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from thawkit.config import TrainConfig
from thawkit.tasks import Task, TaskData


def final_metrics(task: Task, data: TaskData, trainer: Any, val_ds: Any, test_ds: Callable[[], Any], tokenizer: Any,
                  cfg: TrainConfig, refit: Any = None) -> tuple[dict[str, Any], Any]:
    """metrics.json on the plain (uncached) model: validation, and test when given, and the task's
    calibration fitted on validation (None: the task has none); ``refit`` (few-shot) trains the final
    model again on every labeled example after validation is scored (and the calibration fitted);
    ``test_ds`` encodes the test split when there is one."""
    def predicted(split: str, dataset: Any) -> Any:
        trainer.compute_metrics = task.metric_function(data, split)  # the loop's reads the validation split
        return _in_row_order(trainer.predict(dataset, metric_key_prefix=split), dataset)

    def scored(split: str, dataset: Any, output: Any = None) -> dict[str, Any]:
        output = output if output is not None else predicted(split, dataset)
        return {**task.final_metrics(data, split, output), **task.model_metrics(trainer.model, tokenizer, data, split, cfg)}

    validation = predicted("validation", val_ds)
    calibration = task.fit_calibration(data, validation, cfg)
    metrics = {"validation": scored("validation", val_ds, validation)}
    if refit is not None:
        trainer.model.refit = refit()
    if data.test is not None:
        metrics["test"] = scored("test", test_ds())
    return metrics, calibration


def _in_row_order(output: Any, dataset: Any) -> Any:
    """``Trainer.predict``'s output with its rows back in the split's order (an evaluation split runs
    in length order): row i is the split's example i, as per-slice scores and calibration read it."""
    order = getattr(dataset, "order", None)
    if order is None:
        return output
    inverse = np.argsort(np.asarray(order), kind="stable")

    def back(values: Any) -> Any:
        if isinstance(values, tuple):
            return tuple(back(v) for v in values)
        return values[inverse] if isinstance(values, np.ndarray) and values.shape[:1] == inverse.shape else values

    return output._replace(predictions=back(output.predictions), label_ids=back(output.label_ids))

