"""The remote loader's logprobs through ``/v1/completions`` on scripted servers (an ``httpx.MockTransport``):
what the load-time probe declares, what a request asks, the answer shapes servers send, and the
Notebook's view when a server sends no logprobs (the clear "cannot" note, never an error).

The same on a real server (llama-cpp-python's) is tests/integration/test_remote_probabilities.py.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from webui.errors import UnsupportedFeatureError
from webui.generation.scheduler import Generator
from webui.loaders import LoaderRegistry
from webui.loaders.base import Chunk, StreamExtras, TokenLogprob, TopLogprob
from webui.loaders.remote import RemoteBackend
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams
from webui.probabilities import DEFAULT_CANDIDATES, ViewedGeneration, current_view_kind, generate_with_views
from webui.ui.probabilities_ui import notebook_view

URL = "http://peer.test"
WORDS = ("Hello", " world", ".")
#: Each word's logprob and its rival's (the drawn word is the best of two).
LOGPROB, RIVAL = math.log(0.7), math.log(0.2)


def _legacy(tokens: tuple[str, ...]) -> dict[str, Any]:
    """OpenAI's completions logprobs (llama-cpp-python's shape): parallel lists, maps of alternatives."""
    return {
        "tokens": list(tokens),
        "token_logprobs": [LOGPROB] * len(tokens),
        "top_logprobs": [{"<rival>": RIVAL, t: LOGPROB} for t in tokens],  # not sorted: the loader sorts
        "text_offset": [0] * len(tokens),
    }


def _content(tokens: tuple[str, ...]) -> dict[str, Any]:
    """llama.cpp's own server: the chat shape, in a completions answer too."""
    return {
        "content": [
            {
                "token": t,
                "logprob": LOGPROB,
                "bytes": list(t.encode()),
                "top_logprobs": [{"token": "<rival>", "logprob": RIVAL}, {"token": t, "logprob": LOGPROB}],
            }
            for t in tokens
        ]
    }


class Peer:
    """A scripted OpenAI-compatible server: ``/v1/models`` and ``/v1/completions`` (the probe answered
    whole, the generation streamed), with or without logprobs in either; it keeps the bodies it got."""

    def __init__(self, probe: bool = True, stream: bool = True, shape: str = "legacy", per_event: int = 1) -> None:
        self.probe, self.stream, self.shape, self.per_event = probe, stream, shape, per_event
        self.bodies: list[dict[str, Any]] = []

    def logprobs(self, tokens: tuple[str, ...]) -> dict[str, Any]:
        return _content(tokens) if self.shape == "content" else _legacy(tokens)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "peer-model"}]})
        if request.url.path != "/v1/completions":
            return httpx.Response(404, json={"error": "not found"})
        body = json.loads(request.content)
        self.bodies.append(body)
        if not body.get("stream"):  # the probe at load time
            found = self.logprobs(("Hi",)) if self.probe and body.get("logprobs") is not None else None
            return httpx.Response(200, json={"choices": [{"text": "Hi", "logprobs": found, "finish_reason": "length"}]})
        events = []
        for i in range(0, len(WORDS), self.per_event):
            tokens = WORDS[i : i + self.per_event]
            found = self.logprobs(tokens) if self.stream and body.get("logprobs") is not None else None
            events.append({"choices": [{"text": "".join(tokens), "logprobs": found, "finish_reason": None}]})
        events.append({"choices": [{"text": "", "logprobs": None, "finish_reason": "stop"}]})
        sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse.encode())


class ScriptedRemote(RemoteBackend):
    """The remote loader, its HTTP going to :attr:`peer` instead of the network."""

    name: ClassVar[str] = "scripted-remote"
    peer: ClassVar[Peer] = Peer()

    @classmethod
    def load(cls, path: Path | None, options: LoadOptions) -> RemoteBackend:
        client = httpx.Client(base_url=URL, transport=httpx.MockTransport(cls.peer))
        return cls._connect(client, URL, options)


@pytest.fixture
def serve(tmp_path) -> Iterator[Any]:
    """``serve(peer, api="auto")``: the model manager and queue of a remote model on ``peer``."""
    managers: list[ModelManager] = []

    def load(peer: Peer, api: str = "auto") -> tuple[ModelManager, Generator]:
        ScriptedRemote.peer = peer
        models = ModelManager(
            tmp_path, LoadOptions(remote_url=URL, remote_api=api), loaders=LoaderRegistry([ScriptedRemote])
        )
        models.load("", "scripted-remote")
        managers.append(models)
        return models, Generator(models)

    yield load
    for models in managers:
        models.unload()


def _run(backend: RemoteBackend, extras: StreamExtras | None = None, stop: list[str] | None = None) -> list[Chunk]:
    params = SamplingParams(max_tokens=5, stop=stop or [])
    return list(backend.stream("Say hello", params, threading.Event(), extras))


# ----- what the loader declares and asks ----------------------------------------------------------------
@pytest.mark.parametrize("api", ["auto", "completions"])
def test_the_probe_finds_out_whether_the_server_returns_logprobs(serve, api):
    peers = Peer(probe=True), Peer(probe=False)
    with_them, _ = serve(peers[0], api)
    without, _ = serve(peers[1], api)
    assert with_them.current.backend.capabilities.logprobs and current_view_kind(with_them) == "before"
    assert not without.current.backend.capabilities.logprobs and current_view_kind(without) == "none"
    for models, peer in zip((with_them, without), peers, strict=True):
        assert models.current.backend.api == "completions" and not models.current.backend.capabilities.sampler_views
        (probe,) = peer.bodies  # one request at load time, a single token that asks for logprobs
        assert (probe["logprobs"], probe["max_tokens"], probe["stream"]) == (1, 1, False)


def test_a_server_that_refuses_the_probes_logprobs_is_still_a_completions_server():
    def refuses(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return httpx.Response(400, json={"error": {"message": "logprobs is not supported"}})

    client = httpx.Client(base_url=URL, transport=httpx.MockTransport(refuses))
    backend = RemoteBackend._connect(client, URL, LoadOptions(remote_url=URL))
    try:
        assert backend.api == "completions" and not backend.capabilities.logprobs
    finally:
        backend.close()


def test_logprobs_are_asked_only_when_wanted_and_read_best_first(serve):
    models, _ = serve(Peer())
    backend = models.current.backend
    plain = _run(backend)
    assert "logprobs" not in ScriptedRemote.peer.bodies[-1]
    assert all(c.logprobs is None for c in plain) and "".join(c.text for c in plain) == "Hello world."

    chunks = _run(backend, StreamExtras(top_logprobs=2))
    assert ScriptedRemote.peer.bodies[-1]["logprobs"] == 2
    entries = [e for c in chunks for e in c.logprobs or ()]
    assert [e.token for e in entries] == list(WORDS)
    assert all(e.logprob == LOGPROB and [t.token for t in e.top] == [e.token, "<rival>"] for e in entries)
    assert _run(backend, StreamExtras(top_logprobs=1))[0].logprobs[0].top == entries[0].top[:1]


@pytest.mark.parametrize("shape", ["legacy", "content"])
def test_both_answer_shapes_and_several_tokens_an_event_are_read(serve, shape):
    models, gen = serve(Peer(shape=shape, per_event=2))  # vLLM sends several tokens in one event
    chunks = _run(models.current.backend, StreamExtras(top_logprobs=2))
    entries = [e for c in chunks for e in c.logprobs or ()]
    assert [e.token for e in entries] == list(WORDS)
    assert all(e.top[0].token == e.token and e.top[1].logprob == pytest.approx(RIVAL) for e in entries)
    viewed = generate_with_views(gen, "Say hello", SamplingParams(max_tokens=5))
    assert "".join(c.text for c in viewed) == "Hello world." and [t.token for t in viewed.tokens] == list(WORDS)
    # the logprobs say how many tokens an event holds (2, then 1), plus one for the last, empty event
    assert viewed.job.stats.completion_tokens == 4


def test_a_stop_string_drops_the_logprobs_of_the_tokens_it_cut(serve):
    models, _ = serve(Peer())
    chunks = _run(models.current.backend, StreamExtras(top_logprobs=2), stop=[" world"])
    assert "".join(c.text for c in chunks) == "Hello"
    assert [e.token for c in chunks for e in c.logprobs or ()] == ["Hello"]


def test_the_prompts_logprobs_are_refused_out_loud(serve):
    models, _ = serve(Peer())
    with pytest.raises(UnsupportedFeatureError, match="echo"):
        _run(models.current.backend, StreamExtras(top_logprobs=0, echo_logprobs=True))


# ----- the Notebook's view ----------------------------------------------------------------------------
def test_the_notebook_shows_a_servers_logprobs_as_before_only_views(serve):
    models, gen = serve(Peer())
    viewed = generate_with_views(gen, "Say hello", SamplingParams(max_tokens=5))
    assert "".join(c.text for c in viewed) == "Hello world."
    assert ScriptedRemote.peer.bodies[-1]["logprobs"] == DEFAULT_CANDIDATES
    assert viewed.kind == "before" and [t.token for t in viewed.tokens] == list(WORDS)
    for token in viewed.tokens:
        assert token.view is not None and token.view.after == ()
        assert [c.id for c in token.view.before][0] == token.id
        assert [c.prob for c in token.view.before] == pytest.approx([0.7, 0.2])
    value = notebook_view(viewed, "en")
    assert "before the samplers" in value["legend"] and len(value["tokens"]) == 3


def test_a_server_known_to_send_no_logprobs_gives_the_cannot_note(serve):
    models, gen = serve(Peer(probe=False, stream=False))
    viewed = generate_with_views(gen, "Say hello", SamplingParams(max_tokens=5))
    assert "".join(c.text for c in viewed) == "Hello world."  # the text comes all the same
    assert "logprobs" not in ScriptedRemote.peer.bodies[-1]  # nothing asked that it cannot give
    assert viewed.kind == "none" and viewed.tokens == []
    value = notebook_view(viewed, "en")
    assert value["tokens"] == [] and "does not send its probabilities" in value["legend"]


def test_a_server_that_answers_without_the_logprobs_it_was_asked_for_gives_the_cannot_note(serve):
    models, gen = serve(Peer(probe=True, stream=False))  # the probe had them, this answer has none
    viewed = generate_with_views(gen, "Say hello", SamplingParams(max_tokens=5))
    kinds = [viewed.kind for _ in viewed]
    assert kinds[0] == "before" and viewed.text == "Hello world."  # "before" until the answer ended
    assert ScriptedRemote.peer.bodies[-1]["logprobs"] == DEFAULT_CANDIDATES
    assert viewed.kind == "none" and viewed.tokens == []
    value = notebook_view(viewed, "en")
    assert value["tokens"] == [] and "does not send its probabilities" in value["legend"]


def test_a_drawn_token_outside_the_servers_top_is_listed_with_its_own_probability():
    viewed = ViewedGeneration(prompt="Hi", n=2, kind="before")
    top = (TopLogprob(" a", math.log(0.5)), TopLogprob(" b", math.log(0.3)))
    viewed.collect(Chunk(" z", n_tokens=1, logprobs=[TokenLogprob(" z", math.log(0.05), top=top)]))
    (token,) = viewed.tokens
    assert [(viewed.texts[c.id], round(c.prob, 6)) for c in token.view.before] == [
        (" a", 0.5),
        (" b", 0.3),
        (" z", 0.05),
    ]
    assert token.view.before[-1].id == token.id
    rows = notebook_view(viewed, "en")["tokens"][0]["rows"]
    assert rows[-1]["drawn"] and rows[-1]["before"] == 0.05
