"""The remote loader on servers that offer only (or are asked for) ``/v1/chat/completions``.

Real servers on loopback: a small chat-only peer written here (no ``/v1/completions``; scripted
streams with tool-call and reasoning deltas, usage, errors), llama-cpp-python's own server (which
we did not write) and this app's own ``/v1``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from asgi_server import serve
from harness import make_dirs, start_server, stop_server, wait_until
from server_process import start_llama_cpp_server
from testdata import SMOLLM
from webui.errors import GenerationError, UnsupportedFeatureError
from webui.generation.scheduler import Generator, Prepared
from webui.loaders.base import ChatPayload, Chunk, StreamExtras, ToolCallDelta
from webui.loaders.remote import RemoteBackend
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams
from webui.ui.model_tab import status_text

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PARIS = ({"role": "user", "content": "What is the capital of France?"},)


def _event(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, **extra}]
    return f"data: {json.dumps({'object': 'chat.completion.chunk', 'choices': choices})}\n\n"


def _usage(prompt: int, completion: int) -> str:
    body = {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    return f"data: {json.dumps(body)}\n\n"


DONE = "data: [DONE]\n\n"
OOM = {"message": "CUDA out of memory while decoding", "type": "server_error", "code": 500}
#: What the peer streams, by the last message's content.
SCRIPTS: dict[str, str] = {
    "call tools": (
        _event({"role": "assistant"})
        + _event(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        )
        + _event({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]})
        + _event({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]})
        + _event(
            {"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "get_weather", "arguments": '{"city"'}}]}
        )
        + _event({"tool_calls": [{"index": 1, "function": {"arguments": ': "Rome"}'}}]})
        + _event({}, "tool_calls")
        + _usage(42, 17)
        + DONE
    ),
    "think first": (
        _event({"role": "assistant", "reasoning_content": "The user asks"})
        + _event({"reasoning_content": " about France."})
        + _event({"content": "Paris"})
        + _event({"content": "."}, "stop")
        + DONE  # no usage: the prompt's size is estimated
    ),
    "think differently": _event({"reasoning": "Hmm."}) + _event({"content": "Yes"}, "length") + DONE,
    "fail midway": _event({"content": "Hel"}) + f"data: {json.dumps({'error': OOM})}\n\n",
    "with logprobs": (
        _event(
            {"content": "Hi"},
            logprobs={
                "content": [
                    {
                        "token": "Hi",
                        "logprob": -0.5,
                        "bytes": [72, 105],
                        "top_logprobs": [
                            {"token": "Hello", "logprob": -1.5, "bytes": [72, 101, 108, 108, 111]},
                            {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]},
                        ],
                    }
                ]
            },
        )
        + _event({}, "stop")
        + DONE
    ),
}


class ChatOnlyPeer:
    """A server with /v1/models and /v1/chat/completions only: what it was sent, what it saw close."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.closed = threading.Event()  # the endless stream's connection was dropped by the client
        self.app = Starlette(
            routes=[
                Route("/v1/models", lambda request: JSONResponse({"data": [{"id": "chat-model"}]})),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ]
        )

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        last = body["messages"][-1]["content"]
        if last == "refuse":
            return JSONResponse({"error": {"message": "model 'chat-model' is overloaded"}}, status_code=503)
        if last == "go on forever":
            return StreamingResponse(self._endless(), media_type="text/event-stream")
        return StreamingResponse(iter([SCRIPTS[last]]), media_type="text/event-stream")

    async def _endless(self):
        try:
            for _ in range(100_000):
                yield _event({"content": "word "})
                await asyncio.sleep(0.01)
        finally:
            self.closed.set()


@pytest.fixture(scope="module")
def peer() -> Iterator[tuple[str, ChatOnlyPeer]]:
    server = ChatOnlyPeer()
    with serve(server.app) as url:
        yield url, server


@pytest.fixture(scope="module")
def chat_backend(peer) -> Iterator[RemoteBackend]:
    url, _ = peer
    backend = RemoteBackend.load(None, LoadOptions(remote_url=url))  # remote_api "auto"
    yield backend
    backend.close()


def _run(backend: RemoteBackend, chat: ChatPayload | None, params: SamplingParams | None = None, **extras: Any):
    stream = backend.stream(
        "placeholder", params or SamplingParams(max_tokens=50), threading.Event(), StreamExtras(chat=chat, **extras)
    )
    return list(stream)


def _ask(content: str, **fields: Any) -> ChatPayload:
    return ChatPayload(messages=({"role": "user", "content": content},), **fields)


def test_a_chat_only_server_is_found_at_load_and_said(chat_backend):
    assert chat_backend.api == "chat"
    assert chat_backend.metadata["remote.api"] == "/v1/chat/completions"
    caps = chat_backend.capabilities
    assert caps.chat_messages and caps.tools and caps.logprobs and not caps.local_files
    assert not RemoteBackend.capabilities.chat_messages  # the class (and completions servers) unchanged


def test_tool_call_deltas_usage_and_the_request_passed_through(chat_backend, peer):
    _, server = peer
    response_format = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
    chat = _ask(
        "call tools",
        tools=(WEATHER,),
        tool_choice="required",
        parallel_tool_calls=True,
        response_format=response_format,
        extra={"reasoning_effort": "low", "model": "not this"},
    )
    chunks = _run(chat_backend, chat, SamplingParams(max_tokens=50, temperature=0.3, seed=7, stop=["END"]))
    calls = [d for c in chunks for d in c.tool_calls or []]
    assert calls == [
        ToolCallDelta(0, "call_a", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city": '),
        ToolCallDelta(0, None, None, '"Paris"}'),
        ToolCallDelta(1, "call_b", "get_weather", '{"city"'),
        ToolCallDelta(1, None, None, ': "Rome"}'),
    ]
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.finish_tool_calls and last.prompt_tokens == 42
    assert sum(c.n_tokens for c in chunks) == 17  # the server's count
    assert "".join(c.text for c in chunks) == ""
    body = server.bodies[-1]
    assert body["messages"] == [{"role": "user", "content": "call tools"}]
    assert body["tools"] == [WEATHER] and body["tool_choice"] == "required" and body["parallel_tool_calls"] is True
    assert body["response_format"] == response_format
    assert body["reasoning_effort"] == "low" and body["model"] == "chat-model"  # extra adds, never replaces
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["seed"], body["max_tokens"], body["stop"]) == (0.3, 7, 50, ["END"])
    assert "logprobs" not in body and "prompt" not in body


def test_reasoning_deltas_come_apart_from_the_answer(chat_backend):
    chunks = _run(chat_backend, _ask("think first"))
    assert "".join(c.reasoning for c in chunks) == "The user asks about France."
    assert "".join(c.text for c in chunks) == "Paris."
    assert chunks[-1].finish_reason == "stop" and not chunks[-1].finish_tool_calls
    assert chunks[-1].prompt_tokens == len("think first") // 4  # no usage and no tokenizer: estimated
    chunks = _run(chat_backend, _ask("think differently"))  # the other field name servers use
    assert [c.reasoning for c in chunks if c.reasoning] == ["Hmm."]
    assert "".join(c.text for c in chunks) == "Yes" and chunks[-1].finish_reason == "length"


def test_logprobs_are_asked_for_and_converted(chat_backend, peer):
    _, server = peer
    chunks = _run(chat_backend, _ask("with logprobs"), top_logprobs=2)
    assert (server.bodies[-1]["logprobs"], server.bodies[-1]["top_logprobs"]) == (True, 2)
    [entry] = [e for c in chunks for e in c.logprobs or []]
    assert (entry.token, entry.logprob, entry.bytes) == ("Hi", -0.5, (72, 105))
    assert [(t.token, t.logprob) for t in entry.top] == [("Hi", -0.5), ("Hello", -1.5)]  # best first


def test_a_servers_error_is_a_generation_error_with_its_message(chat_backend):
    with pytest.raises(GenerationError, match="stopped with an error: CUDA out of memory while decoding"):
        _run(chat_backend, _ask("fail midway"))
    with pytest.raises(GenerationError, match="answered 503: model 'chat-model' is overloaded"):
        _run(chat_backend, _ask("refuse"))


def test_raw_text_and_what_the_chat_api_cannot_carry_are_refused(chat_backend):
    with pytest.raises(UnsupportedFeatureError, match=r"only offers chat completions.*Notebook"):
        list(chat_backend.stream("Once upon a time", SamplingParams(), threading.Event()))
    with pytest.raises(UnsupportedFeatureError, match=r"only offers chat completions"):
        _run(chat_backend, None, top_logprobs=1)
    with pytest.raises(UnsupportedFeatureError, match="echo"):
        _run(chat_backend, _ask("think first"), echo_logprobs=True)
    with pytest.raises(UnsupportedFeatureError, match="grammar"):
        _run(chat_backend, _ask("think first"), SamplingParams(grammar_string='root ::= "a"'))


def test_cancel_closes_the_connection(chat_backend, peer):
    _, server = peer
    cancel = threading.Event()
    chunks: list[Chunk] = []
    for chunk in chat_backend.stream("x", SamplingParams(), cancel, StreamExtras(chat=_ask("go on forever"))):
        chunks.append(chunk)
        if len(chunks) == 3:
            cancel.set()
    assert chunks[-1].finish_reason == "cancelled" and len(chunks) == 4
    wait_until(server.closed.is_set, "the peer seeing the connection closed")


def test_through_the_generator_with_a_chat_payload(peer):
    url, _ = peer
    models = ModelManager("/nonexistent", LoadOptions(remote_url=url))
    models.load("", "remote")
    gen = Generator(models)
    try:
        assert models.current.name == "chat-model" and models.current.backend.capabilities.chat_messages
        status = status_text(SimpleNamespace(models=models), "en")  # type: ignore[arg-type]
        assert "chat-model on remote (/v1/chat/completions)" in status  # the Model tab says which API
        chat = _ask("call tools", tools=(WEATHER,))

        def prepare(loaded, params):
            # The scheduler refuses an empty prompt; a chat-only backend does not read it.
            return Prepared(prompt="call tools", front_cut=False, extras=StreamExtras(chat=chat))

        job = gen.submit(prepare=prepare, params=SamplingParams(max_tokens=20))
        calls = [d for c in job for d in c.tool_calls or []]
        assert {d.id for d in calls if d.id} == {"call_a", "call_b"}
        assert job.stats.prompt_tokens == 42 and job.stats.completion_tokens == 17
        # the Notebook's raw text reaches the caller as the clear error
        with pytest.raises(UnsupportedFeatureError, match="Notebook"):
            gen.submit("Once upon a time", SamplingParams(max_tokens=5)).result()
    finally:
        models.unload()


# ---- llama-cpp-python's own server, asked through its chat API ---------------------------------


@pytest.fixture(scope="module")
def llama_chat(smollm_path, tmp_path_factory) -> Iterator[tuple[str, RemoteBackend]]:
    srv = start_llama_cpp_server(smollm_path, tmp_path_factory.mktemp("peer"), n_ctx=1024)
    backend = RemoteBackend.load(None, LoadOptions(remote_url=srv.url, remote_api="chat"))
    try:
        yield srv.url, backend
    finally:
        backend.close()
        srv.stop()


def test_llama_cpp_server_chat_answers_with_logprobs(llama_chat):
    url, backend = llama_chat
    assert backend.api == "chat"
    chunks = _run(backend, ChatPayload(messages=PARIS), SamplingParams(do_sample=False, max_tokens=24), top_logprobs=2)
    assert "Paris" in "".join(c.text for c in chunks)
    entries = [e for c in chunks for e in c.logprobs or []]
    assert entries and all(len(e.top) == 2 and e.logprob is not None for e in entries)
    assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].prompt_tokens
    # the same server chosen by "auto" keeps the completions API (it offers both)
    auto = RemoteBackend.load(None, LoadOptions(remote_url=url))
    try:
        assert auto.api == "completions" and not auto.capabilities.chat_messages
    finally:
        auto.close()


def test_llama_cpp_server_returns_a_forced_tool_call_parsed(llama_chat):
    _, backend = llama_chat
    chat = _ask(
        "What is the weather in Paris?",
        tools=(WEATHER,),
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    chunks = _run(backend, chat, SamplingParams(do_sample=False, max_tokens=40))
    calls = [d for c in chunks for d in c.tool_calls or []]
    assert calls and {d.name for d in calls if d.name} == {"get_weather"}
    arguments = json.loads("".join(d.arguments for d in calls if d.index == 0))
    assert isinstance(arguments.get("city"), str)
    assert chunks[-1].finish_tool_calls


def test_our_own_api_through_its_chat_route(tmp_path):
    srv = start_server(tmp_path, *make_dirs(tmp_path), "--api-key", "own", "--model", SMOLLM)
    try:
        backend = RemoteBackend.load(None, LoadOptions(remote_url=srv.url, remote_key="own", remote_api="chat"))
        try:
            chunks = _run(backend, ChatPayload(messages=PARIS), SamplingParams(do_sample=False, max_tokens=24))
        finally:
            backend.close()
        assert "Paris" in "".join(c.text for c in chunks)
        assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].prompt_tokens
    finally:
        stop_server(srv)


def test_a_chat_tab_turn_sends_the_conversation_as_messages(peer, tmp_path):
    """The Chat tab on a chat-only server: the messages our template would have rendered go to the server
    (which applies its own template), and its reasoning comes back apart from the answer."""
    from webui.chat.history import ChatStore
    from webui.chat.prompt import Character, ChatOptions
    from webui.chat.service import ChatService
    from webui.templates.chat_template import InstructionTemplateStore, choose_template

    url, server = peer
    models = ModelManager("/nonexistent", LoadOptions(remote_url=url))
    models.load("", "remote")
    store = InstructionTemplateStore(Path(__file__).resolve().parents[2] / "instruction-templates")
    service = ChatService(
        Generator(models),
        ChatStore(tmp_path / "chats"),
        lambda loaded: choose_template(loaded.backend.chat_template, None, store, loaded.backend.metadata),
    )
    try:
        chat = service.store.new("Assistant")
        turn = service.turn(
            chat,
            "send",
            text="think first",
            character=Character("Assistant", ""),
            options=ChatOptions(system_prompt="Answer briefly."),
            params=SamplingParams(max_tokens=20),
        )
        shown = list(turn)[-1]  # a turn yields the reply so far
        sent = server.bodies[-1]["messages"]
        assert sent[0] == {"role": "system", "content": "Answer briefly."}
        assert sent[-1] == {"role": "user", "content": "think first"}
        assert not any("<|im_start|>" in str(m.get("content")) for m in sent)  # messages, not our prompt text
        assert shown == "Paris." and turn.reasoning == "The user asks about France."
        assert chat.messages[-1].content == "Paris." and chat.messages[-1].reasoning == "The user asks about France."
    finally:
        models.unload()
