"""Distillation: a fine-tuned teacher run's logits train a smaller student ("prototype large,
deploy small"). The student is a normal run (predict, serve); distillation.json beside it reports
its size, its measured speed-up and the share of the teacher's metric it keeps.

A ``layers:N`` student starts from the teacher itself with N evenly spaced encoder layers kept
(DistilBERT's initialisation, Sanh et al. 2019), embeddings and head included.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from thawkit.config import TrainConfig
from thawkit.engine.pipeline import run_training
from thawkit.errors import ConfigError
from thawkit.rundir import read_run_files
from thawkit.tasks import RunBase, task_for_run

DISTILLATION_FILE = "distillation.json"


def load_teacher(path: Path) -> RunBase:
    run, info, labels = read_run_files(path)
    if info.get("task") != "sequence-classification" or labels.get("multi_label"):
        raise ConfigError(f"{path}: distillation supports single-label classification teachers so far (this run is "
                          f"{info.get('task')}); fix: pass a classification run")
    return task_for_run(info["task"]).load_run(run, info, labels)


def evenly_spaced(total: int, keep: int) -> list[int]:
    """DistilBERT-style: keep layers spread over the depth, always the last one."""
    if keep >= total:
        return list(range(total))
    step = total / keep
    return sorted({min(total - 1, int(round((i + 1) * step)) - 1) for i in range(keep)})


def student_from_teacher(teacher: RunBase, keep: int, folder: Path) -> Path:
    """The teacher with ``keep`` of its encoder layers, saved where ``--model`` can load it."""
    from thawkit.models.layout import find_layer_list

    model = teacher.model
    if hasattr(model, "merge_and_unload"):  # a LoRA teacher: its adapters merged into a copy
        model = copy.deepcopy(model).merge_and_unload()
    student = copy.deepcopy(model)
    name, layers = find_layer_list(student)
    if keep < 1 or keep > len(layers):
        raise ConfigError(f"--student layers:{keep}: the teacher has {len(layers)} layers; fix: 1 to {len(layers)}")
    kept = evenly_spaced(len(layers), keep)
    parent = student.get_submodule(name.rsplit(".", 1)[0]) if "." in name else student
    setattr(parent, name.rsplit(".", 1)[-1], type(layers)([layers[i] for i in kept]))
    for attribute in ("num_hidden_layers", "n_layers"):
        if hasattr(student.config, attribute):
            setattr(student.config, attribute, keep)
    shutil.rmtree(folder, ignore_errors=True)
    student.save_pretrained(str(folder))
    teacher.tokenizer.save_pretrained(str(folder))
    (folder / "student_layers.json").write_text(json.dumps({"teacher_layers": len(layers), "kept": kept}) + "\n")
    return folder


def _seconds_per_text(run: RunBase, texts: list[str]) -> float:
    run.predict(texts[:8])  # warm-up
    started = time.perf_counter()
    run.predict(texts, batch_size=32)
    return (time.perf_counter() - started) / max(len(texts), 1)


def run_distill(cfg: TrainConfig, teacher_path: Path, student: str) -> tuple[RunBase, dict[str, Any]]:
    teacher = load_teacher(Path(teacher_path))
    init_folder = None
    match = re.fullmatch(r"layers:(\d+)", student.strip())
    out = Path(cfg.out) if cfg.out is not None else Path("runs") / f"distill-{time.strftime('%Y%m%d-%H%M%S')}"
    if match:
        init_folder = out.parent / f"{out.name}-student-base"
        student_model = str(student_from_teacher(teacher, int(match.group(1)), init_folder))
    else:
        student_model = student
    cfg = cfg.model_copy(update={"model": student_model, "out": out, "cache": False})
    try:
        run = run_training(cfg, {"distillation": {"teacher": str(teacher_path), "student": student}}, teacher=teacher.model)
    finally:
        adapter_run = (out / "adapter_config.json").exists()  # an adapter student needs its base folder to load
        if init_folder is not None and not adapter_run:
            shutil.rmtree(init_folder, ignore_errors=True)
    if list(run.labels) != list(teacher.labels):
        raise ConfigError(f"the data's labels {run.labels} differ from the teacher's {teacher.labels}; fix: distill on data "
                          "labelled like the teacher's")
    metric = run.info["metric"]
    student_value = run.metrics["validation"].get(metric)
    if cfg.validation is not None:
        teacher_value = teacher.evaluate(cfg.validation).get(metric)
        compared_on = str(cfg.validation)
    else:
        teacher_value = teacher.metrics.get("validation", {}).get(metric)
        compared_on = "each run's own validation split (pass --validation for the same examples)"
    texts = _validation_texts(cfg)
    teacher_speed, student_speed = _seconds_per_text(teacher, texts), _seconds_per_text(run, texts)
    facts = {
        "teacher": str(teacher_path), "student": student, "alpha": cfg.distill_alpha, "temperature": cfg.distill_temperature,
        "teacher_params": sum(p.numel() for p in teacher.model.parameters()),
        "student_params": sum(p.numel() for p in run.model.parameters()),
        "metric": metric, "teacher_value": teacher_value, "student_value": student_value,
        "retained_share": (student_value / teacher_value) if teacher_value else None, "compared_on": compared_on,
        "speedup": teacher_speed / student_speed if student_speed else None,
        "speed_measured_on": f"{len(texts)} texts, batch 32, this machine",
    }
    target = Path(run.path) / DISTILLATION_FILE
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, target)
    return run, facts


def _validation_texts(cfg: TrainConfig, limit: int = 256) -> list[str]:
    from thawkit.data.classification import load_classification_data

    data = load_classification_data(cfg.data, validation=cfg.validation, text_col=cfg.text_col, label_col=cfg.label_col,
                                    seed=cfg.split_seed if cfg.split_seed is not None else cfg.seed, fmt=cfg.table_format())
    return data.validation["text"].tolist()[:limit]


__all__ = ["run_distill", "student_from_teacher", "evenly_spaced"]
