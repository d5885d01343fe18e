"""ScoringRole: the task's metrics, the one that selects the best epoch, and what distillation and
the int8 export check measure with."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    from thawkit.config import TrainConfig
    from thawkit.tasks.base import RunBase, TaskData


class ScoringRole:
    name: ClassVar[str]
    default_metric: ClassVar[str]  # selects the best evaluation unless --metric says otherwise
    supports_distillation: ClassVar[bool] = False

    def selection_metric(self, data: "TaskData") -> str:
        """The metric that selects the best evaluation when --metric is not given."""
        return self.default_metric

    def metric_function(self, data: "TaskData", split: str) -> Callable[[Any], dict[str, float]]:
        """Scalar metrics of an ``EvalPrediction`` on ``split`` (called at every evaluation)."""
        raise NotImplementedError(f"task {self.name} must define metric_function")

    def logits_for_metrics(self) -> Callable[[Any, Any], Any] | None:
        """Reduces each evaluation batch's logits before the Trainer gathers them (``preprocess_logits_for_metrics``):
        a language model's (batch, tokens, vocabulary) logits would not fit; None: kept as they are."""
        return None

    def training_loss(self) -> Callable[..., Any] | None:
        """A cheaper exact loss for training and evaluation: (model, inputs, num_items_in_batch,
        return_outputs) -> loss (or loss and outputs), or None from it for the model's own; None: the
        model's own loss always."""
        return None

    def model_metrics(self, model: Any, tokenizer: Any, data: "TaskData", split: str, cfg: "TrainConfig") -> dict[str, Any]:
        """Metrics the model's forward pass cannot give (a generator's written answers), added to the split's entry."""
        return {}

    def final_metrics(self, data: "TaskData", split: str, output: Any) -> dict[str, Any]:
        """metrics.json's entry for a split, from ``Trainer.predict``'s output."""
        scalar = self.metric_function(data, split)(output)
        loss = output.metrics.get(f"{split}_loss")
        return {**scalar, "loss": None if loss is None else float(loss)}

    def fit_calibration(self, data: "TaskData", output: Any, cfg: "TrainConfig") -> Any:
        """A calibration fitted on the validation split's ``Trainer.predict`` output (in row order):
        an object with ``apply(model)`` (bakes it into the model to be saved) and ``facts``
        (thawkit.json's ``calibration``); what scoring needs of it goes into ``data.scratch``. None:
        this task's scores are not calibrated."""
        return None

    def distillation_soft_loss(self, student_logits: Any, teacher_logits: Any, labels: Any, temperature: float) -> Any:
        """KL(teacher || student) at temperature T, scaled by T^2 (Hinton et al. 2015), over the last
        dimension: one distribution per example."""
        import torch

        t = temperature
        return torch.nn.functional.kl_div(torch.log_softmax(student_logits / t, -1), torch.softmax(teacher_logits / t, -1),
                                          reduction="batchmean") * t * t

    def teacher_targets(self, teacher: "RunBase", data: "TaskData", tokenizer: Any, cfg: "TrainConfig") -> list[Any]:
        """The teacher's outputs for each encoded training row (``encode``'s order), computed once from
        the raw examples with the teacher's own tokenizer: soft targets over the labels, whatever the
        two tokenizers are. Tensors that ``distillation_targets`` puts back in the student's shape."""
        raise NotImplementedError(f"task {self.name} has no precomputed soft targets")

    def distillation_targets(self, rows: list[Any], labels: Any) -> Any:
        """A batch of ``teacher_targets`` rows shaped like the student's logits (one row per example)."""
        import torch

        return torch.stack(rows)

    def speed_probe(self, run: "RunBase", data: "TaskData") -> Callable[[int], None]:
        """Runs inference over a number of the data's examples (for measured speed-ups)."""
        texts = self.sample_texts(data, 256)  # type: ignore[attr-defined]

        def infer(count: int) -> None:
            run.predict(texts[:count], batch_size=32)

        return infer

    def validation_metrics(self, run: "RunBase", cfg: "TrainConfig") -> tuple[dict[str, Any], int] | None:
        """(metrics, examples) of ``run`` on the validation data its training (``cfg``) used, or None
        where that data is not readable here (int8 export reports the change on it)."""
        if cfg.validation is None or not Path(cfg.validation).exists():
            return None
        values = run.evaluate(cfg.validation)
        return values, next((v for k, v in values.items() if k.startswith("num_") and isinstance(v, int)), 0)
