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

from thawkit.errors import ConfigError, RunDirError, ThawkitError

RUN_FILE = "thawkit.json"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
WRITTEN_FILE = ".thawkit-written"  # the files a published folder held: what --overwrite may replace
# Written with a run, not needed to load it: everything else a run was published with must still be there.
NOT_NEEDED_TO_LOAD = frozenset({"README.md", METRICS_FILE, HISTORY_FILE})
DAMAGED_FIX = "the run folder is damaged; fix: train the run again or restore the folder from a copy"


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


DISK_FULL_MESSAGES = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


def as_disk_full(exc: BaseException, folder: Path | None = None) -> OSError | None:
    """The disk-full error behind ``exc``, as an ``OSError(ENOSPC)`` naming ``folder``, or None.
    Libraries report a full disk their own way: an OSError (ENOSPC/EDQUOT), safetensors'
    SafetensorError ("... os error 28"), torch.save's RuntimeError ("unexpected pos", the errno
    lost: recognised by the folder's file system having under 1 MiB left)."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return exc
    chain = [exc, *([exc.__cause__] if exc.__cause__ else []), *([exc.__context__] if exc.__context__ else [])]
    worded = any(message in str(item) for item in chain for message in DISK_FULL_MESSAGES)
    # Only a library's own failure is probed (never bad input, a guard, Ctrl-C or SIGTERM on a nearly full disk).
    if not worded and folder is not None and isinstance(exc, Exception) and not isinstance(exc, ThawkitError):
        probe = next((p for p in (folder, *folder.parents) if p.exists()), None)
        worded = probe is not None and shutil.disk_usage(probe).free < 2**20
    if not worded:
        return None
    return OSError(errno.ENOSPC, "No space left on device", str(folder) if folder is not None else None)


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
    info, labels = _read_object(run / RUN_FILE), _read_object(run / LABELS_FILE)
    if not isinstance(info.get("task"), str) or not info["task"]:
        raise RunDirError(f"{run / RUN_FILE}: no 'task' recorded, so thawkit cannot tell how to load this run; {DAMAGED_FIX}")
    check_run_folder(run)
    return run, info, labels


def check_run_folder(run: Path) -> None:
    """What loading needs, checked before anything is loaded, each failure naming its file: every file
    the run was published with is still there, every JSON file is an object, every safetensors file
    is whole, every model config names an architecture this transformers knows, and the tokenizer the
    run was trained with is there (never silently replaced by another)."""
    _check_published_files_present(run)
    for path in sorted(run.rglob("*.json")):
        _read_json(path, list if path.name in JSON_LIST_FILES else dict)
    for path in sorted(run.rglob("*.safetensors")):
        _check_safetensors(path)
    for folder in (run, run / "backbone"):
        if (folder / "config.json").is_file():
            _check_model_config(folder / "config.json")
    _check_tokenizer_present(run)


def _check_published_files_present(run: Path) -> None:
    listed = run / WRITTEN_FILE
    if not listed.is_file():
        return  # a run of an earlier version: the checks below still apply
    try:
        names = json.loads(listed.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise RunDirError(f"{listed}: not the list of files thawkit writes; {DAMAGED_FIX}")
    missing = [name for name in names if Path(name).name not in NOT_NEEDED_TO_LOAD and not (run / name).is_file()]
    if missing:
        raise RunDirError(f"{run / missing[0]}: missing{f' (and {len(missing) - 1} more files)' if len(missing) > 1 else ''}; "
                          f"the run was written with it; {DAMAGED_FIX}")


def _check_safetensors(path: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as exc:
        raise RunDirError(f"{path}: not a whole safetensors file ({exc}); {DAMAGED_FIX}") from None


def _check_model_config(path: Path) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config = _read_object(path)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise RunDirError(f"{path}: no 'model_type', so no architecture can be chosen for the weights; {DAMAGED_FIX}")
    if model_type not in CONFIG_MAPPING:
        raise RunDirError(f"{path}: model_type {model_type!r} is unknown to the installed transformers; fix: upgrade "
                          "transformers, or pass a run folder of a model it supports")
    if "auto_map" in config:
        import logging

        logging.getLogger("thawkit").warning(
            "%s: 'auto_map' names custom model code; thawkit never runs code from a run folder (no trust_remote_code), "
            "so the standard %s classes load these weights", path, model_type)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "spm.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def _check_tokenizer_present(run: Path) -> None:
    if not any((run / name).is_file() for name in TOKENIZER_FILES):
        raise RunDirError(f"{run}: no tokenizer files (tokenizer.json or a vocabulary), and thawkit never substitutes "
                          f"another model's tokenizer; {DAMAGED_FIX}")
    settings = run / "tokenizer_config.json"  # the special tokens (padding, [CLS]...): without it the same vocabulary encodes differently
    if not settings.is_file():
        raise RunDirError(f"{settings}: missing, so the tokenizer's special tokens are unknown; {DAMAGED_FIX}")
    if not isinstance(_read_object(settings).get("tokenizer_class"), str):
        raise RunDirError(f"{settings}: no 'tokenizer_class', not the file transformers writes; {DAMAGED_FIX}")


JSON_LIST_FILES = frozenset({"modules.json"})  # sentence-transformers' module list; every other JSON file is an object


def _read_object(path: Path) -> dict[str, Any]:
    return _read_json(path, dict)


def _read_json(path: Path, kind: type) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc}); {DAMAGED_FIX}") from None
    if not isinstance(value, kind):
        wanted = "the object" if kind is dict else "the list"
        raise RunDirError(f"{path}: holds a JSON {type(value).__name__}, not {wanted} thawkit writes; {DAMAGED_FIX}")
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
    try:
        lines = history.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise RunDirError(f"{history}: not UTF-8 text; {DAMAGED_FIX}") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line) if line.strip() else {}
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{history}: line {number} is not valid JSON ({exc}); {DAMAGED_FIX}") from None
        if not isinstance(record, dict):
            raise RunDirError(f"{history}: line {number} is not a JSON object; {DAMAGED_FIX}")
        if record:
            records.append(record)
    return records
