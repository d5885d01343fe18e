"""Which shared options each command honours: every ``TrainConfig`` field is, per command, honoured
(the default), refused when given (one line, exit code 2), or set by the command itself (a given
value that differs is refused). ``tests/test_planner.py`` walks this table against every field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from thawkit.config import flag_of
from thawkit.errors import ConfigError
from thawkit.runplan import USER_SOURCES

_DISTILL_ONLY = {name: "it is a distillation option; fix: drop it, or use thawkit distill"
                 for name in ("distill_alpha", "distill_temperature", "distill_hidden_weight")}
_RAY_TRAIN = {"ray_workers": "it trains one model on several Ray Train workers (thawkit train); fix: drop it"}
_NO_RUN_FOLDER = "the range test writes no run; fix: drop it"
_NO_TRAINING_LOOP = "the range test runs a few optimizer steps, not a training run; fix: drop it"


@dataclass(frozen=True)
class Command:
    name: str
    refuses: Mapping[str, str] = field(default_factory=dict)  # field -> why it is not honoured
    sets: Mapping[str, tuple[Any, str]] = field(default_factory=dict)  # field -> (value, why the command sets it)
    # field -> why: the command's own program sets it (from a run it continues); refused from the user
    inherited: Mapping[str, str] = field(default_factory=dict)
    writes_run: bool = True  # the plan gets an output folder


COMMANDS: dict[str, Command] = {
    "train": Command("train", refuses=_DISTILL_ONLY),
    # compare trains each job on one worker; --dapt-text adapts once and every job fine-tunes the adapted encoder.
    "compare": Command("compare", refuses={
        **_DISTILL_ONLY,
        "ray_workers": "compare runs each job on one worker; fix: drop --ray-workers, use --ray (and --ray-cpus per job)",
    }),
    "distill": Command("distill", refuses={
        "dapt_text": "distill starts from the teacher's encoder; fix: adapt and fine-tune the teacher first "
                     "(thawkit train --dapt-text), then distill it",
        "resume": "a distillation restarts from the teacher; fix: drop it and run thawkit distill again",
        **{name: f"distill trains in this process; fix: drop it ({why})" for name, why in (
            ("ray_workers", "Ray Train is for thawkit train"), ("ray_address", "Ray is for train --ray-workers and compare --ray"),
            ("ray_cpus", "Ray is for train --ray-workers and compare --ray"), ("ray_gpus", "Ray is for train --ray-workers and compare --ray"))},
    }, sets={"cache": (False, "distill trains its student without the frozen-layer cache")}),
    "lr-find": Command("lr-find", writes_run=False, refuses={
        **_DISTILL_ONLY,
        **{name: _NO_RUN_FOLDER for name in ("out", "overwrite", "resume", "test", "save_checkpoints", "checkpoint_every",
                                            "keep_checkpoints", "report_to", "measure_forgetting", "select_best")},
        **{name: _NO_TRAINING_LOOP for name in ("epochs", "warmup_ratio", "early_stopping_patience", "metric",
                                               "time_limit_seconds", "eval_batch_size")},
        "dapt_text": "the range test runs on the model as given; fix: run thawkit dapt first and pass --model OUT",
        **{name: "the range test runs in this process; fix: drop it" for name in ("ray_workers", "ray_address", "ray_cpus", "ray_gpus")},
        "cache_dtype": "the range test runs uncached; fix: drop it", "cache_dir": "the range test runs uncached; fix: drop it",
        "cache_ram_budget_mb": "the range test runs uncached; fix: drop it",
    }, sets={
        "cache": (False, "the range test trains what the last stage trains, on uncached inputs"),
        "progress": ("off", "the range test prints its curve at the end"),
        "precision": ("fp32", "the range test's manual steps run without autocast"),
    }),
    # Continues a finished run on new data: its task, model and strategy are the run's.
    "update": Command("update", inherited={
        name: "thawkit update continues the run with its own; fix: drop it, or train a new run with --model RUN"
        for name in ("task", "strategy", "model", "tokenizer")
    }, refuses={
        **_DISTILL_ONLY,
        "label_names": "the run's labels keep their names, new values are new classes; fix: drop it",
        "dapt_text": "thawkit update starts from the run's trained weights; fix: drop it",
        "resume": "an update restarts from the run; fix: drop it and run thawkit update again",
        **{name: f"thawkit update trains in this process (its merged data is built here); fix: drop it ({why})" for name, why in (
            ("ray_workers", "Ray Train is for thawkit train"), ("ray_address", "Ray is for train --ray-workers and compare --ray"),
            ("ray_cpus", "Ray is for train --ray-workers and compare --ray"), ("ray_gpus", "Ray is for train --ray-workers and compare --ray"))},
    }),
    # Computes a run's frozen-layer passes without training (compare --ray ships them to every job).
    "warm-cache": Command("warm-cache", writes_run=False, sets={"progress": ("off", "no training runs")}),
}


def command_for(name: str) -> Command:
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r} for the planner; known: {', '.join(COMMANDS)}")
    return COMMANDS[name]


def refuse_unhonoured(command: Command, given: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> None:
    """Every given option the command would not honour, named at once; ``sources`` (where each value
    came from) lets the command's own program set its ``inherited`` fields."""
    problems = [f"{flag_of(name)}: {why}" for name, why in command.refuses.items() if name in given]
    problems += [f"{flag_of(name)}: {why}" for name, why in command.inherited.items()
                 if name in given and (sources is None or str(sources.get(name, "argument")).startswith(USER_SOURCES))]
    for name, (value, why) in command.sets.items():
        if name in given and given[name] != value:
            problems.append(f"{flag_of(name)} {given[name]!r}: thawkit {command.name} uses {value!r} ({why}); fix: drop it")
    if problems:
        raise ConfigError(f"thawkit {command.name} does not take " + "; ".join(problems))


__all__ = ["COMMANDS", "Command", "command_for", "refuse_unhonoured"]
