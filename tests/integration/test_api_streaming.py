"""/v1 over real HTTP (uvicorn on loopback) with the clients people use: the official ``openai``
client gets a mid-stream failure as an ``APIError`` carrying the server's message, and the
remote loader reading this app's stream gets it as a ``GenerationError``.

The failure is scripted (``FailingBackend``: three tokens, then an error), as no real model fails
on demand; everything between it and the client is the real app. (Disconnects with SmolLM2 are in
test_api.py.)
"""

from __future__ import annotations

import threading

import openai
import pytest

from api_fakes import FAILURE, FailingBackend
from asgi_server import serve
from webui.app import create_app
from webui.errors import GenerationError
from webui.loaders import LoaderRegistry, default_registry
from webui.loaders.remote import RemoteBackend
from webui.params import LoadOptions, SamplingParams
from webui.services import Services
from webui.settings import Settings

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "Hello?"}]


@pytest.fixture(scope="module")
def failing_app(tmp_path_factory):
    """The whole app (UI included) over a backend that fails after three tokens, served by uvicorn."""
    root = tmp_path_factory.mktemp("failing")
    (root / "models").mkdir()
    (root / "models" / "broken.gguf").write_bytes(b"GGUF ok")
    registry = LoaderRegistry([*(default_registry().get(n) for n in default_registry()), FailingBackend])
    services = Services.build(Settings(user_data_dir=root, api=True), loaders=registry)
    services.load_model("broken.gguf", "failing")
    with serve(create_app(services)) as url:
        yield url


def test_the_openai_client_raises_the_servers_error_from_the_middle_of_a_stream(failing_app):
    client = openai.OpenAI(base_url=failing_app + "/v1", api_key="unused", max_retries=0)
    parts: list[str] = []
    with pytest.raises(openai.APIError) as failed:
        for event in client.chat.completions.create(model="x", messages=QUESTION, max_tokens=10, stream=True):
            if event.choices and event.choices[0].delta.content:
                parts.append(event.choices[0].delta.content)
    assert failed.value.message == FAILURE and failed.value.code == "generation_failed"
    assert failed.value.type == "server_error"
    assert "".join(parts) == "0 1 2 "  # the text before the failure arrived first
    with pytest.raises(openai.APIError, match="ran out of memory"):
        for _ in client.completions.create(model="x", prompt="Once", max_tokens=10, stream=True):
            pass
    # not streamed: the same failure is an HTTP 500 with OpenAI's error body
    with pytest.raises(openai.InternalServerError) as whole:
        client.completions.create(model="x", prompt="Once", max_tokens=10)
    assert FAILURE in whole.value.message and whole.value.code == "generation_failed"


def test_the_remote_loader_reads_this_apps_error_event(failing_app):
    backend = RemoteBackend.load(None, LoadOptions(remote_url=failing_app + "/v1"))
    try:
        got: list[str] = []
        with pytest.raises(GenerationError, match=f"stopped with an error: {FAILURE}"):
            for chunk in backend.stream("Once", SamplingParams(max_tokens=10), threading.Event()):
                got.append(chunk.text)
        assert "".join(got).startswith("0 1")  # the stop-string filter may hold back the last piece
    finally:
        backend.close()
