"""Stage control: which plan is in force at a given epoch or step, and switching between them."""

from __future__ import annotations

import contextlib
from typing import Any

from torch import nn
from transformers import TrainerCallback

from thawkit.engine.core.trainability import (
    add_groups_to_optimizer,
    build_param_groups,
    params_in_optimizer,
    set_frozen_blocks_eval,
    set_requires_grad,
    with_head_multiplier,
)
from thawkit.models.layout import HEAD, BlockLayout
from thawkit.strategies.base import Strategy, TrainablePlan


class SkipEmptyStages:
    """A model without a task head (a bi-encoder) would train nothing in a head-only first stage:
    start at the first stage whose plan trains something."""

    def __init__(self, strategy: Strategy, offset: int) -> None:
        self.inner, self.offset = strategy, offset
        self.config = strategy.config
        self.name = strategy.name

    @classmethod
    def wrap(cls, strategy: Strategy, layout: BlockLayout) -> Strategy:
        stages = strategy.num_stages(layout)
        offset = next((s for s in range(stages) if strategy.plan(layout, s).trainable), 0)
        return cls(strategy, offset) if offset else strategy  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def num_stages(self, layout: BlockLayout) -> int:
        return self.inner.num_stages(layout) - self.offset

    def plan(self, layout: BlockLayout, stage: int) -> TrainablePlan:
        return self.inner.plan(layout, stage + self.offset)


class StageController:
    def __init__(
        self,
        strategy: Strategy,
        model: nn.Module,
        layout: BlockLayout,
        base_lr: float,
        weight_decay: float,
        decay_names: set[str],
        head_lr_mult: float = 1.0,
    ) -> None:
        self.strategy = strategy
        self.head_lr_mult = head_lr_mult
        self.model = model
        self.layout = layout
        self.base_lr = base_lr
        self.weight_decay = weight_decay
        self.decay_names = decay_names
        self.num_stages = strategy.num_stages(layout)
        self.stage = 0
        self.plan: TrainablePlan = strategy.plan(layout, 0)
        self.stage_log: list[dict[str, Any]] = []
        # Called with the new plan at every stage change (the cached path follows the boundary).
        self.listeners: list[Any] = []
        # Parameter names refer to the full model; the cached path provides a context restoring it.
        self.full_structure: Any = contextlib.nullcontext

    def ever_trainable(self) -> set[str]:
        """Union over stages: what DDP must register as trainable when it wraps the model."""
        names: set[str] = set()
        for stage in range(self.num_stages):
            names |= self.strategy.plan(self.layout, stage).trainable
        return names

    def trained(self) -> set[str]:
        """Union over the stages the run reached (a short gradual run never thaws the bottom)."""
        reached = {entry["stage"] for entry in self.stage_log}
        if not reached:
            return self.ever_trainable()
        return set().union(*(self.strategy.plan(self.layout, stage).trainable for stage in reached))

    def stage_for(self, epoch: float, global_step: int) -> int:
        every = self.strategy.stage_every_steps
        stage = global_step // every if every else int(epoch + 1e-6)
        return min(stage, self.num_stages - 1)

    def _groups_plan(self) -> TrainablePlan:
        return with_head_multiplier(self.plan, set(self.layout.params[HEAD]), self.head_lr_mult)

    def initial_param_groups(self) -> list[dict[str, Any]]:
        return build_param_groups(self.model, self._groups_plan(), self.base_lr, self.weight_decay, self.decay_names)

    def enter(self, stage: int, global_step: int, optimizer: Any = None, scheduler: Any = None) -> None:
        """Apply the plan of ``stage``: requires_grad, eval modes, and new optimizer groups."""
        self.stage = stage
        self.plan = self.strategy.plan(self.layout, stage)
        with self.full_structure():
            set_requires_grad(self.model, self.plan.trainable)
            if optimizer is not None:
                new_groups = build_param_groups(
                    self.model,
                    self._groups_plan(),
                    self.base_lr,
                    self.weight_decay,
                    self.decay_names,
                    exclude=params_in_optimizer(optimizer),
                )
                add_groups_to_optimizer(optimizer, scheduler, new_groups)
        for listener in self.listeners:
            listener(self.plan)
        if not self.stage_log or self.stage_log[-1]["stage"] != stage:  # a resumed run re-enters its stage
            self.stage_log.append(
                {"stage": stage, "step": global_step, "trainable_blocks": self.plan.trainable_blocks(self.layout)}
            )

    def enforce_eval_modes(self) -> None:
        set_frozen_blocks_eval(self.layout, self.plan)


class StageCallback(TrainerCallback):
    """Moves the controller to the right stage at train start, each epoch, or every N steps."""

    def __init__(self, controller: StageController) -> None:
        self.controller = controller

    def _sync(self, state: Any, optimizer: Any, scheduler: Any, force: bool = False) -> None:
        stage = self.controller.stage_for(state.epoch or 0.0, state.global_step)
        if force or stage != self.controller.stage:
            self.controller.enter(stage, state.global_step, optimizer, scheduler)

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):  # type: ignore[override]
        self._sync(state, optimizer, lr_scheduler, force=True)

    def on_epoch_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):  # type: ignore[override]
        self._sync(state, optimizer, lr_scheduler)

    def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):  # type: ignore[override]
        if self.controller.strategy.stage_every_steps:
            self._sync(state, optimizer, lr_scheduler)
