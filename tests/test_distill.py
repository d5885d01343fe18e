"""`thawkit distill`: a layers:N student initialised from the teacher learns from its soft targets,
keeps most of its metric, and is a normal run."""

from __future__ import annotations

import json

import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.engine.distill import evenly_spaced
from thawkit.testing import make_tiny_model, write_toy_csv


def test_evenly_spaced_layers_keep_the_top():
    assert evenly_spaced(6, 3) == [1, 3, 5] and evenly_spaced(12, 6)[-1] == 11 and evenly_spaced(4, 4) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    model = make_tiny_model(root / "deep", num_layers=4)
    data = write_toy_csv(root / "toy.csv", n=240)
    run = thawkit.train(data=data, model=str(model), strategy="full", epochs=5, lr=2e-3, batch_size=8, max_length=16, out=root / "run",
                        progress="off", measure_forgetting=False)
    return run, data


def test_layers_student_keeps_the_teachers_metric(teacher, tmp_path):
    teacher_run, data = teacher
    assert teacher_run.metrics["validation"]["accuracy"] > 0.9  # a teacher worth distilling
    student, facts = thawkit.distill(teacher_run.path, "layers:2", data=data, validation=data, epochs=5, lr=2e-3, batch_size=8, max_length=16,
                                     out=tmp_path / "student", progress="off", measure_forgetting=False)
    assert facts["student_params"] < facts["teacher_params"]
    assert facts["retained_share"] >= 0.95 and facts["compared_on"] == str(data)
    assert facts["speedup"] > 0
    saved = json.loads((tmp_path / "student" / "distillation.json").read_text())
    assert saved["student"] == "layers:2" and len(student.model.base_model.encoder.layer) == 2
    assert not (tmp_path / "student-student-base").exists()  # the init folder is temporary for a full student
    reloaded = thawkit.load(tmp_path / "student")  # a normal run
    assert reloaded.predict(["the film was great"])[0]["label"] == student.predict(["the film was great"])[0]["label"]


def test_soft_targets_are_used(teacher, tmp_path, monkeypatch):
    """alpha=1: the labels play no part; the student still learns, from the teacher alone."""
    teacher_run, data = teacher
    import thawkit.engine.trainer as trainer_module

    seen = {"distilled": 0}
    original = trainer_module.StrategyTrainer._distillation_loss

    def counting(self, *args, **kwargs):
        seen["distilled"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.StrategyTrainer, "_distillation_loss", counting)
    _, facts = thawkit.distill(teacher_run.path, "layers:2", data=data, validation=data, epochs=5, lr=2e-3, batch_size=8, max_length=16,
                               distill_alpha=1.0, out=tmp_path / "student", progress="off", measure_forgetting=False)
    assert seen["distilled"] > 0 and facts["retained_share"] >= 0.9


def test_distill_cli_and_bad_teacher(teacher, tmp_path, capsys):
    teacher_run, data = teacher
    main(["distill", "--teacher", str(teacher_run.path), "--student", "layers:1", "--data", str(data), "--epochs", "1",
          "--max-length", "16", "--out", str(tmp_path / "s"), "--progress", "off", "--no-measure-forgetting"])
    assert "faster" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["distill", "--teacher", str(teacher_run.path), "--student", "layers:9", "--data", str(data), "--out", str(tmp_path / "t")])
    assert exit_info.value.code == 2 and "layers:9" in capsys.readouterr().err
