"""The OpenAI-compatible API, driven by the real ``openai`` client against a real server.py."""

from __future__ import annotations

import httpx
import openai
import pytest

from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    srv = start_server(root, *make_dirs(root), "--api", "--model", SMOLLM)
    yield srv, openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    stop_server(srv)


def test_models_lists_the_models_and_marks_the_loaded_one(api):
    srv, client = api
    models = {m.id: m for m in client.models.list().data}
    assert SMOLLM in models and models[SMOLLM].model_extra["loaded"] is True


def test_chat_completion_answers_with_usage(api):
    _, client = api
    r = client.chat.completions.create(model="anything", messages=QUESTION, temperature=0, max_tokens=40)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop" and r.model == SMOLLM
    assert r.usage.prompt_tokens > 10 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_chat_and_completion_length(api):
    _, client = api
    parts, finish = [], None
    for event in client.chat.completions.create(
        model=SMOLLM, messages=QUESTION, max_tokens=40, stream=True, extra_body={"do_sample": False}
    ):
        if event.choices and event.choices[0].delta.content:
            parts.append(event.choices[0].delta.content)
        if event.choices and event.choices[0].finish_reason:
            finish = event.choices[0].finish_reason
    assert "Paris" in "".join(parts) and len(parts) > 2 and finish == "stop"
    r = client.completions.create(model=SMOLLM, prompt="Once upon a time", max_tokens=5, seed=1)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5


def test_sampling_fields_and_presets_are_accepted(api):
    _, client = api
    greedy = client.chat.completions.create(
        model=SMOLLM, messages=QUESTION, max_tokens=30, extra_body={"do_sample": False}
    )
    preset = client.chat.completions.create(
        model=SMOLLM, messages=QUESTION, max_tokens=30, extra_body={"preset": "Deterministic"}
    )
    assert greedy.choices[0].message.content == preset.choices[0].message.content
    r = client.completions.create(
        model=SMOLLM,
        prompt="List: a, b,",
        max_tokens=8,
        extra_body={
            "min_p": 0.1,
            "top_k": 5,
            "repeat_penalty": 1.1,
            "dry_multiplier": 0.8,
            "xtc_probability": 0.2,
            "seed": 3,
        },
    )
    assert r.usage.completion_tokens > 0


def test_errors_have_openai_shape(api):
    srv, client = api
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=SMOLLM, messages=QUESTION, temperature=9)
    assert "temperature" in bad.value.message
    long_prompt = "word " * 5000
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model=SMOLLM, prompt=long_prompt, max_tokens=5)
    assert "2048" in too_long.value.message and too_long.value.code == "context_length_exceeded"
    raw = httpx.post(
        srv.url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(srv.url + "/openapi.json").json()["paths"]["/v1/chat/completions"]


def test_api_key_is_required_when_set(tmp_path):
    srv = start_server(tmp_path, *make_dirs(tmp_path), "--api-key", "s3cret")
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0).models.list()
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0)
        assert SMOLLM in [m.id for m in client.models.list().data]
        # no model loaded yet: a clear 503
        with pytest.raises(openai.InternalServerError) as none_loaded:
            client.chat.completions.create(model="x", messages=QUESTION)
        assert none_loaded.value.status_code == 503 and "No model is loaded" in none_loaded.value.message
        loaded = httpx.post(
            srv.url + "/v1/internal/model/load",
            json={"model_name": SMOLLM},
            headers={"Authorization": "Bearer s3cret"},
            timeout=120,
        )
        assert loaded.json()["model"] == SMOLLM
        assert client.chat.completions.create(model="x", messages=QUESTION, max_tokens=3).usage.completion_tokens
    finally:
        stop_server(srv)


def test_closing_a_stream_cancels_only_that_generation(api):
    import threading

    srv, client = api
    long = {"ban_eos_token": True, "seed": 1}
    other: dict = {}

    def second_client() -> None:
        r = client.completions.create(model=SMOLLM, prompt="The history of France", max_tokens=60, extra_body=long)
        other["finish"], other["tokens"] = r.choices[0].finish_reason, r.usage.completion_tokens

    stream = client.chat.completions.create(
        model=SMOLLM, messages=QUESTION, max_tokens=1500, stream=True, extra_body=long
    )
    waiter = threading.Thread(target=second_client)
    seen = 0
    for _ in stream:
        seen += 1
        if seen == 3:
            waiter.start()  # queued behind the first stream
        if seen == 6:
            break
    stream.close()  # the client goes away mid-stream
    waiter.join(timeout=120)
    assert other == {"finish": "length", "tokens": 60}  # the other client's request ran in full
    recent = httpx.get(srv.url + "/v1/internal/requests").json()["data"]
    abandoned = [r for r in recent if r["finish_reason"] == "cancelled"]
    assert abandoned and abandoned[-1]["completion_tokens"] < 1500  # stopped when its client left
    assert recent.index(abandoned[-1]) < len(recent) - 1  # and it ended before the second ran


def test_two_streaming_clients_both_finish_in_order_and_characters_apply(api):
    import threading

    srv, client = api
    results: dict[str, list[str]] = {"a": [], "b": []}
    finished: list[str] = []

    def run(tag: str, prompt: str) -> None:
        for event in client.completions.create(
            model=SMOLLM, prompt=prompt, max_tokens=25, stream=True, extra_body={"ban_eos_token": True, "seed": 2}
        ):
            if event.choices and event.choices[0].text:
                results[tag].append(event.choices[0].text)
        finished.append(tag)

    a = threading.Thread(target=run, args=("a", "First client: once upon a time"))
    a.start()
    while not results["a"]:
        a.join(0.05)
    b = threading.Thread(target=run, args=("b", "Second client: the weather today"))
    b.start()
    a.join(120)
    b.join(120)
    assert results["a"] and results["b"]
    assert finished == ["a", "b"]  # first come, first served
    recent = httpx.get(srv.url + "/v1/internal/requests").json()["data"][-2:]
    assert [r["completion_tokens"] for r in recent] == [25, 25]  # both ran in full
    r = client.chat.completions.create(
        model=SMOLLM,
        messages=[{"role": "user", "content": "Who are you?"}],
        max_tokens=5,
        extra_body={"character": "Tutor", "do_sample": False},
    )
    assert r.usage.prompt_tokens > 40  # the Tutor's description went in as the system prompt


def test_a_missing_preset_or_character_is_a_404(api):
    _, client = api
    with pytest.raises(openai.NotFoundError) as preset:
        client.chat.completions.create(
            model=SMOLLM, messages=QUESTION, max_tokens=5, extra_body={"preset": "No such preset"}
        )
    assert preset.value.code == "preset_not_found" and "No such preset" in preset.value.message
    with pytest.raises(openai.NotFoundError) as character:
        client.chat.completions.create(
            model=SMOLLM, messages=QUESTION, max_tokens=5, extra_body={"character": "Nobody"}
        )
    assert character.value.code == "character_not_found"


def test_a_client_that_leaves_a_non_streaming_request_cancels_its_job(api):
    """A plain (not streamed) request whose client closes the connection stops generating at once."""
    import time

    srv, client = api
    before = httpx.get(srv.url + "/v1/internal/requests").json()["data"]
    body = {"model": SMOLLM, "prompt": "The history of France", "max_tokens": 2000, "ban_eos_token": True, "seed": 1}
    with httpx.Client(timeout=httpx.Timeout(10, read=1.0)) as http, pytest.raises(httpx.ReadTimeout):
        http.post(srv.url + "/v1/completions", json=body)  # 2000 tokens take about 30 s: we leave after 1 s
    # leaving the block closed the connection
    deadline = time.monotonic() + 10
    while (recent := httpx.get(srv.url + "/v1/internal/requests").json()["data"]) == before:
        assert time.monotonic() < deadline, "the abandoned request was still generating 10 s after its client left"
        time.sleep(0.1)
    assert recent[-1]["finish_reason"] == "cancelled" and recent[-1]["completion_tokens"] < 300
    started = time.monotonic()
    r = client.completions.create(model=SMOLLM, prompt="Once upon a time", max_tokens=5, seed=1)
    assert r.usage.completion_tokens == 5 and time.monotonic() - started < 5  # the queue is free
