"""The distillation objective: soft targets from the teacher (the task says over what), the labels,
and optionally the teacher's hidden states.

Without hidden-state matching the teacher's outputs are computed once, before training, from the raw
examples with the teacher's own tokenizer (``Task.teacher_targets``, one row per encoded training
example, found by the ``teacher_row`` each training batch carries): a decoder teacher can teach an
encoder student, and the teacher runs once instead of once per epoch. Hidden-state matching needs
the teacher's states for the student's own tokens: the teacher then runs beside the student on the
same inputs, which needs the same tokenizer.

loss = alpha * soft + (1 - alpha) * hard + hidden_weight * hidden, where ``soft`` is the task's
(T^2 * KL at temperature T per example or per tagged token; the teacher's cosines for similarity),
``hard`` is the model's own loss on the labels (class-weighted cross-entropy where class weights
apply), and ``hidden`` the mean squared error between each student layer's output and that of the
teacher layer it was initialised from (TinyBERT-style; only where hidden sizes match).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from thawkit.errors import ConfigError


TEACHER_ROW = "teacher_row"


@dataclass
class Distillation:
    teacher: Any  # the teacher's model, in eval mode
    teacher_run: Any  # the teacher's run (RunBase): what Task.teacher_targets reads the examples with
    soft_loss: Callable[[Any, Any, Any, float], torch.Tensor]  # Task.distillation_soft_loss
    alpha: float = 0.5
    temperature: float = 2.0
    hidden_weight: float = 0.0
    layer_map: list[int] = field(default_factory=list)  # student layer j was teacher layer layer_map[j]
    autocast_bf16: bool = False  # the teacher's forward in bf16, like the student's (set by the trainer)
    targets: list[torch.Tensor] | None = None  # precomputed: the teacher's outputs per training row (Task.teacher_targets)
    shape_targets: Callable[[list[torch.Tensor], Any], torch.Tensor] | None = None  # Task.distillation_targets

    @property
    def precomputed(self) -> bool:
        """Soft targets computed once before training (else the teacher runs beside the student)."""
        return self.hidden_weight <= 0

    def attach_targets(self, task: Any, data: Any, tokenizer: Any, cfg: Any, train_ds: Any) -> Any:
        """The teacher's targets for every encoded training row, and the rows marked with their
        ``teacher_row`` (``TeacherRowCollator`` carries it into each batch)."""
        if self.alpha <= 0:  # the labels alone: the teacher's outputs would weigh nothing
            return train_ds
        self.targets = list(task.teacher_targets(self.teacher_run, data, tokenizer, cfg))
        self.shape_targets = task.distillation_targets
        if len(self.targets) != len(train_ds):
            raise RuntimeError(f"distillation: {len(self.targets)} teacher targets for {len(train_ds)} training rows")
        rows = getattr(train_ds, "rows", None)  # the cacheable tasks' SwitchableDataset holds its rows as dicts
        if rows is not None:
            for i, row in enumerate(rows):
                row[TEACHER_ROW] = i
            return train_ds
        return train_ds.add_column(TEACHER_ROW, list(range(len(train_ds))))

    def loss(self, model: Any, inputs: dict[str, Any], class_weights: torch.Tensor | None, return_outputs: bool,
             teacher_rows: torch.Tensor | None = None) -> Any:
        hidden = {"output_hidden_states": True} if self.hidden_weight > 0 else {}
        outputs = model(**inputs, **hidden)
        labels = inputs["labels"]
        student_logits = outputs.logits.float()
        teacher_outputs = None
        if not self.precomputed:  # hidden-state matching: the teacher beside the student, on its inputs
            features = {k: v for k, v in inputs.items() if k != "labels"}
            device = next(self.teacher.parameters()).device.type
            with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=self.autocast_bf16):
                teacher_outputs = self.teacher(**features, **hidden)
        if self.alpha <= 0:
            soft = student_logits.new_zeros(())
        else:
            if teacher_outputs is not None:
                teacher_logits = teacher_outputs.logits
            elif teacher_rows is None or self.targets is None or self.shape_targets is None:
                raise RuntimeError("distillation: a training batch without its teacher_row")
            else:
                teacher_logits = self.shape_targets([self.targets[i] for i in teacher_rows.tolist()], labels)
            soft = self.soft_loss(student_logits, teacher_logits.to(student_logits.device).float(), labels, self.temperature)
        if class_weights is not None:
            hard = torch.nn.functional.cross_entropy(student_logits, labels, weight=class_weights.to(student_logits.device))
        else:
            hard = outputs.loss
        loss = self.alpha * soft + (1 - self.alpha) * hard
        if self.hidden_weight > 0:
            loss = loss + self.hidden_weight * self._hidden_loss(outputs, teacher_outputs, inputs.get("attention_mask"))
        return (loss, outputs) if return_outputs else loss

    def _hidden_loss(self, outputs: Any, teacher_outputs: Any, attention_mask: Any) -> torch.Tensor:
        student_states, teacher_states = getattr(outputs, "hidden_states", None), getattr(teacher_outputs, "hidden_states", None)
        if student_states is None or teacher_states is None:
            raise ConfigError("--distill-hidden-weight: this task's model does not return hidden states; fix: drop the flag")
        mask = attention_mask.unsqueeze(-1).float() if attention_mask is not None else None
        losses = []
        for j, i in enumerate(self.layer_map):
            difference = (student_states[j + 1].float() - teacher_states[i + 1].float()) ** 2  # index 0: the embeddings
            if mask is not None:
                losses.append((difference * mask).sum() / (mask.sum() * difference.shape[-1]).clamp(min=1))
            else:
                losses.append(difference.mean())
        return torch.stack(losses).mean()


class TeacherRowCollator:
    """The task's collator, with each training example's ``teacher_row`` carried beside the padded batch."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if TEACHER_ROW not in features[0]:
            return self.inner(features)
        batch = self.inner([{k: v for k, v in f.items() if k != TEACHER_ROW} for f in features])
        batch[TEACHER_ROW] = torch.tensor([f[TEACHER_ROW] for f in features])
        return batch
