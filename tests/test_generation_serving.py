"""`thawkit serve` for generation runs: OpenAI's /v1/completions and /v1/chat/completions answer what
`thawkit predict` writes on the same run, stream it as server-sent events, cut at stop strings, and
two LoRA runs on one base each answer through their own adapter; the OpenAI client talks to it."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import thawkit
from thawkit.serve import ServeLimits, create_app, load_served

PROMPTS = ["say great", "say plot"]


def _data(path: Path, template: str) -> Path:
    words = ("great", "awful", "boring", "superb", "movie", "plot", "story", "music")
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("prompt", "completion"), *[(f"say {w}", template.format(w=w)) for w in words] * 6])
    return path


@pytest.fixture(scope="module")
def runs(tiny_decoders, tmp_path_factory):
    root = tmp_path_factory.mktemp("served-generation")
    made = {}
    for name, template, seed in (("short", "{w} film", 1), ("long", "a truly {w} movie it was", 2)):
        made[name] = thawkit.train(task="generation", data=_data(root / f"{name}.csv", template), model=str(tiny_decoders["llama"]),
                                   strategy="lora", epochs=2, lr=2e-2, batch_size=8, max_length=24, seed=seed, out=root / name,
                                   progress="off", measure_forgetting=False, generation_samples=0).path
    return made


@pytest.fixture(scope="module")
def client(runs):
    served = load_served(runs)
    with TestClient(create_app(served, ServeLimits(max_inputs=4, max_chars=200))) as c:
        c.served = served
        yield c


def _expected(run: Path, prompt: str, tokens: int = 6) -> str:
    return thawkit.load(run).predict(prompt, max_new_tokens=tokens)[0]["generated_text"]


def test_both_adapters_share_one_base_and_answer_through_their_own(client, runs):
    assert client.served["long"].run.model is client.served["short"].run.model  # one base in memory
    for name in ("short", "long"):
        for prompt in PROMPTS:
            body = client.post("/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": prompt}],
                                                             "max_tokens": 6}).json()
            assert body["object"] == "chat.completion" and body["model"] == name
            choice = body["choices"][0]
            assert choice["message"] == {"role": "assistant", "content": _expected(runs[name], prompt)}
            assert choice["finish_reason"] in ("stop", "length")
            usage = body["usage"]
            assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 6
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_completions_answer_each_prompt(client, runs):
    body = client.post("/v1/completions", json={"model": "short", "prompt": PROMPTS, "max_tokens": 6}).json()
    assert body["object"] == "text_completion"
    assert [c["text"] for c in body["choices"]] == [_expected(runs["short"], p) for p in PROMPTS]
    assert [c["index"] for c in body["choices"]] == [0, 1]


def _events(response) -> list:
    lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: "):]) for line in lines[:-1]]


def test_chat_streams_server_sent_events(client, runs):
    request = {"model": "long", "messages": [{"role": "user", "content": "say plot"}], "max_tokens": 6, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert streamed.strip() == _expected(runs["long"], "say plot")
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-1])


def test_stop_strings_cut_the_answer(client, runs):
    full = _expected(runs["long"], "say great", 12)
    words = full.split()
    if len(words) < 2:
        pytest.skip(f"the tiny model's answer {full!r} has one word")
    stop = " " + words[1]
    request = {"model": "long", "messages": [{"role": "user", "content": "say great"}], "max_tokens": 12, "stop": stop}
    body = client.post("/v1/chat/completions", json=request).json()
    assert body["choices"][0]["message"]["content"] == full[: full.find(stop)].strip()
    assert body["choices"][0]["finish_reason"] == "stop"
    with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
        streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in _events(response))
    assert streamed.strip() == body["choices"][0]["message"]["content"]


@pytest.mark.parametrize("change, status, message", [
    ({"n": 2}, 422, "n: thawkit serve writes one answer per prompt"),
    ({"presence_penalty": 0.5}, 422, "presence_penalty"),
    ({"logit_bias": {"1": 2}}, 422, "logit_bias"),
    ({"max_tokens": 0}, 422, "max_tokens"),
    ({"model": "nope"}, 404, "model 'nope' is not served"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, 422, "the last message is the assistant's"),
    ({"messages": [{"role": "user", "content": "x" * 201}]}, 413, "over the limit of 200"),
])
def test_bad_requests_get_openai_errors(client, change, status, message):
    request = {"model": "short", "messages": [{"role": "user", "content": "say great"}], "max_tokens": 4, **change}
    response = client.post("/v1/chat/completions", json=request)
    assert response.status_code == status and message in response.json()["error"]["message"]


def test_concurrent_requests_queue_without_errors(client):
    def ask(i: int) -> int:
        name = ("short", "long")[i % 2]
        return client.post("/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": PROMPTS[i % 2]}],
                                                         "max_tokens": 4}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(32))) == [200] * 32


def test_concurrent_answers_are_written_together_and_each_as_if_alone(runs):
    """Continuous batching: requests that arrive while the model writes share its next generate call
    (one batch per run and options), and each answer is the one the run writes for that prompt alone."""
    import asyncio

    import httpx

    served = load_served(runs)
    app = create_app(served)
    asks = [("short", PROMPTS[i % 2], 6) for i in range(8)] + [("long", PROMPTS[0], 6), ("long", PROMPTS[1], 5)]

    async def main() -> list[dict]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            responses = await asyncio.gather(*(client.post("/v1/chat/completions", json={
                "model": name, "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens}) for name, prompt, tokens in asks))
            metrics = (await client.get("/metrics")).text
        return [r.json() for r in responses], metrics

    bodies, metrics = asyncio.run(main())
    for (name, prompt, tokens), body in zip(asks, bodies):
        assert body["choices"][0]["message"]["content"] == _expected(runs[name], prompt, tokens), (name, prompt, body)
    calls = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("thawkit_batch_size_count")))
    alone = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith('thawkit_batch_size_bucket{le="1.0"}')))
    assert calls < len(asks) and alone < calls, metrics  # fewer generate calls than answers: some were written together


def test_one_generate_call_writes_answers_through_different_adapters(runs):
    """LoRA runs of one base batch together: each row of the batch goes through its own adapter."""
    served = load_served(runs)
    short, long = served["short"], served["long"]
    assert short.run.model is long.run.model and short.adapter != long.adapter
    conversations = [[{"role": "user", "content": prompt}] for prompt in (PROMPTS[0], PROMPTS[1], PROMPTS[0])]
    mixed = short.run.complete(conversations, max_new_tokens=6, adapter_names=[short.adapter, long.adapter, long.adapter])
    assert [a.text for a in mixed] == [_expected(runs["short"], PROMPTS[0]), _expected(runs["long"], PROMPTS[1]),
                                       _expected(runs["long"], PROMPTS[0])]
    assert mixed[0].text != mixed[2].text  # the same prompt, two adapters, two answers


@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="needs the openai package (the test extra)")
def test_the_openai_client_streams_from_thawkit_serve(runs):
    import openai

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("thawkit")
    process = subprocess.Popen([str(exe), "serve", f"short={runs['short']}", f"long={runs['long']}", "--port", str(port)],
                               env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        deadline = time.monotonic() + 90
        while True:
            try:
                assert {m.id for m in client.models.list()} == {"short", "long"}
                break
            except openai.APIConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.5)
        for name in ("short", "long"):
            stream = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "say plot"}], max_tokens=6,
                                                    stream=True)
            pieces = [chunk.choices[0].delta.content or "" for chunk in stream]
            whole = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "say plot"}], max_tokens=6)
            assert "".join(pieces).strip() == whole.choices[0].message.content == _expected(runs[name], "say plot")
        completion = client.completions.create(model="short", prompt="say great", max_tokens=6)
        assert completion.choices[0].text == _expected(runs["short"], "say great")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_generation_only_servers_keep_openmp_threads_spinning(runs, tiny_bert, toy_csv, tmp_path, monkeypatch):
    """Read from thawkit.json before torch loads: a server of generation runs only keeps OpenMP's
    threads spinning (ACTIVE: answers are many small passes), any other lets them sleep (PASSIVE); a
    user's own setting wins; the torch-free table agrees with the tasks' own flag."""
    from thawkit.tasks import _TOKEN_BY_TOKEN_RUN_TYPES, _load, serves_token_by_token

    assert _TOKEN_BY_TOKEN_RUN_TYPES == {cls.run_type for cls in _load().values() if cls.serves_token_by_token}
    classifier = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="frozen", epochs=1, max_length=16, out=tmp_path / "cls",
                               progress="off", measure_forgetting=False).path
    assert serves_token_by_token(runs["short"]) and not serves_token_by_token(classifier)
    import thawkit.cli.serve_cmd as serve_cmd

    seen = {}

    def stop_here(*_args, **_kwargs):
        seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
        raise SystemExit(0)

    monkeypatch.setattr("thawkit.serve.http.bind", stop_here)
    cases = (([str(runs["short"]), str(runs["long"])], None, "ACTIVE"), ([str(runs["short"]), str(classifier)], None, "PASSIVE"),
             ([str(runs["short"])], "PASSIVE", "PASSIVE"))
    for served, given, expected in cases:
        if given is None:
            monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        else:
            monkeypatch.setenv("OMP_WAIT_POLICY", given)
        with pytest.raises(SystemExit):
            serve_cmd.serve(runs=served, host="127.0.0.1", port=0, max_batch_tokens=16384, max_wait_ms=0.0, max_inputs=64,
                            max_chars=20000, max_body_bytes=1_000_000, max_queue=1024, max_connections=256, header_timeout=10.0,
                            body_timeout=30.0)
        assert seen["policy"] == expected, served
    # The policy only holds if torch (hence OpenMP) loads after it is set: nothing before the bind loads torch.
    probe = ("import sys\nimport thawkit.serve.http as h\n"
             "def stop(*a, **k):\n    print('torch' in sys.modules)\n    raise SystemExit(0)\n"
             f"h.bind = stop\nfrom thawkit.cli.app import main\nmain(['serve', {str(runs['short'])!r}])\n")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
