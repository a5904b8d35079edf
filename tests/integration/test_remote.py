"""The remote loader against real OpenAI-compatible servers on loopback: llama-cpp-python's own
server (which we did not write) and this app's /v1 (our app as its own remote)."""

from __future__ import annotations

import json
import threading

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from asgi_server import serve
from harness import make_dirs, start_server, stop_server
from server_process import free_port, start_llama_cpp_server
from testdata import GEMMA, PARIS_PROMPT, SMOLLM
from webui.errors import GenerationError, ModelLoadError
from webui.generation.scheduler import Generator
from webui.loaders.remote import RemoteBackend
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

pytestmark = pytest.mark.integration
GREEDY = SamplingParams(do_sample=False, max_tokens=30)


@pytest.fixture(scope="module")
def llama_server(smollm_path, tmp_path_factory):
    """python -m llama_cpp.server on a free port, with an API key."""
    srv = start_llama_cpp_server(smollm_path, tmp_path_factory.mktemp("peer"), api_key="peer-key")
    yield srv.url
    srv.stop()


def remote(url: str, key: str = "", model: str = "") -> tuple[ModelManager, Generator]:
    models = ModelManager("/nonexistent", LoadOptions(remote_url=url, remote_key=key, remote_model=model))
    models.load("", "remote")
    return models, Generator(models)


def test_llama_cpp_server_as_remote_streams_counts_and_cancels(llama_server):
    models, gen = remote(llama_server, "peer-key")
    try:
        assert models.current.loader == "remote"
        text, stats = gen.generate(PARIS_PROMPT, GREEDY)
        assert "Paris" in text and stats.completion_tokens > 0
        backend = models.current.backend
        assert stats.prompt_tokens > 5 and backend.tokens_estimated is False  # the server's tokenizer
        job = gen.submit("Write a very long story about a dragon.\n", SamplingParams(max_tokens=1500, seed=1))
        for i, _ in enumerate(job):
            if i == 5:
                job.cancel.set()
        assert job.stats.finish_reason == "cancelled" and job.stats.completion_tokens < 100
        assert "Paris" in gen.generate(PARIS_PROMPT, GREEDY)[0]  # and the next request works
    finally:
        models.unload()


def test_remote_errors_are_clear(llama_server):
    with pytest.raises(ModelLoadError, match="refused the API key"):
        remote(llama_server, "wrong")
    with pytest.raises(ModelLoadError, match="Cannot connect"):
        remote(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ModelLoadError, match="address"):
        remote("not a url")


def test_our_own_api_as_remote(tmp_path):
    """This app with --api as another copy's remote: it streams, and through llama.cpp's /props and /tokenize
    (found by hand: without them the remote copy used ChatML on a model with its own template, called it a base
    model, and estimated every token count) the template, context size and token counts are the model's."""
    import httpx
    from gguf import GGUFReader

    srv = start_server(tmp_path, *make_dirs(tmp_path), "--api-key", "own", "--model", SMOLLM, ctx_size=2048)
    try:
        models, gen = remote(srv.url + "/v1", "own")
        assert models.current.name == SMOLLM or models.current.name.endswith(".gguf")
        text, stats = gen.generate(PARIS_PROMPT, GREEDY)
        assert "Paris" in text
        backend = models.current.backend
        field = GGUFReader(srv.model_dir / SMOLLM).fields["tokenizer.chat_template"]
        assert backend.chat_template == bytes(field.parts[field.data[0]]).decode("utf-8")  # the model's own
        assert backend.n_ctx == 2048  # the server's context, not the 4096 asked for
        assert stats.prompt_tokens > 5 and backend.tokens_estimated is False
        models.unload()
        # the routes keep the API key, and refuse what they cannot honour
        assert httpx.get(srv.url + "/props").status_code == 401
        bad = httpx.post(srv.url + "/tokenize", json={"content": "hi", "with_pieces": True}, headers=OWN)
        assert bad.status_code == 400 and "with_pieces" in bad.json()["error"]["message"]
        plain = httpx.post(srv.url + "/tokenize", json={"content": "Hello"}, headers=OWN).json()["tokens"]
        special = httpx.post(srv.url + "/tokenize", json={"content": "Hello", "add_special": True}, headers=OWN)
        assert len(special.json()["tokens"]) >= len(plain) >= 1
        # a model name is routed as on /v1: the loaded one answers, one in the folder but not loaded is a 404
        named = httpx.post(srv.url + "/tokenize", json={"content": "Hello", "model": SMOLLM}, headers=OWN)
        assert named.json()["tokens"] == plain
        other = httpx.post(srv.url + "/tokenize", json={"content": "Hello", "model": GEMMA}, headers=OWN)
        assert other.status_code == 404 and SMOLLM in other.json()["error"]["message"]
    finally:
        stop_server(srv)


OWN = {"Authorization": "Bearer own"}


# What a misbehaving OpenAI-compatible server answers /v1/completions with, by the prompt sent.
OOM = {"message": "CUDA out of memory while decoding", "type": "server_error", "param": None, "code": 500}
TEXT = 'data: {"choices": [{"text": "Hel", "finish_reason": null}]}\n\n'
PEER_ANSWERS: dict[str, tuple[int, str, str]] = {
    # an OpenAI-shaped error event in the middle of the stream (vLLM, this app)
    "error event": (200, "text/event-stream", TEXT + f"data: {json.dumps({'error': OOM})}\n\n"),
    # an error under the SSE event name "error", with CRLF line ends
    "named error": (
        200,
        "text/event-stream",
        (TEXT + 'event: error\ndata: {"error": "the worker crashed"}\n\n').replace("\n", "\r\n"),
    ),
    "not json": (200, "text/event-stream", TEXT + "data: <html>502 Bad Gateway</html>\n\n"),
    "not a stream": (200, "application/json", json.dumps({"choices": [{"text": "Hello"}]})),
    "refused": (500, "application/json", json.dumps({"error": OOM})),
    # the happy path, in two chunks split inside an event (the parser must join them)
    "fine": (
        200,
        "text/event-stream",
        TEXT + 'data: {"choices": [{"text": "lo", "finish_reason": "length"}]}\n\ndata: [DONE]\n\n',
    ),
}


async def _completions(request: Request) -> Response:
    status, kind, body = PEER_ANSWERS[(await request.json())["prompt"]]
    if kind != "text/event-stream":
        return Response(body, status_code=status, media_type=kind)
    half = len(body) // 2

    async def parts():
        yield body[:half]
        yield body[half:]

    return StreamingResponse(parts(), status_code=status, media_type=kind)


@pytest.fixture(scope="module")
def peer():
    """A real HTTP server (uvicorn, loopback) speaking OpenAI's completions, badly on purpose."""
    app = Starlette(
        routes=[
            Route("/v1/models", lambda request: JSONResponse({"data": [{"id": "peer-model"}]})),
            Route("/v1/completions", _completions, methods=["POST"]),
        ]
    )
    with serve(app) as url:
        yield url


def _generate(url: str, prompt: str) -> str:
    backend = RemoteBackend.load(None, LoadOptions(remote_url=url))
    try:
        return "".join(c.text for c in backend.stream(prompt, SamplingParams(max_tokens=5), threading.Event()))
    finally:
        backend.close()


def test_remote_reads_the_stream_with_an_sse_parser(peer):
    assert _generate(peer, "fine") == "Hello"


@pytest.mark.parametrize(
    "prompt,message",
    [
        ("error event", r"stopped with an error: CUDA out of memory while decoding"),
        ("named error", r"stopped with an error: the worker crashed"),
        ("not json", r"sent an event that is not JSON: '<html>502 Bad Gateway</html>'"),
        ("not a stream", r"did not answer with an event stream: .*application/json"),
        ("refused", r"answered 500: CUDA out of memory while decoding"),
    ],
)
def test_a_servers_error_is_a_generation_error_with_its_message(peer, prompt, message):
    with pytest.raises(GenerationError, match=message):
        _generate(peer, prompt)


def test_a_servers_error_event_reaches_the_caller_of_a_job(peer):
    models, gen = remote(peer)
    try:
        job = gen.submit("error event", SamplingParams(max_tokens=5))
        with pytest.raises(GenerationError, match="CUDA out of memory"):
            job.result()
        assert job.text == "Hel"  # what came before the error was delivered
    finally:
        models.unload()
