"""Distillation: a fine-tuned teacher run trains a smaller student ("prototype large, deploy
small") for classification, NER and similarity. The student is a normal run (predict, serve,
export); distillation.json beside it reports its size, its measured speed-up and the share of the
teacher's metric it keeps.

A ``layers:N`` student starts from the teacher itself with N evenly spaced encoder layers kept
(DistilBERT's initialisation, Sanh et al. 2019), embeddings and head included. ``--unlabeled``
text, labelled by the teacher, extends the training split; ``--distill-hidden-weight`` adds
matching each student layer's hidden states to the teacher layer it came from. The objective:
``thawkit.engine.core.distill_loss``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from thawkit.config import TrainConfig
from thawkit.engine.core.distill_loss import Distillation
from thawkit.engine.core.pipeline import run_training
from thawkit.runplan import RunPlan, out_dir
from thawkit.errors import ConfigError
from thawkit.rundir import record_written
from thawkit.tasks import RunBase, Task, load_checked, open_run

DISTILLATION_FILE = "distillation.json"


def load_teacher(path: Path, task: Task) -> RunBase:
    teacher_task, run, info, labels = open_run(path)
    if not teacher_task.supports_distillation or labels.get("multi_label"):
        raise ConfigError(f"{path}: distillation takes single-label classification, NER or similarity teachers (this run is "
                          f"{info.get('task')}{', multi-label' if labels.get('multi_label') else ''}); fix: pass such a run")
    if teacher_task.name != task.name:
        raise ConfigError(f"{path}: the teacher is a {info.get('task')} run; fix: pass --task {teacher_task.name}")
    teacher = load_checked(teacher_task, run, info, labels)
    if not hasattr(teacher.model, "parameters"):
        raise ConfigError(f"{path}: the teacher is an exported (ONNX) run; fix: pass the PyTorch run it was exported from")
    return teacher


def evenly_spaced(total: int, keep: int) -> list[int]:
    """DistilBERT-style: keep layers spread over the depth, always the last one."""
    if keep >= total:
        return list(range(total))
    step = total / keep
    return sorted({min(total - 1, int(round((i + 1) * step)) - 1) for i in range(keep)})


def student_from_teacher(teacher: RunBase, keep: int, folder: Path, task: Task, max_length: int) -> tuple[Path, list[int]]:
    """The teacher with ``keep`` of its encoder layers, saved where ``--model`` can load it, and the
    teacher layer each student layer came from."""
    from thawkit.models.layout import find_layer_list, keep_layers

    model = teacher.model
    if hasattr(model, "merge_and_unload"):  # a LoRA teacher: its adapters merged into a copy
        model = copy.deepcopy(model).merge_and_unload()
    student = copy.deepcopy(model)
    layers = find_layer_list(student)[1]
    if keep < 1 or keep > len(layers):
        raise ConfigError(f"--student layers:{keep}: the teacher has {len(layers)} layers; fix: 1 to {len(layers)}")
    kept = evenly_spaced(len(layers), keep)
    keep_layers(student, kept)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    task.save_model(student, folder, teacher.info.get("config", {}).get("model", ""), max_length)  # the task's own layout
    teacher.tokenizer.save_pretrained(str(folder))
    (folder / "student_layers.json").write_text(json.dumps({"teacher_layers": len(layers), "kept": kept}) + "\n")
    return folder, kept


def _num_layers(model: Any) -> int:
    from thawkit.models.layout import find_layer_list

    return len(find_layer_list(model)[1])


def _layer_map(teacher: RunBase, student_model: str, kept: list[int] | None, cfg: TrainConfig) -> list[int]:
    """Which teacher layer each student layer's hidden states are matched to (hidden-state matching)."""
    if cfg.distill_hidden_weight <= 0:
        return []
    if kept is not None:
        return kept
    from transformers import AutoConfig

    student_config = AutoConfig.from_pretrained(student_model)
    if not _same_tokenizer(teacher, student_model):
        raise ConfigError("--distill-hidden-weight matches the student's hidden states to the teacher's token by token, "
                          "and the two tokenize differently; fix: drop the flag (soft targets alone work across tokenizers)")
    teacher_hidden, student_hidden = teacher.model.config.hidden_size, getattr(student_config, "hidden_size", None)
    if teacher_hidden != student_hidden:
        raise ConfigError(f"--distill-hidden-weight: the student's hidden size ({student_hidden}) differs from the teacher's "
                          f"({teacher_hidden}); fix: drop the flag, or use --student layers:N")
    return evenly_spaced(_num_layers(teacher.model), int(student_config.num_hidden_layers))


def _same_tokenizer(teacher: RunBase, student_model: str) -> bool:
    from thawkit.models.backbone import load_tokenizer

    student = load_tokenizer(student_model)
    return type(student).__name__ == type(teacher.tokenizer).__name__ and student.get_vocab() == teacher.tokenizer.get_vocab()


def _seconds_per_example(infer: Any, count: int = 256) -> float:
    infer(8)  # warm-up
    started = time.perf_counter()
    infer(count)
    return (time.perf_counter() - started) / count


@dataclass
class Student:
    """Where the student starts: a model name or folder, and for ``layers:N`` the teacher layers it kept."""

    spec: str  # what --student said
    model: str
    kept: list[int] | None = None
    init_folder: Path | None = None  # the layers:N initialisation, removed after training unless an adapter needs it


def prepare_student(teacher: RunBase, spec: str, out: Path, task: Task) -> Student:
    """``layers:N``: the teacher with N evenly spaced layers, saved beside ``out``; else the named model."""
    match = re.fullmatch(r"layers:(\d+)", spec.strip())
    if not match:
        return Student(spec, spec)
    init_folder = out.parent / f"{out.name}-student-base"
    folder, kept = student_from_teacher(teacher, int(match.group(1)), init_folder, task, teacher.max_length)
    return Student(spec, str(folder), kept, init_folder)


def discard_student_base(student: Student) -> None:
    """The ``layers:N`` initialisation folder is a temporary: gone when distillation fails or no longer needs it."""
    if student.init_folder is not None:
        shutil.rmtree(student.init_folder, ignore_errors=True)


def run_distill(plan: RunPlan, teacher_path: Path, teacher: RunBase, student: Student) -> tuple[RunBase, dict[str, Any]]:
    """Train the planned student (``plan.config.model`` is the student) on the teacher's soft targets."""
    cfg, task = plan.config, plan.task
    out = out_dir(plan)
    extra_train = plan.loaded.get("extra_train")
    distillation = Distillation(teacher.model, teacher, task.distillation_soft_loss, cfg.distill_alpha, cfg.distill_temperature,
                                cfg.distill_hidden_weight, _layer_map(teacher, student.model, student.kept, cfg))
    unlabeled_facts = {"unlabeled": plan.facts.get("unlabeled"), "teacher_labelled_examples": len(extra_train)} \
        if extra_train is not None else {}
    # The last check before anything is written: --out appears only for a student that can be kept.
    data_labels, teacher_labels = list(getattr(plan.data(), "labels", None) or []), list(getattr(teacher, "labels", None) or [])
    if data_labels != teacher_labels:
        discard_student_base(student)
        raise ConfigError(f"{cfg.data}: the data's labels {data_labels} differ from the teacher's {teacher_labels}; fix: distill "
                          "on data labelled like the teacher's")
    try:
        run = run_training(plan, {"distillation": {"teacher": str(teacher_path), "student": student.spec, **unlabeled_facts}},
                           distillation=distillation)
    finally:
        adapter_run = (out / "adapter_config.json").exists()  # an adapter student needs its base folder to load
        if not adapter_run:
            discard_student_base(student)
    metric = run.info["metric"]
    student_value = run.metrics["validation"].get(metric)
    if cfg.validation is not None:
        teacher_value = teacher.evaluate(cfg.validation).get(metric)
        compared_on = str(cfg.validation)
    else:
        teacher_value = teacher.metrics.get("validation", {}).get(metric)
        compared_on = "each run's own validation split (pass --validation for the same examples)"
    data = plan.data()
    teacher_speed = _seconds_per_example(task.speed_probe(teacher, data))
    student_speed = _seconds_per_example(task.speed_probe(run, data))
    facts = {
        "teacher": str(teacher_path), "student": student.spec, "alpha": cfg.distill_alpha, "temperature": cfg.distill_temperature,
        "hidden_weight": cfg.distill_hidden_weight, "layer_map": distillation.layer_map, **unlabeled_facts,
        "soft_targets": ("none: --distill-alpha 0 trains on the labels alone" if cfg.distill_alpha <= 0 and distillation.precomputed
                         else "computed once before training from the raw examples with the teacher's own tokenizer"
                         if distillation.precomputed else "the teacher run beside the student on the same inputs (hidden-state matching)"),
        "teacher_params": sum(p.numel() for p in teacher.model.parameters()),
        "student_params": sum(p.numel() for p in run.model.parameters()),
        "metric": metric, "teacher_value": teacher_value, "student_value": student_value,
        "retained_share": (student_value / teacher_value) if teacher_value else None, "compared_on": compared_on,
        "speedup": teacher_speed / student_speed if student_speed else None,
        "speed_measured_on": "256 training examples, batch 32, this machine",
    }
    target = Path(run.path) / DISTILLATION_FILE
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, target)
    record_written(Path(run.path), DISTILLATION_FILE)
    return run, facts


__all__ = ["Student", "discard_student_base", "evenly_spaced", "load_teacher", "prepare_student", "run_distill", "student_from_teacher"]
