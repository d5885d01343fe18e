"""Run folders that are unfinished, damaged or pickle-only: every command that loads a run (predict,
evaluate, info, serve, export, distill's teacher) refuses them with one line and exit 2, and
nothing is ever unpickled."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


GOOD = "text,label\n" + "".join(f"good example {i},pos\nbad example {i},neg\n" for i in range(10))


def test_overwrite_never_deletes_a_folder_thawkit_did_not_write(tiny_bert, tmp_path, capsys):
    """The reported data loss: --out is the folder holding the training data, with --overwrite."""
    folder = tmp_path / "ow_data"
    folder.mkdir()
    data = folder / "good.csv"
    data.write_text(GOOD)
    err = _refused(["train", "--model", str(tiny_bert), "--data", str(data), "--out", str(folder), "--overwrite", "--epochs", "1",
                    "--progress", "off"], capsys, "not a folder thawkit wrote")
    assert str(data) in err and data.read_text() == GOOD


def test_overwrite_replaces_a_run_only_while_it_holds_nothing_else(tiny_bert, toy_csv, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", str(tiny_bert), "--data", str(toy_csv), "--out", str(out), "--epochs", "1", "--max-length", "16",
            "--progress", "off", "--no-measure-forgetting", "--overwrite"]
    main(args)
    first = (out / "thawkit.json").read_text()
    notes = out / "notes" / "mine.txt"
    notes.parent.mkdir()
    notes.write_text("keep me")
    err = _refused(args, capsys, "that thawkit did not write")
    assert str(notes) in err and notes.read_text() == "keep me" and (out / "thawkit.json").read_text() == first
    notes.unlink()
    notes.parent.rmdir()
    main(args)  # only thawkit's own files: replaced
    assert (out / "thawkit.json").read_text() != first and not notes.exists()


def test_predict_output_never_replaces_its_input(finished, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("a fine film\na dull film\n")
    _refused(["predict", str(finished["full"]), "--file", str(texts), "--output", str(texts)], capsys, "is the --file being read")
    assert texts.read_text() == "a fine film\na dull film\n"
    _refused(["predict", str(finished["full"]), "a film", "--output", str(finished["full"] / "labels.json")], capsys,
             "inside the run folder")


_names = st.lists(st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6}){0,2}\.(txt|csv|json)", fullmatch=True), max_size=4, unique=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ours=_names, theirs=_names, marked=st.booleans(), legacy=st.booleans())
def test_overwrite_removes_only_files_it_wrote(tmp_path_factory, ours, theirs, marked, legacy):
    """Property: publishing over a folder either replaces it (and then every file there was one a
    thawkit publish wrote) or refuses with ConfigError leaving every file in place."""
    from thawkit.errors import ConfigError
    from thawkit.rundir import partial_dir_for, publish

    root = tmp_path_factory.mktemp("prop")
    final = root / "run"
    if marked:  # a folder thawkit published earlier
        earlier = partial_dir_for(final)
        earlier.mkdir()
        for name in ours + (["thawkit.json"] if legacy else []):
            (earlier / name).parent.mkdir(parents=True, exist_ok=True)
            (earlier / name).write_text("ours")
        publish(earlier, final, overwrite=False)
    elif legacy:
        final.mkdir()
        (final / "thawkit.json").write_text("{}")
    final.mkdir(exist_ok=True)
    foreign = [name for name in theirs if not (final / name).exists()]
    for name in foreign:
        (final / name).parent.mkdir(parents=True, exist_ok=True)
        (final / name).write_text("theirs")
    new = partial_dir_for(final)
    new.mkdir()
    (new / "thawkit.json").write_text('{"new": 1}')
    before = {str(p.relative_to(final)): p.read_text() for p in final.rglob("*") if p.is_file()}
    try:
        publish(new, final, overwrite=True)
    except ConfigError:
        assert {str(p.relative_to(final)): p.read_text() for p in final.rglob("*") if p.is_file()} == before
        assert foreign or not (marked or legacy)  # refused only for a reason
        return
    assert not foreign or (legacy and not marked)  # replaced: nothing foreign was there (or an old run, by its thawkit.json)
    assert (final / "thawkit.json").read_text() == '{"new": 1}'


def test_a_relative_model_path_is_recorded_absolute_so_adapters_load_anywhere(tiny_bert, toy_csv, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tiny_bert.parent)
    run = thawkit.train(model=tiny_bert.name, data=toy_csv, strategy="lora", epochs=1, max_length=16, out=tmp_path / "lora",
                        progress="off", measure_forgetting=False)
    adapter = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_bert.resolve())
    assert run.info["config"]["model"] == str(tiny_bert.resolve())
    assert "absolute path" in run.info["plan"]["settings"]["model"]["source"]
    expected = run.predict(["a fine film"])[0]["scores"]
    monkeypatch.chdir(tmp_path)  # elsewhere: the base is still found
    assert thawkit.load(tmp_path / "lora").predict(["a fine film"])[0]["scores"] == pytest.approx(expected, abs=1e-6)


def test_report_refuses_a_metric_the_runs_do_not_have(finished, tmp_path, capsys):
    err = _refused(["report", str(finished["full"]), str(finished["lora"]), "--metric", "bogus", "--out", str(tmp_path / "r")],
                   capsys, "--metric bogus")
    assert "macro_f1" in err and "num_examples" not in err and not (tmp_path / "r").exists()
    main(["report", str(finished["full"]), str(finished["lora"]), "--metric", "accuracy", "--out", str(tmp_path / "r")])
    assert (tmp_path / "r" / "report.html").exists()


def test_info_and_strategies_print_json(finished, capsys):
    import json

    main(["info", str(finished["lora"]), "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["facts"]["strategy"] == "lora" and shown["labels"]["labels"] and "validation" in shown["metrics"]
    assert "PEFT" in shown["format"] or "adapter" in shown["format"].lower()
    main(["strategies", "--json"])
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert {"full", "frozen", "lora", "gradual"} <= set(listed)
    assert listed["lora"]["options"]["r"]["flag"] == "--lora-r" and listed["lora"]["default_lr"] > 0
