"""``thawkit push``: a run folder to the Hub in one commit, tested against a local server that speaks
the Hub's upload API as huggingface_hub calls it (create repo, preupload, NDJSON commit)."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.errors import ConfigError


class FakeHub(BaseHTTPRequestHandler):
    """The calls of an upload: POST /api/repos/create, /api/validate-yaml (the card's metadata; a
    local path as base_model is refused, as the Hub does), /api/models/ID/preupload/REV (every file
    "regular", so its bytes travel in the commit) and /api/models/ID/commit/REV (NDJSON lines)."""

    repos: dict[str, dict] = {}
    validated: list[dict] = []  # the card metadata each push sent to /api/validate-yaml
    status = 200  # what every answer says (401: a refused token)

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _reply(self, payload: dict, status: int | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status or self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.status != 200:
            return self._reply({"error": "Invalid credentials in Authorization header"})
        if self.path == "/api/validate-yaml":  # the card's front matter, checked before the commit as the Hub does
            import yaml

            request = json.loads(body)
            metadata = yaml.safe_load(request["content"].split("---")[1]) or {}
            type(self).validated.append(metadata)
            base = str(metadata.get("base_model", "org/model"))
            if base.startswith(("/", ".")) or " " in base:
                return self._reply({"errors": [{"message": f'"base_model" {base} is not a valid model id'}]}, 400)
            return self._reply({"warnings": []})
        if self.path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}"
            self.repos.setdefault(repo_id, {"files": {}, "commits": []})["create"] = request
            return self._reply({"url": f"{base}/{repo_id}"})
        found = re.fullmatch(r"/api/models/(.+)/(preupload|commit)/([^?]+)(\?.*)?", self.path)
        if found is None or found.group(1) not in self.repos:
            return self._reply({"error": "Repository not found"}, 404)
        repo = self.repos[found.group(1)]
        if found.group(2) == "preupload":
            files = json.loads(body)["files"]
            return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        repo["commits"].append({"revision": found.group(3), "header": lines[0]["value"]})
        for line in lines[1:]:
            assert line["key"] == "file" and line["value"]["encoding"] == "base64"
            repo["files"][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        return self._reply({"commitUrl": f"{base}/{found.group(1)}/commit/0123456789abcdef", "commitOid": "0123456789abcdef"})


@pytest.fixture()
def hub(monkeypatch):
    from huggingface_hub import constants

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    FakeHub.repos, FakeHub.validated, FakeHub.status = {}, [], 200
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; this server is local
    yield FakeHub
    server.shutdown()


@pytest.fixture(scope="module")
def run(tiny_models, toy_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("push") / "run"
    thawkit.train(data=toy_csv, model=str(tiny_models["bert"]), strategy="lora", epochs=1, max_length=32, progress="off",
                  measure_forgetting=False, save_checkpoints=True, report_to=["tensorboard"], out=out)
    return out


def test_dry_run_lists_the_files_and_the_card_fix_and_sends_nothing(run, capsys):
    facts = thawkit.push(run, "me/sentiment", dry_run=True)
    sent = {f["path"] for f in facts["files"]}
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "labels.json", "metrics.json", "thawkit.json",
            "tokenizer.json"} <= sent
    assert not any(p.startswith(("checkpoints/", "logs/", ".")) for p in sent)  # thawkit's bookkeeping stays home
    assert (run / "logs").is_dir()  # there was something to leave out
    assert facts["private"] and facts["dry_run"]
    assert any("base_model" in c and "local path" in c for c in facts["changes"])  # a tiny local base is no Hub id
    assert any("adapter's base" in w for w in facts["warnings"])
    main(["push", str(run), "me/sentiment", "--dry-run"])
    shown = capsys.readouterr().out
    assert "would send" in shown and "adapter_model.safetensors" in shown and "private repository me/sentiment" in shown


def test_push_creates_a_private_repo_and_commits_every_file(run, hub, capsys):
    facts = thawkit.push(run, "me/sentiment", message="first model")
    repo = hub.repos["me/sentiment"]
    assert repo["create"]["visibility"] == "private" and repo["create"].get("type", "model") == "model"
    assert repo["commits"] == [{"revision": "main", "header": {"summary": "first model", "description": ""}}]
    uploaded = repo["files"]
    assert set(uploaded) == {f["path"] for f in facts["files"]}
    assert uploaded["adapter_model.safetensors"] == (run / "adapter_model.safetensors").read_bytes()
    assert json.loads(uploaded["labels.json"]) == json.loads((run / "labels.json").read_text())
    card = uploaded["README.md"].decode()
    assert "base_model:" not in card.split("---")[1] and "library_name: peft" in card  # valid metadata, still an adapter
    assert hub.validated and hub.validated[0]["library_name"] == "peft"
    assert facts["commit"] == "0123456789abcdef" and facts["url"].endswith("/me/sentiment")
    # The CLI: public when asked, to another branch.
    main(["push", str(run), "me/public-one", "--public", "--revision", "v1"])
    assert hub.repos["me/public-one"]["create"]["visibility"] == "public"
    assert hub.repos["me/public-one"]["commits"][0]["revision"] == "v1"
    assert "pushed:" in capsys.readouterr().out


def test_a_refused_token_offline_mode_and_a_bad_id_are_one_line(run, hub, monkeypatch):
    hub.status = 401
    with pytest.raises(ConfigError, match="HTTP 401.*fix: log in with 'hf auth login' or set HF_TOKEN"):
        thawkit.push(run, "me/sentiment")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set"):
        thawkit.push(run, "me/sentiment")
    with pytest.raises(ConfigError, match="not a Hub repository id"):
        thawkit.push(run, "no spaces/allowed here", dry_run=True)
    assert hub.repos == {}


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    from thawkit.errors import RunDirError

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RunDirError):
        thawkit.push(tmp_path, "me/x", dry_run=True)
    assert Path(tmp_path / "notes.txt").exists()
