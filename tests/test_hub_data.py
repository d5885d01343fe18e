"""`--data hf:NAME[:SPLIT]`: a Hub dataset read with `datasets.load_dataset`, offline from the local
datasets cache that one online load filled. The Hub is a local server answering the requests
`datasets` makes for a dataset repository (README with its card, tree listing, file downloads)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

import thawkit
from thawkit.data.hub_datasets import parse_reference
from thawkit.errors import DataError
from thawkit.testing import toy_sentiment_rows

REPO = "me/toy-reviews"
COMMIT = "c" * 40
CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train.csv
  - split: validation
    path: data/validation.csv
dataset_info:
  features:
  - name: text
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': negative
          '1': positive
---
# toy reviews
"""


def _csv(rows: list[tuple[str, str]]) -> bytes:
    return ("text,label\n" + "".join(f"{text},{0 if label == 'negative' else 1}\n" for text, label in rows)).encode()


FILES = {"README.md": CARD.encode(), "data/train.csv": _csv(toy_sentiment_rows(160, seed=1)),
         "data/validation.csv": _csv(toy_sentiment_rows(40, seed=2))}


class DatasetHub(BaseHTTPRequestHandler):
    """The Hub endpoints `datasets.load_dataset` reads for a repository of data files."""

    requests: list[str] = []

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: object) -> None:
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _serve(self) -> None:  # noqa: C901 - one branch per endpoint
        path = urlparse(self.path).path
        self.requests.append(f"{self.command} {path}")
        resolve, api = f"/datasets/{REPO}/resolve/", f"/api/datasets/{REPO}"
        if path.startswith(resolve):
            name = path[len(resolve):].partition("/")[2]
            if name in FILES:
                body = FILES[name]
                return self._send(200, body, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(body).hexdigest()}"'})
            return self._send(404, b"{}", {"X-Error-Code": "EntryNotFound", "Content-Type": "application/json"})
        if path == api or path.startswith(f"{api}/revision/"):
            return self._json({"id": REPO, "sha": COMMIT, "private": False, "siblings": [{"rfilename": f} for f in FILES]})
        if path.startswith(f"{api}/tree/"):
            folder = path[len(f"{api}/tree/"):].partition("/")[2].strip("/")
            inside = [f for f in FILES if not folder or f.startswith(folder + "/")]
            entries, folders = [], set()
            for name in inside:
                rest = name[len(folder) + 1:] if folder else name
                if "/" in rest:
                    folders.add(f"{folder}/{rest.split('/')[0]}" if folder else rest.split("/")[0])
                else:
                    entries.append({"type": "file", "path": name, "size": len(FILES[name]), "oid": hashlib.sha1(FILES[name]).hexdigest()})
            return self._json(entries + [{"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in sorted(folders)])
        return self._send(404, b'{"error": "not found"}', {"Content-Type": "application/json"})

    do_GET = do_HEAD = do_POST = _serve

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory):
    """The local datasets cache after one online `thawkit` read of the dataset (in a process whose
    Hub is the local server), as a user's machine has it after a first run."""
    home = tmp_path_factory.mktemp("hf-home")
    server = ThreadingHTTPServer(("127.0.0.1", 0), DatasetHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "HF_HOME": str(home), "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
           "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}
    code = f"from thawkit.data.tables import read_table; print(len(read_table('hf:{REPO}:train')))"
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "160"
    assert f"GET /datasets/{REPO}/resolve/{COMMIT}/data/train.csv" in DatasetHub.requests
    return home / "datasets"


@pytest.fixture()
def offline_cache(datasets_cache, monkeypatch):
    """This (offline) process reads the cache the online load filled."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", datasets_cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return datasets_cache


def test_a_run_trains_on_a_hub_dataset_offline_with_its_label_names(offline_cache, tiny_bert, tmp_path):
    run = thawkit.train(data=f"hf:{REPO}", validation=f"hf:{REPO}:validation", model=str(tiny_bert), strategy="full", epochs=1,
                        max_length=16, out=tmp_path / "run", progress="off", measure_forgetting=False)
    assert run.labels == ["negative", "positive"]  # the card's class names, not 0 / 1
    assert run.info["num_train_examples"] == 160 and run.metrics["validation"]["num_examples"] == 40
    assert run.info["config"]["data"] == f"hf:{REPO}" and run.info["validation_source"] == f"hf:{REPO}:validation"
    assert run.evaluate(f"hf:{REPO}:validation")["num_examples"] == 40


def test_a_missing_dataset_or_split_is_one_line(offline_cache, tiny_bert, tmp_path):
    from thawkit.data.tables import read_table

    with pytest.raises(DataError, match=r"hf:me/absent: the dataset 'me/absent' is not in the local datasets cache and "
                                        r"HF_HUB_OFFLINE is set .*fix: load it once online"):
        read_table("hf:me/absent")
    with pytest.raises(DataError, match=rf"hf:{REPO}:test: .*Unknown split \"test\".*fix: hf:NAME"):
        read_table(f"hf:{REPO}:test")


@pytest.mark.parametrize("reference, expected", [
    ("hf:me/data", ("me/data", None, "train")), ("hf:glue:validation", ("glue", None, "validation")),
    ("hf:nyu-mll/glue:sst2:validation", ("nyu-mll/glue", "sst2", "validation")),
])
def test_references_name_the_dataset_config_and_split(reference, expected):
    assert parse_reference(reference) == expected


@pytest.mark.parametrize("reference", ["hf:", "hf:a:b:c:d", "hf:me/data:", "hf:../etc", "hf:a/b/c"])
def test_malformed_references_are_refused(reference):
    with pytest.raises(DataError, match="fix: hf:NAME"):
        parse_reference(reference)
