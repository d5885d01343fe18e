"""Run folders that are unfinished, damaged or pickle-only: every command that loads a run (predict,
evaluate, info, serve, export, distill's teacher) refuses them with one line and exit 2, and
nothing is ever unpickled."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import thawkit
from thawkit.cli.app import main
from thawkit.errors import ThawkitError

COMMANDS = {
    "predict": lambda run, data, out: ["predict", str(run), "a fine film"],
    "evaluate": lambda run, data, out: ["evaluate", str(run), "--data", str(data)],
    "export": lambda run, data, out: ["export", str(run), "--onnx", "--out", str(out)],
}


@pytest.fixture(scope="module")
def finished(tiny_bert, toy_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    common = {"model": str(tiny_bert), "data": toy_csv, "epochs": 1, "max_length": 16, "progress": "off", "measure_forgetting": False}
    return {"full": thawkit.train(strategy="full", out=root / "full", **common).path,
            "lora": thawkit.train(strategy="lora", out=root / "lora", **common).path}


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _refused(args: list[str], capsys, fragment: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert stopped.value.code == 2 and len(lines) == 1 and fragment in err and "Traceback" not in err, (args, err)
    return " ".join(err.split())


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_partial_folder_is_never_loaded(finished, toy_csv, tmp_path, capsys, command):
    """A kill during the final save leaves a complete-looking ``.NAME.partial``: still not a run."""
    partial = _copy(finished["full"], tmp_path / ".run.partial")
    err = _refused(COMMANDS[command](partial, toy_csv, tmp_path / "exported"), capsys, "unfinished run")
    assert f"--resume {tmp_path / 'run'}" in err
    assert not (tmp_path / "exported").exists()
    with pytest.raises(ThawkitError, match="unfinished run"):
        thawkit.load(partial)


def test_serve_refuses_a_partial_folder(finished, tmp_path):
    from thawkit.serve import load_served

    partial = _copy(finished["full"], tmp_path / ".run.partial")
    with pytest.raises(ThawkitError, match="unfinished run"):
        load_served({"x": partial})


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_pickle_only_weights_are_refused_not_unpickled(finished, toy_csv, tmp_path, capsys, monkeypatch, strategy):
    run = _copy(finished[strategy], tmp_path / "pickled")
    from safetensors.torch import load_file

    name = "adapter_model" if strategy == "lora" else "model"
    torch.save(load_file(str(run / f"{name}.safetensors")), run / ("adapter_model.bin" if strategy == "lora" else "pytorch_model.bin"))
    (run / f"{name}.safetensors").unlink()

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load was called on a run folder")

    monkeypatch.setattr(torch, "load", no_unpickling)
    for command in COMMANDS:
        _refused(COMMANDS[command](run, toy_csv, tmp_path / "exported"), capsys, "never loads")


@pytest.mark.parametrize("damage", ["truncated", "a list", "not utf-8"])
@pytest.mark.parametrize("file", ["thawkit.json", "labels.json"])
def test_damaged_run_files_are_one_line(finished, toy_csv, tmp_path, capsys, damage, file):
    run = _copy(finished["full"], tmp_path / "damaged")
    text = (run / file).read_bytes()
    (run / file).write_bytes({"truncated": text[: len(text) // 2], "a list": b"[1, 2]", "not utf-8": b"\xff\xfe{"}[damage])
    for command in ("predict", "evaluate"):
        _refused(COMMANDS[command](run, toy_csv, tmp_path / "exported"), capsys, file)
    _refused(["info", str(run)], capsys, file)
