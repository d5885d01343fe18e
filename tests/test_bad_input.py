"""Every bad input: exit code 2, a one-line message naming the file/field and the fix, no traceback,
and no run directory left behind."""

from __future__ import annotations

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


def cases(tmp: Path) -> list[tuple[str, list[str], list[str]]]:
    """(case id, extra CLI args, fragments the message must contain)."""
    good = write(tmp / "good.csv", GOOD)
    empty_text = write(tmp / "empty_text.csv", GOOD + ",pos\n")
    nan_label = write(tmp / "nan_label.csv", GOOD.replace("bad example 3,neg", "bad example 3,"))
    nan_jsonl = write(tmp / "nan_label.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n')
    single = write(tmp / "single.csv", "text,label\n" + "".join(f"t {i},pos\n" for i in range(10)))
    unseen_val = write(tmp / "val.csv", "text,label\nfine,pos\nweird,maybe\n")
    (tmp / "latin1.csv").write_bytes(GOOD.encode() + "caf\xe9 ok,pos\n".encode("latin-1"))
    (tmp / "empty.csv").write_bytes(b"")
    header_only = write(tmp / "header_only.csv", "text,label\n")
    return [
        ("missing file", ["--data", str(tmp / "nope.csv")], ["nope.csv", "not found"]),
        ("empty file", ["--data", str(tmp / "empty.csv")], ["empty.csv", "empty", "fix"]),
        ("header only", ["--data", str(header_only)], ["header_only.csv", "no data rows"]),
        ("missing column", ["--data", str(good), "--text-col", "sentence"], ["good.csv", "'sentence'", "--text-col"]),
        ("missing label column", ["--data", str(good), "--label-col", "y"], ["good.csv", "'y'", "columns are: text, label"]),
        ("empty text", ["--data", str(empty_text)], ["empty_text.csv", "empty text", "row 21 (line 22)"]),
        ("nan label", ["--data", str(nan_label)], ["nan_label.csv", "missing", "row 8 (line 9)"]),
        ("null label jsonl", ["--data", str(nan_jsonl)], ["nan_label.jsonl", "row 2"]),
        ("single class", ["--data", str(single)], ["single.csv", "single class 'pos'", "at least two"]),
        ("unseen validation label", ["--data", str(good), "--validation", str(unseen_val)], ["val.csv", "'maybe'", "row 2"]),
        ("undecodable bytes", ["--data", str(tmp / "latin1.csv")], ["latin1.csv", "line 22", "UTF-8"]),
        ("unknown strategy", ["--data", str(good), "--strategy", "bogus"], ["'bogus'", "full", "lora"]),
        ("negative epochs", ["--data", str(good), "--epochs", "-1"], ["--epochs", "greater than 0", "-1"]),
        ("learning rate above 1", ["--data", str(good), "--lr", "3"], ["--lr", "3"]),
        ("zero batch size", ["--data", str(good), "--batch-size", "0"], ["--batch-size"]),
        ("option of another strategy", ["--data", str(good), "--strategy", "full", "--lora-r", "8"], ["--lora-r", "'full'"]),
        ("lora rank zero", ["--data", str(good), "--strategy", "lora", "--lora-r", "0"], ["r", "greater than 0"]),
        ("no data", [], ["--data"]),
    ]




@pytest.mark.parametrize("index", range(18))
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, index):
    case_id, args, fragments = cases(tmp_path)[index]
    out = tmp_path / "run"
    code, err = run_cli(["train", *args, "--out", str(out)], capsys)
    assert code == 2, case_id
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, (case_id, err)
    assert "Traceback" not in err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (case_id, fragment, lines[0])
    assert not out.exists() and not (tmp_path / ".run.partial").exists()


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


def test_bad_run_directory_and_config(tmp_path, capsys):
    code, err = run_cli(["predict", str(tmp_path / "missing-run"), "hello"], capsys)
    assert code == 2 and "no such run directory" in err
    bad_yaml = write(tmp_path / "c.yaml", "epochs: [1, 2\n")
    code, err = run_cli(["train", "--config", str(bad_yaml)], capsys)
    assert code == 2 and "c.yaml" in err and "YAML" in err
    unknown_key = write(tmp_path / "u.yaml", "data: x.csv\nepoch: 3\n")
    code, err = run_cli(["train", "--config", str(unknown_key)], capsys)
    assert code == 2 and "epoch" in err and "Extra inputs" in err


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
