"""The bad-input corpus (tests/bad_inputs/cases.yaml): every malformed file or flag gives exit code 2,
one line naming the file, row/field and fix, no traceback, and nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from thawkit.cli.app import main

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))


def test_the_corpus_is_large_and_ids_are_unique():
    assert len(CASES) >= 40
    assert len({case["id"] for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def broken_models(tiny_bert, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("broken")
    no_weights = root / "no_weights"
    shutil.copytree(tiny_bert, no_weights)
    (no_weights / "model.safetensors").unlink()
    truncated = root / "truncated"
    shutil.copytree(tiny_bert, truncated)
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    run = root / "incomplete_run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def finished_run(tiny_bert, tmp_path_factory) -> Path:
    """A finished classification run (thawkit update's cases continue it)."""
    import thawkit

    out = tmp_path_factory.mktemp("finished") / "run"
    thawkit.train(data=CORPUS / "files" / "good.csv", model=str(tiny_bert), epochs=1, max_length=32, out=out, progress="off",
                  measure_forgetting=False)
    return out


def _expand(value: str, places: dict[str, str]) -> str:
    for name, path in places.items():
        value = value.replace("{" + name + "}", path)
    return value


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_input(case, tiny_bert, tiny_decoders, broken_models, finished_run, tmp_path, capsys):
    (tmp_path / "huge_text.csv").write_text("text,label\n" + "x" * 10 * 2**20 + ",pos\nshort,neg\n")
    places = {"files": str(CORPUS / "files"), "tiny": str(tiny_bert), "tmp": str(tmp_path), "broken_models": str(broken_models),
              "run": str(finished_run), "decoder": str(tiny_decoders["llama"])}
    command = case.get("command", "train")
    args = [_expand(str(a), places) for a in case["args"]]
    if command == "train":
        defaults = {"--model": str(tiny_bert), "--epochs": "1", "--max-length": "32", "--out": str(tmp_path / "run")}
        if not any(a == "--config" for a in args):
            args += [item for flag, value in defaults.items() if flag not in args for item in (flag, value)]
    before = set(Path(places["files"]).iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main([command, *args])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert exit_info.value.code == 2, (case["id"], err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (case["id"], err)
    for fragment in case["expect"]:
        assert _expand(str(fragment), places) in lines[0], (case["id"], fragment, lines[0])
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))
    assert set(Path(places["files"]).iterdir()) == before  # nothing written beside the inputs
