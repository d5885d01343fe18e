"""`thawkit serve`: every endpoint answers what `thawkit predict` gives on the same run; LoRA runs on
one base share it; limits answer with clear JSON errors; the CLI really starts uvicorn."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thawkit
from thawkit.serve import ServeLimits, create_app, load_served
from thawkit.testing import toy_sentiment_rows

from test_matrix import CONLL, PAIRS, QA_EDGE_CASES

TEXTS = ["the film was great", "awful and boring plot", "okay average fine"]


def _train(tiny_bert, out, **options):
    options = {"max_length": 32, **options}
    return thawkit.train(model=str(tiny_bert), epochs=1, lr=5e-3, batch_size=16, out=out, progress="off",
                         measure_forgetting=False, **options)


@pytest.fixture(scope="module")
def runs(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    data = {}
    for name, classes, seed in (("three", 3, 0), ("two_a", 2, 1), ("two_b", 2, 2)):
        path = root / f"{name}.csv"
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([("text", "label"), *toy_sentiment_rows(60, seed=seed, classes=classes)])
        data[name] = path
    (root / "ner.txt").write_text(CONLL)
    (root / "pairs.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS * 6))
    return {
        "full3": _train(tiny_bert, root / "full3", data=data["three"], strategy="full").path,
        "lora_a": _train(tiny_bert, root / "lora_a", data=data["two_a"], strategy="lora", seed=1).path,
        "lora_b": _train(tiny_bert, root / "lora_b", data=data["two_b"], strategy="lora", seed=2).path,
        "ner": _train(tiny_bert, root / "ner", task="ner", data=root / "ner.txt", strategy="full").path,
        "qa": _train(tiny_bert, root / "qa", task="qa", data=QA_EDGE_CASES, validation=QA_EDGE_CASES, strategy="full", max_length=48).path,
        "sim": _train(tiny_bert, root / "sim", task="similarity", data=root / "pairs.tsv", validation=root / "pairs.tsv",
                      strategy="full").path,
    }


@pytest.fixture(scope="module")
def client(runs):
    served = load_served(runs)
    with TestClient(create_app(served, ServeLimits(max_inputs=8, max_chars=500, max_body_bytes=20_000, max_wait_ms=20))) as c:
        c.served = served
        yield c


def _scores(answer):
    return {d["label"]: d["score"] for d in answer}


def test_predict_equals_thawkit_predict(client, runs):
    for name in ("full3", "lora_a", "lora_b"):
        expected = thawkit.load(runs[name]).predict(TEXTS)
        got = client.post("/predict", json={"inputs": TEXTS, "model": name}).json()
        for e, g in zip(expected, got):
            assert _scores(g) == pytest.approx(e["scores"], abs=1e-5)
            assert g[0]["label"] == e["label"]  # sorted, best first
        single = client.post("/predict", json={"inputs": TEXTS[0], "model": name}).json()
        assert _scores(single) == pytest.approx(expected[0]["scores"], abs=1e-5)
    raw = client.post("/predict", json={"inputs": TEXTS, "model": "full3", "raw_scores": True}).json()
    logits = thawkit.load(runs["full3"]).logits(TEXTS)
    assert np.allclose(sorted(d["score"] for d in raw[0]), sorted(logits[0]), atol=1e-5)


def test_lora_runs_share_one_base_and_mixed_batches_route_per_adapter(client, runs):
    served = client.served
    assert served["lora_a"].run.model is served["lora_b"].run.model  # the base is loaded once
    assert served["lora_a"].run.labels == thawkit.load(runs["lora_a"]).labels
    expected = {n: thawkit.load(runs[n]).predict(TEXTS) for n in ("lora_a", "lora_b")}
    assert expected["lora_a"] != expected["lora_b"]  # two different adapters (and heads), or the test proves nothing
    # Concurrent requests for both adapters land in the same batches; each answers with its own adapter and head.
    with ThreadPoolExecutor(8) as pool:
        futures = [(n, pool.submit(client.post, "/predict", json={"inputs": TEXTS, "model": n})) for n in ["lora_a", "lora_b"] * 6]
        for name, future in futures:
            for e, g in zip(expected[name], future.result().json()):
                assert _scores(g) == pytest.approx(e["scores"], abs=1e-5)
    # ... and the batches that mixed them ran as one forward pass each (peft's adapter_names).
    metrics = client.get("/metrics").text
    mixed = [line for line in metrics.splitlines() if line.startswith('thawkit_forward_passes_total{runs="2"}')]
    assert mixed and float(mixed[0].split()[-1]) >= 1


def test_a_mixed_adapter_pass_equals_one_pass_per_adapter(client, runs):
    from thawkit.serve.batching import _forward_mixed  # noqa: PLC2701 (the unit under test)

    served = client.served
    models = [served["lora_a"], served["lora_b"], served["lora_a"], served["lora_b"]]
    texts = ["the film was great", "the film was great", "awful and boring plot", "okay"]
    got = _forward_mixed(models, "predict", texts, None)
    for model, text, answer in zip(models, texts, got):
        expected = thawkit.load(runs[model.name]).predict([text])[0]
        assert answer["label"] == expected["label"] and answer["scores"] == pytest.approx(expected["scores"], abs=1e-5)


def test_many_concurrent_requests_all_answer(client, runs):
    # Token counting (event loop) and forward passes (worker threads) never share a tokenizer: a
    # fast tokenizer's padding state is per object, and sharing it broke batches under load.
    import threading

    class Recording:  # which threads call a tokenizer
        def __init__(self, inner):
            self.inner, self.threads = inner, set()

        def __call__(self, *args, **kwargs):
            self.threads.add(threading.get_ident())
            return self.inner(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    model = client.served["full3"]
    forward, counting = Recording(model.run.tokenizer), Recording(model.counting_tokenizer)
    model.run.tokenizer, model.counting_tokenizer = forward, counting
    expected = thawkit.load(runs["full3"]).predict(TEXTS)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: client.post("/predict", json={"inputs": TEXTS[i % 3], "model": "full3"}), range(240)))
    assert [a.status_code for a in answers] == [200] * 240
    for i, answer in enumerate(answers):
        assert _scores(answer.json()) == pytest.approx(expected[i % 3]["scores"], abs=1e-5)
    model.run.tokenizer, model.counting_tokenizer = forward.inner, counting.inner
    assert forward.threads and counting.threads and not forward.threads & counting.threads
    assert counting.inner is not forward.inner


def test_ner_qa_and_similarity_equal_predict(client, runs):
    text = "Peter Blackburn visited Brussels"
    assert client.post("/ner", json={"inputs": text}).json() == thawkit.load(runs["ner"]).predict([text])[0]["entities"]
    context = json.loads(QA_EDGE_CASES.read_text())["data"][0]["paragraphs"][0]["context"]
    expected = thawkit.load(runs["qa"]).predict(["When was the lighthouse built?"], [context])[0]
    got = client.post("/qa", json={"question": "When was the lighthouse built?", "context": context}).json()
    assert (got["answer"], got["start"], got["end"]) == (expected["answer"], expected["start"], expected["end"])
    sim = thawkit.load(runs["sim"])
    vectors = client.post("/embed", json={"inputs": ["a plane is taking off", "a cat sleeps"]}).json()
    assert np.allclose(vectors, sim.embed(["a plane is taking off", "a cat sleeps"]), atol=1e-5)
    openai = client.post("/v1/embeddings", json={"input": "a plane is taking off", "model": "sim"}).json()
    assert openai["object"] == "list" and openai["usage"]["prompt_tokens"] > 0
    assert np.allclose(openai["data"][0]["embedding"], vectors[0], atol=1e-5)
    scores = client.post("/similarity", json={"inputs": {"source_sentence": "a plane is taking off",
                                                         "sentences": ["an air plane is taking off", "a cat sleeps"]}}).json()
    assert scores == pytest.approx(sim.similarity(["a plane is taking off"] * 2, ["an air plane is taking off", "a cat sleeps"]), abs=1e-5)


def test_limits_and_errors_are_clear_json(client):
    too_many = client.post("/predict", json={"inputs": ["x"] * 9, "model": "full3"})
    assert too_many.status_code == 413 and "--max-inputs" in too_many.json()["error"]["message"]
    too_long = client.post("/predict", json={"inputs": ["x" * 501], "model": "full3"})
    assert too_long.status_code == 413 and "--max-chars" in too_long.json()["error"]["message"]
    big = client.post("/predict", content=b"{" + b" " * 30_000 + b"}", headers={"content-type": "application/json"})
    assert big.status_code == 413 and "--max-body-bytes" in big.json()["error"]["message"]
    assert client.post("/predict", json={"inputs": TEXTS}).status_code == 422  # three classification runs: name one
    assert client.post("/predict", json={"inputs": TEXTS, "model": "nope"}).status_code == 404
    wrong = client.post("/ner", json={"inputs": "x", "model": "full3"})
    assert wrong.status_code == 422 and "sequence-classification" in wrong.json()["error"]["message"]
    bad = client.post("/predict", json={"inputs": 3, "model": "full3"})
    assert bad.status_code == 422 and "inputs" in bad.json()["error"]["message"]


def test_bounded_queue_answers_503(runs):
    served = load_served({"full3": runs["full3"]})
    with TestClient(create_app(served, ServeLimits(max_queue=2))) as client:
        response = client.post("/predict", json={"inputs": TEXTS})
        assert response.status_code == 503 and "--max-queue" in response.json()["error"]["message"]


def test_models_health_metrics_and_openapi(client):
    models = client.get("/v1/models").json()
    assert {m["id"] for m in models["data"]} == {"full3", "lora_a", "lora_b", "ner", "qa", "sim"}
    assert client.get("/health").json()["status"] == "ok"
    client.post("/predict", json={"inputs": TEXTS, "model": "full3"})
    text = client.get("/metrics").text
    assert "thawkit_batch_size_count" in text and "thawkit_request_seconds_bucket" in text and "thawkit_queue_depth" in text
    assert "/v1/embeddings" in client.get("/openapi.json").json()["paths"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_starts_uvicorn_on_loopback(runs):
    import httpx

    port = _free_port()
    exe = Path(sys.executable).with_name("thawkit")
    process = subprocess.Popen([str(exe), "serve", f"demo={runs['full3']}", "--port", str(port)],
                               env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": TEXTS[0]}, timeout=30).json()
        assert _scores(answer) == pytest.approx(thawkit.load(runs["full3"]).predict(TEXTS[:1])[0]["scores"], abs=1e-5)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_head_peft_cannot_route_falls_back_to_one_pass_per_adapter(client, runs, monkeypatch):
    from thawkit.serve.batching import _forward_mixed  # noqa: PLC2701 (the unit under test)

    served = client.served
    original = served["lora_a"].run.logits

    def no_mixed_batches(texts, pairs=None, batch_size=64, adapter_names=None):
        if adapter_names is not None:
            raise TypeError("Mixed batching is only supported for the following modules: Linear")
        return original(texts, pairs, batch_size)

    monkeypatch.setattr(served["lora_a"].run, "logits", no_mixed_batches)
    models = [served["lora_b"], served["lora_a"]]
    got = _forward_mixed([served["lora_a"], *models], "predict", TEXTS, None)
    for model, text, answer in zip([served["lora_a"], *models], TEXTS, got):
        expected = thawkit.load(runs[model.name]).predict([text])[0]
        assert answer["scores"] == pytest.approx(expected["scores"], abs=1e-5)


ENDPOINTS = ["/predict", "/ner", "/qa", "/embed", "/v1/embeddings", "/similarity"]
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
# Bodies shaped like the schemas' fields, with values of any JSON type (strings and lists of strings likelier).
_fields = st.sampled_from(["inputs", "model", "raw_scores", "question", "context", "input", "sentences", "source_sentence"])
_values = st.one_of(st.text(max_size=40), st.lists(st.text(max_size=20), max_size=5),
                    st.lists(st.lists(st.text(max_size=10), max_size=3), max_size=3), _json,
                    st.sampled_from(["full3", "lora_a", "ner", "qa", "sim", "nope"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(endpoint=st.sampled_from(ENDPOINTS), body=st.one_of(st.dictionaries(_fields, _values, max_size=4), _json))
def test_fuzzed_bodies_never_get_a_500(client, endpoint, body):
    response = client.post(endpoint, json=body)
    assert response.status_code < 500 or response.status_code == 503, (endpoint, body, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["error"]["message"]  # a JSON error naming what is wrong


def test_decoder_lora_runs_are_served_beside_an_encoder_run(runs, tiny_decoders, tmp_path):
    """Two LoRA adapters on one tiny Llama and a BERT run in one server: the decoder base is loaded
    once, every answer (batched with padding, adapters mixed) equals thawkit predict."""
    data = {}
    for seed in (1, 2):
        data[seed] = tmp_path / f"two{seed}.csv"
        with data[seed].open("w", newline="") as handle:
            csv.writer(handle).writerows([("text", "label"), *toy_sentiment_rows(60, seed=seed, classes=2)])
    decoder = {f"llama_{seed}": _train(tiny_decoders["llama"], tmp_path / f"llama{seed}", data=data[seed], strategy="lora",
                                       seed=seed).path for seed in (1, 2)}
    served = load_served({"full3": runs["full3"], **decoder})
    assert served["llama_1"].run.model is served["llama_2"].run.model
    from thawkit.serve.batching import _routes_mixed_batches  # noqa: PLC2701

    assert _routes_mixed_batches(served["llama_1"])  # the head copies are the score layer: one pass for mixed adapters
    texts = [*TEXTS, "the film was great and the cast superb and the music wonderful too"]  # unequal lengths: padding
    expected = {name: thawkit.load(path).predict(texts) for name, path in {"full3": runs["full3"], **decoder}.items()}
    assert expected["llama_1"] != expected["llama_2"]
    with TestClient(create_app(served, ServeLimits(max_inputs=8, max_chars=500, max_body_bytes=20_000, max_wait_ms=20))) as c:
        with ThreadPoolExecutor(6) as pool:
            futures = [(n, pool.submit(c.post, "/predict", json={"inputs": texts, "model": n})) for n in list(expected) * 3]
            for name, future in futures:
                for e, g in zip(expected[name], future.result().json()):
                    assert _scores(g) == pytest.approx(e["scores"], abs=1e-5)


def test_a_base_with_an_unroutable_head_copy_is_served_per_adapter(tiny_decoders):
    """A norm among modules_to_save (an adapter saved by another tool) cannot be routed per example:
    such a base is never sent a mixed batch (peft would raise mid-forward)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from thawkit.serve.batching import _routes_mixed_batches  # noqa: PLC2701

    def served_with(modules):
        base = AutoModelForSequenceClassification.from_pretrained(tiny_decoders["llama"], num_labels=2)
        model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", target_modules=["q_proj"], modules_to_save=modules))
        return type("Served", (), {"run": type("Run", (), {"model": model})()})()

    assert not _routes_mixed_batches(served_with(["model.norm", "score"]))
    assert _routes_mixed_batches(served_with(["score"]))


def test_every_error_has_the_documented_shape(client):
    """Malformed JSON, a body that is not UTF-8, a lone surrogate, an unknown path or method: one JSON
    error shape, 422 for bodies, naming what is wrong."""
    headers = {"content-type": "application/json"}
    cases = [
        (client.post("/predict", content=b'{"inputs": ["a", ', headers=headers), 422, "not valid JSON"),
        (client.post("/predict", content=b'\xff\xfe{"inputs": "x"}', headers=headers), 422, "UTF-8"),
        (client.post("/predict", content=b'{"inputs": ["fine", "bad \\ud800 text"], "model": "full3"}', headers=headers), 422,
         "inputs[1]: invalid Unicode"),
        (client.post("/qa", content=b'{"question": "\\udfff?", "context": "c", "model": "qa"}', headers=headers), 422,
         "question: invalid Unicode"),
        (client.get("/no/such/path"), 404, "no such endpoint"),
        (client.get("/predict"), 405, "method not allowed"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status and fragment in response.json()["error"]["message"], response.text
        assert set(response.json()["error"]) == {"message", "type", "code"} and response.json()["error"]["code"] == status


def test_metrics_label_only_known_routes(client):
    for path in ("/a", "/b/c", "/predict/../x", "/v2/whatever"):
        client.get(path)
    text = client.get("/metrics").text
    endpoints = {line.split('endpoint="')[1].split('"')[0] for line in text.splitlines() if line.startswith("thawkit_requests_total{")}
    assert "other" in endpoints and endpoints <= {"other", *ENDPOINTS, "/v1/models", "/openapi.json", "/v1/completions", "/v1/chat/completions"}, endpoints


def _start_server(runs, *options):
    import httpx

    port = _free_port()
    exe = Path(sys.executable).with_name("thawkit")
    process = subprocess.Popen([str(exe), "serve", f"full3={runs['full3']}", f"qa={runs['qa']}", f"sim={runs['sim']}", "--port", str(port),
                                *options], env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError(f"thawkit serve did not start: {process.communicate()[1][-2000:]}")


@pytest.fixture(scope="module")
def guarded(runs):
    """The real server (uvicorn on 127.0.0.1) with short timeouts and few connections."""
    process, port = _start_server(runs, "--max-body-bytes", "20000", "--max-inputs", "8", "--max-chars", "500",
                                  "--header-timeout", "1", "--body-timeout", "1.5", "--max-connections", "6")
    yield port
    process.terminate()
    process.wait(timeout=30)


def _read_response(sock) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            [h for h in data.split(b"\r\n\r\n")[0].split(b"\r\n") if h.lower().startswith(b"content-length:")][0].split(b":")[1]):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split(b" ")[1]), json.loads(body)


def test_chunked_bodies_are_bounded_while_they_stream(guarded):
    """A chunked body (no Content-Length) over the limit is answered 413 before it ends: the server
    never waits for, nor buffers, the rest."""
    with socket.create_connection(("127.0.0.1", guarded), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b" " * 8192
        for _ in range(4):  # 32 KB of a body that never ends (no terminating chunk)
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, body = _read_response(sock)
    assert status == 413 and "--max-body-bytes" in body["error"]["message"]


def test_slow_bodies_get_408_and_slow_headers_are_cut(guarded):
    with socket.create_connection(("127.0.0.1", guarded), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"in")
        status, body = _read_response(sock)  # the remaining 96 bytes never come
    assert status == 408 and "--body-timeout" in body["error"]["message"]
    with socket.create_connection(("127.0.0.1", guarded), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # headers that never end (slowloris)
        assert sock.recv(1024) == b""  # closed by the server (a hang would raise socket.timeout)


def test_the_connection_limit_answers_503_json_and_frees_up(guarded):
    import httpx

    idle = [socket.create_connection(("127.0.0.1", guarded), timeout=10) for _ in range(6)]
    try:
        with socket.create_connection(("127.0.0.1", guarded), timeout=10) as extra:
            status, body = _read_response(extra)
        assert status == 503 and "--max-connections" in body["error"]["message"]
        for sock in idle:
            assert sock.recv(1024) == b""  # the header deadline closes connections that send nothing
    finally:
        for sock in idle:
            sock.close()
    answer = httpx.post(f"http://127.0.0.1:{guarded}/predict", json={"inputs": TEXTS, "model": "full3"}, timeout=30)
    assert answer.status_code == 200 and len(answer.json()) == 3


def test_schemathesis_finds_no_500_and_no_undocumented_status(guarded):
    """Requests generated from the server's own OpenAPI schema (bounded): never a 500, every status
    and error body as documented."""
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{guarded}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(checks=checks)

        check()
        tested.append(operation.label)
    assert {"POST /predict", "POST /qa", "POST /similarity", "GET /health"} <= set(tested)


def test_a_busy_port_is_one_line_and_exit_2(runs):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        exe = Path(sys.executable).with_name("thawkit")
        done = subprocess.run([str(exe), "serve", str(runs["full3"]), "--port", str(port)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and f"port {port}" in lines[0] and "--port" in lines[0], done.stderr
