"""Every bad input: exit code 2, a one-line message naming the file/field and the fix, no traceback,
and no run directory left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from thawkit.cli.app import main


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "text,label\n" + "".join(f"good example {i},pos\nbad example {i},neg\n" for i in range(10))


def test_model_specific_problems(tmp_path, capsys, tiny_bert):
    good = write(tmp_path / "good.csv", GOOD)
    for args, fragment in [
        (["--max-length", "4096"], "--max-length 4096 exceeds the model's 130 positions"),
        (["--strategy", "partial", "--freeze-layers", "5"], "--freeze-layers 5 exceeds the model's 2 encoder layers"),
        (["--model", str(tmp_path / "no-model")], "cannot load model"),
    ]:
        code, err = run_cli(["train", "--data", str(good), "--model", str(tiny_bert), *args, "--out", str(tmp_path / "r")], capsys)
        assert code == 2 and fragment in err and "Traceback" not in err, err
        assert not (tmp_path / "r").exists()


def test_existing_run_directory_is_not_overwritten(tmp_path, capsys):
    good = write(tmp_path / "good.csv", GOOD)
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    code, err = run_cli(["train", "--data", str(good), "--out", str(out)], capsys)
    assert code == 2 and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "old"


def test_bad_run_directory(tmp_path, capsys):
    code, err = run_cli(["predict", str(tmp_path / "missing-run"), "hello"], capsys)
    assert code == 2 and "no such run directory" in err
    # Config files: tests/bad_inputs/cases.yaml.


def test_console_script_exit_code(tmp_path):
    """The installed ``thawkit`` script itself exits 2 with one line on stderr."""
    exe = Path(sys.executable).with_name("thawkit")
    result = subprocess.run([str(exe), "train", "--data", str(tmp_path / "nope.csv")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope.csv" in result.stderr


def test_ctrl_c_exits_130_and_leaves_nothing(tiny_bert, tmp_path):
    """Ctrl-C during training: one line, exit code 130 (so `train && deploy` stops), no run folder."""
    import signal
    import time

    from thawkit.testing import write_toy_csv

    data = write_toy_csv(tmp_path / "toy.csv", n=2000)
    exe = Path(sys.executable).with_name("thawkit")
    process = subprocess.Popen([str(exe), "train", "--data", str(data), "--model", str(tiny_bert), "--epochs", "50",
                                "--max-length", "32", "--out", str(tmp_path / "run"), "--progress", "off"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".run.partial")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)  # training has started once the Trainer's output folder exists
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


def test_disk_full_is_one_line_exit_2_and_earlier_runs_survive(tiny_bert, tmp_path, capsys, monkeypatch):
    """ENOSPC while writing the run (injected): exit 2, one line, no partial folder, the old run intact."""
    import errno

    import thawkit.engine.core.artifacts as artifacts

    good = write(tmp_path / "good.csv", GOOD)
    out = tmp_path / "run"
    args = ["train", "--data", str(good), "--model", str(tiny_bert), "--epochs", "1", "--max-length", "16", "--out", str(out)]
    assert run_cli_ok(args)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".run.partial" / "metrics.json"))

    monkeypatch.setattr(artifacts, "write_history", full_disk)
    code, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "No space left on device" in err and "Traceback" not in err
    assert not list(tmp_path.glob(".run*"))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_internal_error_exits_1_with_a_report_hint(capsys, monkeypatch):
    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("thawkit.strategies.strategies_in_display_order", broken)
    monkeypatch.delenv("THAWKIT_DEBUG", raising=False)
    code, err = run_cli(["strategies"], capsys)
    assert code == 1 and "internal error: ZeroDivisionError" in err and "report" in err and "Traceback" not in err


def run_cli_ok(args: list[str]) -> bool:
    try:
        main(args)
    except SystemExit as exc:
        return exc.code in (0, None)
    return True


def test_two_writers_of_one_run_folder(tiny_bert, tmp_path):
    """While one process holds a run folder, a second one with the same --out stops with one line."""
    import fcntl

    from thawkit.errors import ConfigError
    from thawkit.rundir import exclusive

    out = tmp_path / "run"
    with exclusive(out):
        holder = (tmp_path / ".run.lock").open("a")
        with pytest.raises(BlockingIOError):  # the lock is really held (flock is per open file description)
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        good = write(tmp_path / "good.csv", GOOD)
        exe = Path(sys.executable).with_name("thawkit")
        second = subprocess.run([str(exe), "train", "--data", str(good), "--model", str(tiny_bert), "--out", str(out)],
                                capture_output=True, text=True)
        assert second.returncode == 2 and "another thawkit process is writing it" in second.stderr
        assert second.stderr.strip().count("\n") == 0
    with pytest.raises(ConfigError):
        with exclusive(out):
            with exclusive(out):  # the same process, a second open: refused too
                pass


def test_pickle_only_model_is_refused(tiny_bert, tmp_path, capsys):
    """A model folder with only pytorch_model.bin is never unpickled: one line with the fix."""
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bert, folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    good = write(tmp_path / "good.csv", GOOD)
    code, err = run_cli(["train", "--data", str(good), "--model", str(folder), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "pytorch_model.bin" in err and "safetensors" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("task, name", [("classification", "data.csv"), ("ner", "data.conll"), ("qa", "data.json"),
                                        ("classification", "data.txt")])
def test_a_fifo_as_data_is_refused_not_read_forever(tmp_path, capsys, tiny_bert, task, name):
    import os

    fifo = tmp_path / name
    os.mkfifo(fifo)  # nothing ever writes to it: opening it for reading would block forever
    if name.endswith(".txt"):
        code, err = run_cli(["predict", str(tmp_path / "no-run"), "--file", str(fifo)], capsys)
        assert code == 2 and "no such run directory" in err  # the run is checked first; the reader next:
        from thawkit.data.classification import read_texts_for_prediction
        from thawkit.errors import DataError

        with pytest.raises(DataError, match="named pipe"):
            read_texts_for_prediction(fifo, None, None)
        return
    code, err = run_cli(["train", "--task", task, "--data", str(fifo), "--model", str(tiny_bert), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "named pipe (FIFO)" in err and str(fifo) in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def _small_filesystem_supported() -> bool:
    import shutil

    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mkdir -p /tmp/thawkit-small && mount -t tmpfs -o size=64k tmpfs "
                            "/tmp/thawkit-small"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _small_filesystem_supported(), reason="no user+mount namespace here (unshare -rm) to mount a small tmpfs")
@pytest.mark.parametrize("size", ["64k", "20m", "read-only"])
def test_a_real_full_disk_is_one_line_at_every_write(tiny_bert, toy_csv, tmp_path, size):
    """--out (and the feature cache) on a real tmpfs of SIZE, mounted in a private mount namespace:
    the disk fills at the first write (64k) or after one checkpoint (20m, which is kept for
    --resume; the second checkpoint's torch.save fails without an errno); or a read-only one. Every time: exit 2, one line
    saying the disk is full (read-only), no traceback, no run folder."""
    exe = Path(sys.executable).with_name("thawkit")
    small = "/tmp/thawkit-small"
    mount = (f"mount -t tmpfs -o size=1m tmpfs {small} && mount -o remount,ro {small}" if size == "read-only" else
             f"mount -t tmpfs -o size={size} tmpfs {small}")
    command = (f"mkdir -p {small} && {mount} && THAWKIT_CACHE_DIR={small}/cache {exe} train "
               f"--model {tiny_bert} --data {toy_csv} --epochs 1 --max-length 16 --progress off --no-measure-forgetting "
               f"--checkpoint-every 2 --out {small}/run; code=$?; echo; echo LEFT: $(ls -A {small}); exit $code")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("Hint:")]
    assert result.returncode == 2, result.stderr[-2000:]
    expected = "Read-only file system" if size == "read-only" else "No space left on device"
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    left = result.stdout.rsplit("LEFT:", 1)[1].split()
    assert "run" not in left, left  # never a half-written run folder
    if ".run.partial" in left:  # only with a complete checkpoint, which the line names
        assert "kept in" in lines[0] and "--resume" in lines[0], lines


@pytest.mark.parametrize("args", [["train", "--data", "nope.csv"], ["compare", "--data", "nope.csv"], ["advise", "--data", "nope.csv"],
                                  ["lr-find", "--data", "nope.csv"], ["dapt", "--text", "nope.txt"],
                                  ["train", "--data", "DATA", "--validation", "nope.csv"]], ids=" ".join)
def test_a_missing_input_file_is_reported_before_torch_is_imported(args, toy_csv, tmp_path):
    """A typo costs a fraction of a second, not the 8 s of importing torch and transformers first."""
    args = [str(toy_csv) if a == "DATA" else a for a in args]
    script = ("import sys\nfrom thawkit.cli.app import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as stop:\n"
              "    print('exit', stop.code, 'torch' in sys.modules, 'transformers' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.stdout.split() == ["exit", "2", "False", "False"], (result.stdout, result.stderr)
    assert "nope." in result.stderr and "file not found" in result.stderr


def test_only_a_library_failure_on_a_nearly_full_disk_reads_as_disk_full(tmp_path, monkeypatch):
    """torch.save's errno-less failure is recognised by the file system's free space; bad input,
    a guard or an interruption on that same disk stay what they are."""
    import shutil
    from collections import namedtuple

    from thawkit.errors import ConfigError
    from thawkit.rundir import as_disk_full

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100, 100, 0))
    assert as_disk_full(RuntimeError("unexpected pos 20544 vs 20436"), tmp_path).errno == 28
    assert as_disk_full(ConfigError("a bad flag"), tmp_path) is None
    assert as_disk_full(KeyboardInterrupt(), tmp_path) is None
