"""Parallel slots through the API, as an agent framework or a class uses them: a real server.py with
``--parallel 4`` and SmolLM2, four ``openai`` clients streaming at once. Each gets exactly the text it gets
alone; their streams overlap (the fourth's first text arrives before the first has ended, where one slot
would make it wait for the three before it); ``prompt_lookup`` from the request body keeps the text."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import openai
import pytest

from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration

PROMPTS = ("Once upon a time", "The capital of France is", "def fibonacci(n):", "List three colors:")
BODY = {"ban_eos_token": True}


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("api-parallel")
    model_dir, user_dir = make_dirs(root)
    srv = start_server(root, model_dir, user_dir, "--api", "--model", SMOLLM, "--parallel", "4")
    yield srv.url
    stop_server(srv)


def stream(url: str, prompt: str, out: dict, **body) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    record = out[prompt] = {"first": None, "text": ""}
    for chunk in client.completions.create(
        model=SMOLLM, prompt=prompt, max_tokens=48, temperature=0, stream=True, extra_body={**BODY, **body}
    ):
        if chunk.choices and chunk.choices[0].text:
            record["first"] = record["first"] or time.monotonic()
            record["text"] += chunk.choices[0].text
    record["end"] = time.monotonic()


def test_four_clients_stream_together_and_each_gets_its_text_alone(url):
    alone: dict = {}
    for prompt in PROMPTS:
        stream(url, prompt, alone)
    together: dict = {}
    threads = [threading.Thread(target=stream, args=(url, p, together)) for p in PROMPTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert {p: together[p]["text"] for p in PROMPTS} == {p: alone[p]["text"] for p in PROMPTS}
    # every stream had started before any had ended: they ran side by side, not in turn
    assert max(r["first"] for r in together.values()) < min(r["end"] for r in together.values())


def test_prompt_lookup_from_the_request_body_keeps_the_text(url):
    paragraph = "The keeper climbed the spiral stairs of the old lighthouse every night and trimmed the wick."
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    messages = [{"role": "user", "content": f"Repeat exactly: {paragraph}"}]
    texts = [
        client.chat.completions.create(
            model=SMOLLM, messages=messages, max_tokens=40, temperature=0, extra_body={"prompt_lookup": n}
        )
        .choices[0]
        .message.content
        for n in (0, 8)
    ]
    assert texts[0] == texts[1] and texts[0]
