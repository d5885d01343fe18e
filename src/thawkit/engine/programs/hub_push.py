"""``thawkit push RUN REPO_ID``: a finished run folder to the Hugging Face Hub, with huggingface_hub.

The folder goes as it is (a standard model folder, a PEFT adapter, a feature head or an ONNX export),
in one commit, to a repository created private unless told otherwise. What would not hold on the Hub
is fixed or said first: a card whose ``base_model`` is a local path (the Hub accepts only a Hub id
there) loses that field, an adapter whose base is a local folder is named in a warning, and
thawkit's own bookkeeping (checkpoints, TensorBoard logs, the written-files list) stays home.
``--dry-run`` says all of it and sends nothing. ``HF_ENDPOINT`` names another Hub (a mirror, a test
server); the token is huggingface_hub's (``HF_TOKEN`` or ``hf auth login``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thawkit.errors import ConfigError
from thawkit.rundir import WRITTEN_FILE

KEPT_HOME = ("checkpoints", "logs", WRITTEN_FILE)  # thawkit's bookkeeping, not part of the model


@dataclass
class PushPlan:
    """What ``push`` sends: ``files`` (path in the repository -> local file, or bytes for a card it
    rewrote), the repository and its visibility, and what it changed or warns about."""

    run: Path
    repo_id: str
    private: bool
    files: dict[str, Path | bytes] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def listing(self) -> list[tuple[str, int]]:
        return [(name, len(value) if isinstance(value, bytes) else value.stat().st_size) for name, value in self.files.items()]

    def as_dict(self) -> dict[str, Any]:
        return {"run": str(self.run), "repo_id": self.repo_id, "private": self.private,
                "files": [{"path": name, "bytes": size} for name, size in self.listing()],
                "changes": self.changes, "warnings": self.warnings}


def _is_hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or Path(name).expanduser().exists() or name.startswith(("/", ".", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def plan_push(run: Path, repo_id: str, private: bool = True) -> PushPlan:
    """The files and fixes of a push, checked, without sending anything."""
    from huggingface_hub import ModelCard

    from thawkit.tasks import open_run

    if not _is_hub_id(repo_id):
        raise ConfigError(f"REPO_ID {repo_id!r} is not a Hub repository id; fix: name it as user/name or org/name "
                          "(letters, digits, '-', '_', '.'; at most 96 characters)")
    open_run(run)  # a complete, undamaged run folder (one line naming the file otherwise)
    plan = PushPlan(run, repo_id, private)
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        relative = path.relative_to(run)
        if relative.parts[0] in KEPT_HOME or any(part.startswith(".") for part in relative.parts):
            continue
        plan.files[relative.as_posix()] = path
    card_path = run / "README.md"
    if card_path.is_file():
        card = ModelCard.load(card_path)
        base = card.data.base_model
        if isinstance(base, str) and not _is_hub_id(base):
            card.data.base_model = None
            plan.files["README.md"] = str(card).encode("utf-8")
            plan.changes.append(f"README.md: base_model {base!r} is a local path, not a Hub id; dropped from the card's metadata")
    adapter = run / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
        if not _is_hub_id(base):
            plan.warnings.append(f"the adapter's base {base!r} is a local folder: others cannot load it from the Hub; fix: train "
                                 "from a Hub model id (or push that base too and edit adapter_config.json)")
    return plan


def push_run(run: str | Path, repo_id: str, private: bool = True, dry_run: bool = False, revision: str | None = None,
             message: str | None = None, token: str | None = None) -> dict[str, Any]:
    """Create the repository (private by default; an existing one is reused) and commit the run's
    files to it in one commit. Returns what was sent: the plan's facts plus ``url`` and ``commit``."""
    plan = plan_push(Path(run), repo_id, private)
    facts = plan.as_dict()
    if dry_run:
        return {**facts, "dry_run": True}
    from huggingface_hub import CommitOperationAdd, HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    if constants.is_offline_mode():
        raise ConfigError("HF_HUB_OFFLINE is set, so nothing can be sent to the Hub; fix: unset HF_HUB_OFFLINE to push "
                          "(or pass --dry-run to see what would be sent)")
    endpoint = os.environ.get("HF_ENDPOINT") or None  # read now: huggingface_hub reads it once, at import
    api = HfApi(endpoint=endpoint, token=token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=value if isinstance(value, bytes) else str(value))
                  for name, value in plan.files.items()]
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations=operations, revision=revision,
                                   commit_message=message or f"thawkit run {plan.run.name}")
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = ("log in with 'hf auth login' or set HF_TOKEN to a token with write access" if status in (401, 403)
                else "check REPO_ID and --revision")
        raise ConfigError(f"the Hub refused the push to {repo_id} (HTTP {status}: {' '.join(str(exc).split())[:200]}); fix: {hint}") from None
    except ValueError as exc:  # huggingface_hub: the Hub's check of the card's metadata failed
        raise ConfigError(f"the Hub refused the model card's metadata ({' '.join(str(exc).split())[:300]}); fix: edit the front "
                          f"matter of {plan.run / 'README.md'} and push again") from None
    except (OSError, *_transport_errors()) as exc:  # the network: no route, refused, timed out
        raise ConfigError(f"cannot reach the Hub at {endpoint or constants.ENDPOINT} ({type(exc).__name__}: {exc}); "
                          "fix: check the network, or HF_ENDPOINT") from None
    return {**facts, "url": str(url), "commit": commit.oid, "commit_url": commit.commit_url}


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's network errors (huggingface_hub 2 sends with httpx2, earlier with httpx)."""
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(__import__(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


__all__ = ["PushPlan", "plan_push", "push_run"]
