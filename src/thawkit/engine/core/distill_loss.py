"""The distillation objective: soft targets from the teacher (the task says over what), the labels,
and optionally the teacher's hidden states.

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


@dataclass
class Distillation:
    teacher: Any  # the teacher's model, in eval mode
    soft_loss: Callable[[Any, Any, Any, float], torch.Tensor]  # Task.distillation_soft_loss
    alpha: float = 0.5
    temperature: float = 2.0
    hidden_weight: float = 0.0
    layer_map: list[int] = field(default_factory=list)  # student layer j was teacher layer layer_map[j]
    autocast_bf16: bool = False  # the teacher's forward in bf16, like the student's (set by the trainer)

    def loss(self, model: Any, inputs: dict[str, Any], class_weights: torch.Tensor | None, return_outputs: bool) -> Any:
        features = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = {"output_hidden_states": True} if self.hidden_weight > 0 else {}
        outputs = model(**inputs, **hidden)
        device = next(self.teacher.parameters()).device.type
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            teacher_outputs = self.teacher(**features, **hidden)
        labels = inputs["labels"]
        student_logits = outputs.logits.float()
        soft = self.soft_loss(student_logits, teacher_outputs.logits.float(), labels, self.temperature)
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
