"""Step 5 of planning: the settings that depend on the task, its data, the model and the machine,
each resolved once here (``RESOLVED`` lists them; tests/test_planner.py checks nothing else
defaults them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from thawkit.config import TrainConfig, make_config
from thawkit.errors import ConfigError
from thawkit.planner.commands import Command
from thawkit.runplan import RunPlan, world_size

# The settings this module resolves when not given (every other field keeps its own default).
RESOLVED = ("split_seed", "max_length", "lr", "head_lr_mult", "metric", "epochs", "precision", "cache_dtype", "cache", "out",
            "tokenizer", "logging_steps")
# Settings a task resolves from its data (``Task.task_settings``), concrete in its runs' plans only.
TASK_RESOLVED = ("max_new_tokens", "calibrate", "window_overlap")


@dataclass
class Resolution:
    """The values so far and where each came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def given(self, name: str) -> bool:
        return name in self.values

    def set(self, name: str, value: Any, source: str) -> None:
        self.values[name], self.sources[name] = value, source

    def default(self, name: str, value: Any, source: str) -> None:
        """``value`` unless the user (or an earlier step) gave one."""
        if name not in self.values:
            self.set(name, value, source)


def resolve_settings(cfg: TrainConfig, r: Resolution, command: Command, extra_train: Any = None, data: Any = None) -> RunPlan:
    from thawkit.models.backbone import model_facts
    from thawkit.tasks import task_only_settings

    task, strategy = check_task_config(cfg)
    for name, (flag, owner) in task_only_settings().items():
        if owner != task.name and name in r.values:
            raise ConfigError(f"{flag} is for --task {owner}; fix: drop it for --task {task.name}")
    _absolute_model_paths(r)
    r.default("split_seed", cfg.data_split_seed(), "the run's seed (--seed)")
    if command.writes_run:
        _out(r, task.name, cfg)
    if data is None:  # else the caller's (thawkit update: new examples with replayed old ones)
        data = task.load_data(make_config(r.values))
    if extra_train is not None:
        task.add_training_examples(data, extra_train)
    r.default("tokenizer", r.values.get("model", cfg.model), "the model's own")
    facts = model_facts(cfg.model)
    _max_length(r, task, facts)
    for name, (value, source) in task.task_settings(make_config(r.values), data).items():
        r.default(name, value, source)
    measured = _learning_rates(r, task, strategy, facts.num_params)
    strategy.resolve_for(cfg.model, data.multi_label)
    r.default("metric", task.selection_metric(data), f"the task's selection metric ({task.name})")
    _epochs(r, len(data.train), world_size(cfg), closed_form=strategy.fits_head_in_closed_form)
    _logging_steps(r, len(data.train), world_size(cfg))
    _hardware(r)
    cache_reason = _cache(r, task, strategy, world_size(cfg))
    config = make_config(r.values)
    plan = RunPlan(command.name, config, dict(r.sources), measured, {}, cache_reason, {"data": data})
    if extra_train is not None:
        plan.loaded["extra_train"] = extra_train
    return plan


def _absolute_model_paths(r: Resolution) -> None:
    """A model or tokenizer given as a relative folder is recorded absolute: the run (and an
    adapter's ``base_model_name_or_path``) must load from any working directory."""
    import os

    for name in ("model", "tokenizer"):
        value = r.values.get(name)
        if isinstance(value, str) and not os.path.isabs(value) and os.path.isdir(value):
            r.set(name, os.path.abspath(value), f"{r.sources.get(name, 'given')} (as an absolute path: the run loads from anywhere)")


def _out(r: Resolution, task: str, cfg: TrainConfig) -> None:
    """The run folder, checked before any work (data, DAPT) is done for it."""
    from pathlib import Path

    from thawkit.rundir import check_destination, default_run_dir

    r.default("out", str(default_run_dir(f"{task}-{cfg.strategy}")), "default: runs/<task>-<strategy>-<time>")
    check_destination(Path(r.values["out"]), cfg.overwrite)


def check_task_config(cfg: TrainConfig) -> tuple[Any, Any]:
    """(task, strategy) once the task has accepted the strategy and the settings."""
    from thawkit.tasks import get_task

    task, strategy = get_task(cfg.task), _strategy(cfg)
    task.check_config(cfg, strategy)
    return task, strategy


def _strategy(cfg: TrainConfig) -> Any:
    from thawkit.strategies import get_strategy_class

    cls = get_strategy_class(cfg.strategy)
    return cls(cls.Config(**cfg.strategy_options))


def _max_length(r: Resolution, task: Any, facts: Any) -> None:
    limit = facts.max_positions
    if r.given("max_length"):
        if limit is not None and r.values["max_length"] > limit:
            raise ConfigError(f"--max-length {r.values['max_length']} exceeds the model's {limit} positions; "
                              f"fix: pass --max-length {limit} or less")
        return
    if limit is not None and task.default_max_length > limit:
        r.set("max_length", int(limit), f"the model's limit (max_position_embeddings {limit}; the task's default is "
                                        f"{task.default_max_length})")
    else:
        r.set("max_length", task.default_max_length, f"the task's default ({task.name})")


def _learning_rates(r: Resolution, task: Any, strategy: Any, num_params: int) -> dict[str, Any]:
    """The measured LR, head multiplier and strategy options for this task, strategy and model size."""
    measured = strategy.defaults_for(task.name, num_params)
    source = measured["source"]
    r.default("lr", measured["lr"], source)
    r.default("head_lr_mult", measured["head_lr_mult"], source)
    options = dict(r.values.get("strategy_options") or {})
    for name, value in measured["options"].items():
        if name not in options:
            options[name] = value
            r.sources[f"strategy_options.{name}"] = source
    for name in r.values.get("strategy_options") or {}:
        r.sources.setdefault(f"strategy_options.{name}", r.sources.get("strategy_options", "argument"))
    r.values["strategy_options"] = options
    return measured


def _optimizer_batch(r: Resolution, processes: int) -> int:
    """Examples per optimizer step: batch size x accumulation x processes."""
    return r.values.get("batch_size", TrainConfig.model_fields["batch_size"].default) * \
        r.values.get("gradient_accumulation_steps", 1) * processes


def _epochs(r: Resolution, num_examples: int, processes: int, closed_form: bool) -> None:
    """More epochs for small data when not given, so the run has enough optimizer steps."""
    from thawkit.engine.core.arguments import MIN_TRAINING_STEPS, epochs_with_enough_steps

    if r.given("epochs") or closed_form or num_examples <= 0:
        return
    default = TrainConfig.model_fields["epochs"].default
    batch = _optimizer_batch(r, processes)
    epochs = epochs_with_enough_steps(default, num_examples, batch)
    if epochs > default:
        per_epoch = -(-num_examples // batch)
        r.set("epochs", epochs, f"small data: {num_examples} training examples give {per_epoch} optimizer steps an epoch, and "
                                f"runs under {MIN_TRAINING_STEPS} steps left strategies at the majority class ({default:g} -> "
                                f"{epochs:g}; pass --epochs to override)")
        r.notes.append(r.sources["epochs"])


def logging_interval(steps_per_epoch: int, points: int = 10) -> int:
    """A divisor of the steps in an epoch (so the last log of an epoch falls on its evaluation) giving
    the number of loss points per epoch nearest ``points`` (ties: more points)."""
    divisors = [d for d in range(1, steps_per_epoch + 1) if steps_per_epoch % d == 0]
    return min(divisors, key=lambda d: (abs(steps_per_epoch // d - points), d))


def _logging_steps(r: Resolution, num_examples: int, processes: int) -> None:
    if r.given("logging_steps"):
        return
    per_epoch = max(1, -(-num_examples // _optimizer_batch(r, processes)))
    every = logging_interval(per_epoch)
    r.set("logging_steps", every, f"{per_epoch // every} training-loss points an epoch ({per_epoch} optimizer steps, "
                                  f"every {every}; the last on the epoch's evaluation)")


def _hardware(r: Resolution) -> None:
    from thawkit.models.hardware import fast_bf16_available

    fast = fast_bf16_available()
    why = "auto: this machine has fast bf16 matmuls" if fast else "auto: no fast bf16 on this machine (no AVX512-BF16/AMX CPU, no bf16 GPU)"
    if r.values.get("precision", "auto") == "auto":
        r.set("precision", "bf16" if fast else "fp32", why)
    if r.values.get("cache_dtype", "auto") == "auto":
        r.set("cache_dtype", "bfloat16" if fast else "float32", why)


def _cache(r: Resolution, task: Any, strategy: Any, processes: int) -> str:
    """Whether the frozen-layer cache is on, and why not when it is off (its exactness self-check runs later)."""
    if not r.values.get("cache", True):
        source = r.sources.get("cache", "")
        return f"off ({source})" if source.startswith("thawkit ") else "off (--no-cache)"
    reason = ""
    if strategy.changes_inputs:
        reason = f"--strategy {r.values.get('strategy')} prepends virtual tokens to every input; the cache does not apply"
    elif not task.cacheable:
        reason = f"--task {task.name} encodes several inputs per example; the cache does not apply"
    elif processes > 1:
        reason = "off: distributed runs use the plain path"
    if reason:
        r.set("cache", False, reason)
    return reason


__all__ = ["RESOLVED", "Resolution", "resolve_settings"]
