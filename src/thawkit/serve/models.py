"""Load the runs to serve; LoRA runs over the same base (and head shape) share one base model."""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thawkit.errors import ConfigError

log = logging.getLogger("thawkit")


@dataclass
class ServedModel:
    name: str
    path: Path
    run: Any  # a thawkit RunBase
    task: str  # thawkit.json's task (run type)
    adapter: str | None = None  # the adapter to activate on a shared base
    lock: threading.Lock = field(default_factory=threading.Lock)  # one forward at a time per underlying model
    # Token counting on the event loop runs while a forward thread tokenizes: a fast tokenizer's
    # padding/truncation state is per object and not thread-safe, so counting uses its own copy.
    counting_tokenizer: Any = None

    def __post_init__(self) -> None:
        if self.counting_tokenizer is None:
            self.counting_tokenizer = copy.deepcopy(self.run.tokenizer)

    def activate(self) -> None:
        if self.adapter is not None:
            self.run.model.set_adapter(self.adapter)

    def describe(self) -> dict[str, Any]:
        info = self.run.info
        return {"id": self.name, "object": "model", "owned_by": "thawkit", "task": self.task, "strategy": info.get("strategy"),
                "base_model": info.get("base_model"), "shared_base": self.adapter is not None,
                "labels": list(getattr(self.run, "labels", []) or [])}


def parse_run_arguments(runs: list[str]) -> dict[str, Path]:
    """`RUN` (named by its folder) or `NAME=RUN`."""
    named: dict[str, Path] = {}
    for item in runs:
        name, _, path = item.partition("=") if "=" in item else (Path(item).name, "", item)
        if not name.strip() or not path.strip():
            raise ConfigError(f"{item!r}: {'the name' if not name.strip() else 'the run folder'} is empty; fix: RUN or NAME=RUN, "
                              "e.g. sentiment=runs/lora-a")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ConfigError(f"{item!r}: a served name is letters, digits, '.', '_' and '-' (it is the API's \"model\"); fix: "
                              "name the run, e.g. sentiment=RUN")
        if name in named:
            raise ConfigError(f"two served runs are named {name!r}; fix: name them, e.g. {name}2={path}")
        named[name] = Path(path)
    return named


def _adapter_key(path: Path) -> tuple[Any, ...] | None:
    """Runs with equal keys can share one base: same task, base model and label count."""
    if not (path / "adapter_config.json").exists():
        return None
    info = json.loads((path / "thawkit.json").read_text(encoding="utf-8"))
    labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))
    return info.get("task"), info.get("config", {}).get("model"), len(labels.get("labels") or [])


def load_served(runs: dict[str, Path]) -> dict[str, ServedModel]:
    from thawkit.api import load
    from thawkit.tasks import open_run

    served: dict[str, ServedModel] = {}
    shared: dict[tuple[Any, ...], ServedModel] = {}
    for name, path in runs.items():
        task, _, info, _ = open_run(path)  # a clear error for a folder that is not a finished, whole run
        if not task.routes():
            raise ConfigError(f"{path}: thawkit serve has no endpoints for {task.name} runs yet; fix: {task.unserved_fix}")
        key = _adapter_key(path)
        if key is not None and key in shared:
            first = shared[key]
            first.run.model.load_adapter(str(path), adapter_name=name)
            run = copy.copy(first.run)
            fresh = load_metadata_only(path)
            run.info, run.path, run.labels, run.tokenizer = fresh["info"], path, fresh["labels"], fresh["tokenizer"]
            served[name] = ServedModel(name, path, run, info.get("task", ""), adapter=name, lock=first.lock)
            log.info("serving %s as adapter %r on the base loaded for %s", path, name, first.name)
            continue
        run = load(path)
        model = ServedModel(name, path, run, info.get("task", ""))
        if key is not None:
            model.adapter = "default"
            shared[key] = model
        served[name] = model
    return served


def load_metadata_only(path: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from thawkit.rundir import read_run_files

    _, info, labels = read_run_files(path)
    return {"info": info, "labels": labels.get("labels") or [], "tokenizer": AutoTokenizer.from_pretrained(str(path))}
