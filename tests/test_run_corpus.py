"""The damaged-run corpus (tests/bad_inputs/runs.yaml): real tiny runs of every layout, each file
damaged every way, `thawkit predict` on the copy. Exit 0 with the undamaged answer, or exit 2 with
one line naming the file; nothing else. A hypothesis test damages several files at once."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thawkit
from thawkit.cli.app import main

from test_matrix import CONLL, PAIRS

CORPUS = yaml.safe_load((Path(__file__).parent / "bad_inputs" / "runs.yaml").read_text(encoding="utf-8"))
RUNS = {entry["id"]: entry for entry in CORPUS["runs"]}


@pytest.fixture(scope="module")
def built(tiny_bert, toy_csv, tmp_path_factory):
    """id -> (run folder, predict arguments, the undamaged answer)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "ner.txt").write_text(CONLL)
    (root / "pairs.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS * 6))
    data = {"ner": root / "ner.txt", "pairs": root / "pairs.tsv"}
    folders: dict[str, Path] = {}
    for entry in CORPUS["runs"]:
        out = root / entry["id"]
        if "export" in entry:
            thawkit.api.load(folders[entry["export"]])  # the source loads
            from thawkit.engine.programs.export import export_onnx

            export_onnx(folders[entry["export"]], out)
        else:
            options = dict(entry["train"])
            options["data"] = data[options["data"]] if "data" in options else toy_csv
            thawkit.train(model=str(tiny_bert), epochs=1, max_length=16, out=out, progress="off", measure_forgetting=False,
                          **options)
        folders[entry["id"]] = out
    answers = {}
    for name, folder in folders.items():
        code, out, err = _predict(folder, RUNS[name]["predict"])
        assert code == 0, err
        answers[name] = (folder, RUNS[name]["predict"], out)
    return answers


def _predict(run: Path, args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["predict", str(run), *args])
            code = 0
        except SystemExit as stopped:
            code = stopped.code
    return code, out.getvalue(), err.getvalue()


def _damage(path: Path, how: str, seed: int = 0) -> None:
    if how == "delete":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "a JSON list":
        path.write_bytes(b"[1, 2]")
    elif how == "an empty JSON object":
        path.write_bytes(b"{}")
    elif how == "random bytes":
        path.write_bytes(bytes((seed * 7919 + i * 104729) % 256 for i in range(256)))
    else:
        raise AssertionError(f"unknown damage {how!r}")


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def _obeys_the_rule(code: int, out: str, err: str, expected: str, run: Path) -> str | None:
    """None when (exit 0, the undamaged answer) or (exit 2, one 'error:' line naming the run); else why not."""
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:
        return None if out == expected else f"exit 0 with another answer: {out[:200]!r}"
    if code != 2:
        return f"exit {code}: {err.strip()[:300]!r}"
    if len(lines) != 1 or not lines[0].startswith("error:") or "Traceback" in err:
        return f"not one error line: {err.strip()[:300]!r}"
    if str(run) not in err or "fix:" not in err:
        return f"does not name the run or a fix: {err.strip()!r}"
    return None


@pytest.mark.parametrize("how", CORPUS["damage"])
@pytest.mark.parametrize("name", list(RUNS))
def test_every_file_damaged_every_way(built, tmp_path, name, how):
    source, args, expected = built[name]
    failures = []
    for file in _files(source):
        copy = tmp_path / file.replace("/", "_")
        shutil.copytree(source, copy)
        _damage(copy / file, how)
        problem = _obeys_the_rule(*_predict(copy, args), expected, copy)
        if problem:
            failures.append(f"{file}: {problem}")
        shutil.rmtree(copy)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("case", CORPUS["cases"], ids=[case["id"] for case in CORPUS["cases"]])
def test_named_damage(built, tmp_path, case):
    source, args, expected = built[case["run"]]
    run = tmp_path / "run"
    shutil.copytree(source, run)
    if "json" in case:
        target = run / case["json"]["file"]
        value = json.loads(target.read_text(encoding="utf-8"))
        value.update(case["json"].get("set", {}))
        for key in case["json"].get("drop", []):
            value.pop(key)
        target.write_text(json.dumps(value), encoding="utf-8")
    for name in case.get("delete", []):
        (run / name).unlink()
    for name in case.get("empty", []):
        (run / name).write_bytes(b"")
    for name, text in case.get("write", {}).items():
        (run / name).write_text(text, encoding="utf-8")
    code, out, err = _predict(run, args)
    for name in case.get("never", []):
        assert not (run / name).exists(), f"{name} was created: code from the run folder ran"
    if case.get("same"):
        assert code == 0 and out == expected, err
        return
    assert _obeys_the_rule(code, out, err, expected, run) is None and code == 2, err
    for fragment in case["expect"]:
        assert fragment in err, (fragment, err)


DAMAGE = st.sampled_from(CORPUS["damage"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(list(RUNS)), picks=st.lists(st.tuples(st.integers(0, 30), DAMAGE), min_size=1, max_size=4),
       seed=st.integers(0, 1000))
def test_several_files_damaged_at_once(built, tmp_path_factory, name, picks, seed):
    """Property: any combination of damaged files still obeys the rule."""
    source, args, expected = built[name]
    run = tmp_path_factory.mktemp("mutated") / "run"
    shutil.copytree(source, run)
    for index, how in picks:
        files = _files(run)
        if files:
            _damage(run / files[index % len(files)], how, seed)
    problem = _obeys_the_rule(*_predict(run, args), expected, run)
    assert problem is None, (picks, problem)


def test_the_corpus_covers_every_layout(built):
    layouts = {name: set(_files(folder)) for name, (folder, _, _) in built.items()}
    assert "backbone/model.safetensors" in layouts["feature-head"] and "thawkit_head.safetensors" in layouts["feature-head"]
    assert "adapter_model.safetensors" in layouts["lora"] and "modules.json" in layouts["similarity"]
    assert "model.onnx" in layouts["onnx"]
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
