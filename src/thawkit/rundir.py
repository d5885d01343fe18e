"""Run directories: written under a temporary name and renamed only when complete.

Layout of a finished run::

    config.json, model.safetensors        the model, standard Hugging Face format
      (or adapter_config.json, adapter_model.safetensors for an unmerged LoRA run)
    tokenizer.json, tokenizer_config.json, ...
    labels.json       label names in id order, multi-label flag
    thawkit.json      the resolved config plus run facts (strategy, base model, timings)
    metrics.json      {"validation": {...}, "test": {...}}
    history.jsonl     one record per evaluation during training
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from thawkit.errors import ConfigError, RunDirError

RUN_FILE = "thawkit.json"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
WRITTEN_FILE = ".thawkit-written"  # the files a published folder held: what --overwrite may replace


def default_run_dir(strategy: str) -> Path:
    return Path("runs") / f"{strategy}-{time.strftime('%Y%m%d-%H%M%S')}"


def partial_dir_for(final: Path) -> Path:
    """Deterministic, so every process of a distributed run agrees on it."""
    return final.parent / f".{final.name}.partial"


@contextlib.contextmanager
def exclusive(final: Path) -> Iterator[None]:
    """One writer per run or comparison folder: a second process given the same --out stops with a
    clear error instead of both writing (and deleting) the same temporary folder. Ranks other than
    0 of a distributed run share rank 0's folder and take no lock."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    import fcntl

    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.parent / f".{final.name}.lock"
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{final}: another thawkit process is writing it right now; fix: wait for it to finish or "
                              "choose another --out") from None
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_destination(final: Path, overwrite: bool) -> None:
    for folder in (final, *final.parents):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder}: is a file, so {final} cannot be a run directory; fix: choose another --out")
    if final.exists() and any(final.iterdir()):
        if not overwrite:
            raise ConfigError(f"{final}: run directory already exists; fix: choose another --out or pass --overwrite")
        check_replaceable(final)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def check_replaceable(final: Path) -> None:
    """--overwrite replaces only what thawkit wrote: a folder whose every file is listed in its
    ``.thawkit-written`` (written when it was published), or a run of an earlier version (thawkit.json,
    no list). Anything else there (the training data, a user's notes) means the folder is not ours."""
    listed = final / WRITTEN_FILE
    if listed.is_file():
        try:
            ours = set(json.loads(listed.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError):
            ours = set()
        foreign = [name for name in _files(final) if name not in ours and name != WRITTEN_FILE]
        if foreign:
            raise ConfigError(f"{final}: --overwrite would delete {final / foreign[0]}"
                              f"{f' and {len(foreign) - 1} more files' if len(foreign) > 1 else ''} that thawkit did not write; "
                              "fix: move them out, or choose another --out")
        return
    if not (final / RUN_FILE).is_file():
        held = _files(final)
        raise ConfigError(f"{final}: not a folder thawkit wrote (no {RUN_FILE}, no {WRITTEN_FILE}), so --overwrite will not "
                          f"delete it (it holds {final / held[0] if held else 'folders'}); fix: choose another --out, or empty "
                          "it yourself")


def record_written(final: Path, *names: str) -> None:
    """Files a command adds to a folder it already published: listed, so --overwrite may replace them."""
    listed = final / WRITTEN_FILE
    known = set(json.loads(listed.read_text(encoding="utf-8"))) if listed.is_file() else set()
    temporary = final / f".{WRITTEN_FILE}.tmp"
    temporary.write_text(json.dumps(sorted(known | set(names)), indent=0) + "\n", encoding="utf-8")
    os.replace(temporary, listed)


def publish(partial: Path, final: Path, overwrite: bool) -> None:
    """Move a complete run into place; an existing run is replaced only after the new one is whole,
    and only if thawkit wrote it (``check_replaceable``)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    written = partial / WRITTEN_FILE
    temporary = partial / f".{WRITTEN_FILE}.tmp"
    temporary.write_text(json.dumps(_files(partial), indent=0) + "\n", encoding="utf-8")
    os.replace(temporary, written)  # what --overwrite may later replace: exactly these files
    backup = None
    if final.exists():
        if not overwrite and any(final.iterdir()):
            raise ConfigError(f"{final}: run directory already exists; fix: choose another --out or pass --overwrite")
        if any(final.iterdir()):
            check_replaceable(final)
        backup = final.parent / f".{final.name}.old"
        shutil.rmtree(backup, ignore_errors=True)
        final.rename(backup)
    partial.rename(final)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def json_safe(value: Any) -> Any:
    """NaN/inf are not JSON (a NaN metric from a constant score column would make the file unreadable
    to strict parsers): they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(json_safe(payload), indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")


def write_history(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(json_safe(record), default=str, allow_nan=False) + "\n")


def read_run_files(path: str | Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """(folder, thawkit.json, labels.json) of a finished run; every command that loads a run comes here first."""
    run = Path(path)
    if not run.is_dir():
        raise RunDirError(f"{run}: no such run directory; fix: pass the --out folder of a finished training run")
    if run.name.startswith(".") and run.name.endswith(".partial"):
        final = run.parent / run.name[1 : -len(".partial")]
        raise RunDirError(f"{run}: an unfinished run (still being written, or interrupted), never loaded; fix: continue it with "
                          f"'thawkit train --resume {final}' or pass a finished run folder")
    for name in (RUN_FILE, LABELS_FILE):
        if not (run / name).exists():
            raise RunDirError(
                f"{run}: missing {name}, so this is not a complete thawkit run; fix: pass a run folder written by 'thawkit train'"
            )
    check_safetensors_only(run)
    return run, _read_object(run / RUN_FILE), _read_object(run / LABELS_FILE)


def _read_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc}); the run folder is damaged; fix: train the run again or restore "
                          "the folder from a copy") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{path}: holds a JSON {type(value).__name__}, not the object thawkit writes; the run folder is "
                          "damaged; fix: train the run again or restore the folder from a copy")
    return value


def check_safetensors_only(run: Path) -> None:
    """Weights are read from safetensors only: a folder (or its backbone/) whose weights exist only as
    a pickle (``pytorch_model.bin``, which can run code when loaded) is refused, never unpickled."""
    for folder in (run, run / "backbone"):
        if not folder.is_dir() or any(folder.glob("*.safetensors")):
            continue
        pickles = sorted(p.name for p in folder.glob("*.bin") if p.name.startswith(("pytorch_model", "adapter_model")))
        if pickles:
            raise RunDirError(f"{folder / pickles[0]}: weights only as a pickle, which thawkit never loads (unpickling can run "
                              "code); fix: use a run folder with model.safetensors / adapter_model.safetensors, as thawkit "
                              "writes them")


def read_history(path: Path) -> list[dict[str, Any]]:
    history = path / HISTORY_FILE
    if not history.exists():
        return []
    return [json.loads(line) for line in history.read_text(encoding="utf-8").splitlines() if line.strip()]
