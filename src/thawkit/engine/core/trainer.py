"""The ``transformers.Trainer`` subclass that lets a strategy own the optimizer's parameter groups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from transformers import Trainer, TrainerCallback

from thawkit.engine.core.distill_loss import TEACHER_ROW
from thawkit.engine.core.stages import StageController

if TYPE_CHECKING:
    from thawkit.engine.core.distill_loss import Distillation
    from thawkit.engine.core.resume import CheckpointState
    from thawkit.guards.learning_rate import DivergenceMonitor


class EpochSeededLengthGroupedSampler:
    """Length-grouped order drawn from ``seed + epoch``: the same in a resumed run as in an
    uninterrupted one (a generator carried across epochs would restart at epoch 0's order)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        self.batch_size, self.lengths, self.seed, self.epoch = batch_size, lengths, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Any:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class StrategyTrainer(Trainer):
    """A plain Trainer, except that:

    - the optimizer holds only what the current stage trains, in the strategy's LR groups;
    - frozen blocks are put back in eval mode after the Trainer's ``model.train()``.
    """

    def __init__(
        self,
        *args: Any,
        controller: StageController,
        train_lengths: list[int] | None = None,
        class_weights: list[float] | None = None,
        divergence: DivergenceMonitor | None = None,
        materialize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        checkpoint_state: CheckpointState | None = None,
        keep_checkpoints: int = 1,
        distillation: Distillation | None = None,
        training_loss: Callable[..., Any] | None = None,  # (model, inputs, num_items, return_outputs) -> loss[, outputs] | None
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.training_loss = training_loss  # the task's cheaper exact loss (a language model's: completion positions only)
        self.distillation = distillation  # a teacher's soft targets
        if distillation is not None:
            distillation.teacher.eval()
            distillation.autocast_bf16 = bool(self.args.bf16)
        self.checkpoint_state = checkpoint_state
        self.keep_checkpoints = keep_checkpoints
        self.resume_stage = 0  # set when resuming: the stage whose optimizer groups the checkpoint holds
        self.resume_step = 0
        self.resume_losses: dict[str, float] | None = None  # the interrupted run's loss accumulators
        self.add_callback(_RestoreLosses(self))
        self.materialize = materialize  # the cached path's: boundary states for this batch's rows
        self.controller = controller
        self.train_lengths = train_lengths
        self.class_weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.divergence = divergence

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Length-grouped batches (random mega-batches sorted by length): little padding, still shuffled."""
        if self.train_lengths is None:
            return super()._get_train_sampler(train_dataset)

        return EpochSeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            lengths=self.train_lengths,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
        )

    def _prepare_inputs(self, inputs: Any) -> Any:
        inputs = super()._prepare_inputs(inputs)
        return self.materialize(inputs) if self.materialize is not None else inputs

    def batch_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A batch from one of this trainer's data loaders, on the device, as the model needs it now."""
        return self._prepare_inputs({k: v for k, v in batch.items() if k != TEACHER_ROW})

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k != "lr"}
            self.optimizer = optimizer_cls(self.controller.initial_param_groups(), **optimizer_kwargs)
            if self.resume_stage:
                from thawkit.engine.core.resume import rebuild_stages

                rebuild_stages(self.controller, self.optimizer, self.resume_stage, self.resume_step)
            if self.resume_step:  # the stage history as the interrupted run logged it
                self.controller.stage_log = list(self.checkpoint_state.restored_stage_log)
        return self.optimizer

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """The Trainer's checkpoint, then thawkit's state (marking it complete), then rotation, so a
        kill at any point leaves at least one complete checkpoint."""
        from pathlib import Path

        from thawkit.engine.core.resume import rotate

        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if not self.args.should_save:
            return
        root = Path(self._get_output_dir(trial=trial))
        if self.checkpoint_state is not None:
            self.checkpoint_state.save(root / f"checkpoint-{self.state.global_step}", self.loss_accumulators())
        rotate(root, self.keep_checkpoints)

    def loss_accumulators(self) -> dict[str, float]:
        """The Trainer's running loss sums at this step (what a resumed run must continue from, so its
        logged epoch losses and final training loss equal the uninterrupted run's)."""
        return {
            "pending": float(self._tr_loss.item()),  # summed since the last log (losses are logged per epoch)
            "total": float(self._total_loss_scalar),  # summed over the logged steps
            "last_logged_step": int(self._globalstep_last_logged),
            "first_step": int(self._initial_global_step),  # the step the sums start at (0: from the start)
        }

    def restore_loss_accumulators(self) -> None:
        """After the Trainer zeroed its sums for a resumed ``train()``: the interrupted run's."""
        saved = self.resume_losses
        if saved is None:
            return
        self._tr_loss = torch.tensor(saved["pending"], dtype=self._tr_loss.dtype, device=self._tr_loss.device)
        self._total_loss_scalar = saved["total"]
        self._globalstep_last_logged = saved["last_logged_step"]
        self._initial_global_step = saved["first_step"]

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        with self.controller.full_structure():
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # A checkpoint is the full model, also while the cached path has modules swapped out.
        with self.controller.full_structure():
            super().save_model(output_dir, _internal_call=_internal_call)

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):  # type: ignore[override]
        if model.training:
            self.controller.enforce_eval_modes()
        teacher_rows = inputs.pop(TEACHER_ROW, None)  # training rows' index into precomputed teacher targets
        if self.distillation is not None and model.training and "labels" in inputs:
            return self.distillation.loss(model, inputs, self.class_weights, return_outputs, teacher_rows)
        cheaper = None
        if self.training_loss is not None and "labels" in inputs:
            # Normalised as the Trainer normalises the model's own loss: by the tokens of the whole
            # accumulated batch where the model takes loss kwargs (else a mean, divided by the steps later).
            items = num_items_in_batch if self.model_accepts_loss_kwargs and model.training else None
            cheaper = self.training_loss(model, inputs, items, return_outputs)
            if cheaper is not None and items is not None and self.args.average_tokens_across_devices:
                cheaper = cheaper * self.accelerator.num_processes  # items were counted over every process
        if cheaper is not None:
            result = cheaper
        elif self.class_weights is not None and "labels" in inputs:
            labels = inputs["labels"]
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            weights = self.class_weights.to(outputs.logits.device)
            if labels.dtype.is_floating_point:  # multi-label: up-weight the positives of rare labels
                loss = torch.nn.functional.binary_cross_entropy_with_logits(outputs.logits, labels, pos_weight=weights)
            else:
                loss = torch.nn.functional.cross_entropy(outputs.logits, labels, weight=weights)
            result = (loss, outputs) if return_outputs else loss
        else:
            result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if model.training and self.divergence is not None:
            loss = result[0] if isinstance(result, tuple) else result
            finding = self.divergence.observe(float(loss.detach()))
            if finding is not None:
                from thawkit.guards.base import GuardError

                raise GuardError(finding.line())
        return result


class _RestoreLosses(TrainerCallback):
    """``on_train_begin`` comes right after the Trainer reset its loss sums: put a resumed run's back."""

    def __init__(self, trainer: StrategyTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        self.trainer.restore_loss_accumulators()
