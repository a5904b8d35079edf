"""/v1 streaming and disconnects over the app's real ASGI stack, with scripted backends.

A mid-stream failure ends the stream with an OpenAI-shaped error event; a client that goes
away, streaming or not (even while its job waits in the queue), cancels its job; the answer
names the model that ran the job. (tests/integration/test_api_streaming.py does the same with
real HTTP clients and, where it matters, SmolLM2.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from api_fakes import FAILURE, FailingBackend, SlowBackend, api_only_app
from fakes import FakeBackend
from webui.loaders import LoaderRegistry
from webui.params import SamplingParams
from webui.services import Services
from webui.settings import Settings


def build(tmp_path, loaders: LoaderRegistry, loader: str) -> Services:
    models = tmp_path / "user" / "models"
    models.mkdir(parents=True)
    for name in ("a.gguf", "b.gguf"):
        (models / name).write_bytes(b"GGUF ok")
    registry = LoaderRegistry([*(loaders.get(n) for n in loaders), FailingBackend, SlowBackend])
    services = Services.build(Settings(user_data_dir=tmp_path / "user", api=True), loaders=registry)
    services.load_model("a.gguf", loader)
    return services


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an event stream, in order."""
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def run_in_own_loop(coro) -> None:
    """Run ``coro`` on a new event loop in its own thread.

    (The browser tests' session-wide Playwright keeps an event loop running in the main thread,
    so ``asyncio.run`` there would refuse when the whole suite runs.)
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


@pytest.mark.parametrize(
    "route,body",
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/completions", {"prompt": "Once"}),
    ],
)
def test_a_mid_stream_failure_ends_the_stream_with_an_openai_error_event(tmp_path, loaders, route, body):
    client = TestClient(api_only_app(build(tmp_path, loaders, "failing")))
    r = client.post(route, json={**body, "stream": True, "max_tokens": 10})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "\r" not in r.text  # events end with "\n\n", as OpenAI's server sends them
    events = sse_data(r.text)
    assert "[DONE]" not in events  # the stream did not finish: it failed
    *chunks, last = [json.loads(e) for e in events]
    text = "".join(
        (c["choices"][0].get("delta") or {}).get("content") or c["choices"][0].get("text") or "" for c in chunks
    )
    assert text == "0 1 2 "  # what was generated before the failure reached the client
    assert last == {"error": {"message": FAILURE, "type": "server_error", "param": None, "code": "generation_failed"}}


def test_the_answer_names_the_model_that_ran_the_job(tmp_path, loaders):
    """A model load queued between a request's arrival and its turn: the answer names the new model."""
    services = build(tmp_path, loaders, "fake")
    client = TestClient(api_only_app(services))
    gate = FakeBackend.gate = threading.Event()
    answers: dict[str, dict] = {}

    def post(tag: str, **extra) -> None:
        r = client.post("/v1/completions", json={"prompt": tag, "max_tokens": 2, **extra})
        answers[tag] = json.loads(sse_data(r.text)[0]) if extra.get("stream") else r.json()

    def wait_for(condition) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    first = threading.Thread(target=post, args=("first",))
    first.start()
    wait_for(lambda: services.generator.active is not None)  # "first" runs on a.gguf, held by the gate
    load = threading.Thread(target=services.load_model, args=("b.gguf", "fake"))
    load.start()
    wait_for(lambda: services.generator.waiting() == 1)  # the load waits its turn
    later = [
        threading.Thread(target=post, args=("second",)),
        threading.Thread(target=post, args=("third",), kwargs={"stream": True}),
    ]
    for t in later:
        t.start()
    wait_for(lambda: services.generator.waiting() == 3)  # both asked while a.gguf was still the current model
    assert services.models.current.name == "a.gguf"
    gate.set()
    for t in (first, load, *later):
        t.join(20)
    assert answers["first"]["model"] == "a.gguf"
    assert answers["second"]["model"] == "b.gguf" and answers["third"]["model"] == "b.gguf"


async def _call_and_leave(app, path: str, body: dict, leave_after: float) -> list[dict]:
    """Send ``body`` to ``app`` over plain ASGI; the client disconnects ``leave_after`` seconds in."""
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 7860),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
    }
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(leave_after)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 30)
    return sent


def test_a_client_that_leaves_a_non_streaming_request_cancels_its_job(tmp_path, loaders):
    services = build(tmp_path, loaders, "slow")
    app = api_only_app(services)
    started = time.monotonic()
    run_in_own_loop(_call_and_leave(app, "/v1/completions", {"prompt": "Once", "max_tokens": 2000}, leave_after=0.3))
    assert time.monotonic() - started < 5  # 2000 tokens would take 20 s
    stats = services.generator.recent[-1]
    assert stats.finish_reason == "cancelled" and 5 < stats.completion_tokens < 500
    assert services.cancels.running("") == 0 and not services.cancels._events  # the request's cancel is forgotten


def test_a_stream_whose_client_leaves_while_queued_is_cancelled_in_the_queue(tmp_path, loaders):
    services = build(tmp_path, loaders, "fake")
    app = api_only_app(services)
    gate = FakeBackend.gate = threading.Event()
    ahead = services.generator.submit("ahead", SamplingParams(max_tokens=3))
    release = threading.Timer(1.0, gate.set)  # the job ahead ends after the client below has left
    release.start()
    run_in_own_loop(
        _call_and_leave(app, "/v1/completions", {"prompt": "Once", "max_tokens": 50, "stream": True}, leave_after=0.3)
    )
    release.join()
    assert ahead.result() == "0 1 2 "
    stats = services.generator.recent[-1]
    assert stats.finish_reason == "cancelled" and stats.completion_tokens == 0
    assert not services.cancels._events
