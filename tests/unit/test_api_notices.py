"""What the API says besides the answer: a template it did not use, fields it ignored (fast, on the fake
loader; the real-server shapes are in tests/integration/test_api_compat.py)."""

from __future__ import annotations

import json
from typing import ClassVar

import fastapi
import pytest
from fastapi.testclient import TestClient

from fakes import FakeBackend
from webui.api import create_api, install_error_handlers
from webui.loaders import LoaderRegistry
from webui.services import Services
from webui.settings import Settings

HELLO = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}


class UnsafeTemplateBackend(FakeBackend):
    """A model whose file carries a chat template that pokes at Python internals."""

    name: ClassVar[str] = "fake-unsafe"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chat_template = (
            "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m.content }}{% endfor %}"
        )


class ChatModelBackend(FakeBackend):
    name: ClassVar[str] = "fake-chat"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"


def client_for(tmp_path, loaders: LoaderRegistry, loader: str) -> TestClient:
    (tmp_path / "models").mkdir(parents=True)
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF ok")
    registry = LoaderRegistry([*(loaders.get(n) for n in loaders), UnsafeTemplateBackend, ChatModelBackend])
    services = Services.build(Settings(user_data_dir=tmp_path, api=True), tmp_path / "settings.yaml", loaders=registry)
    services.load_model("m.gguf", loader)
    app = fastapi.FastAPI()
    install_error_handlers(app)
    app.include_router(create_api(services), prefix="/v1")
    return TestClient(app)


@pytest.mark.parametrize("stream", [False, True])
def test_an_unsafe_model_template_is_replaced_and_the_response_says_so(tmp_path, loaders, caplog, stream):
    client = client_for(tmp_path, loaders, "fake-unsafe")
    r = client.post("/v1/chat/completions", json={**HELLO, "stream": stream})
    assert r.status_code == 200, r.text
    note = r.headers["x-webui-template-note"]
    assert "unsafe" in note and "ChatML" in note
    assert any("unsafe" in rec.getMessage() for rec in caplog.records)


def test_a_base_model_is_named_in_the_header_and_a_models_own_template_is_not(tmp_path, loaders):
    client = client_for(tmp_path, loaders, "fake")  # no chat template: a base model
    r = client.post("/v1/chat/completions", json=HELLO)
    assert "Base model" in r.headers["x-webui-template-note"]
    own = client_for(tmp_path / "own", loaders, "fake-chat")
    assert "x-webui-template-note" not in own.post("/v1/chat/completions", json=HELLO).headers


def test_ignored_fields_are_listed_and_empty_unsupported_ones_too(tmp_path, loaders):
    client = client_for(tmp_path, loaders, "fake-chat")
    r = client.post("/v1/chat/completions", json={**HELLO, "user": "u1", "logit_bias": {}, "x_custom": 1})
    assert r.status_code == 200, r.text
    assert r.headers["x-webui-ignored-fields"] == "logit_bias, user, x_custom"
    r = client.post("/v1/chat/completions", json={**HELLO, "logit_bias": {"1": 5}})
    assert r.status_code == 400 and "logit_bias" in r.json()["error"]["message"]


def test_a_field_name_with_control_characters_is_escaped_in_the_header(tmp_path, loaders):
    client = client_for(tmp_path, loaders, "fake-chat")
    r = client.post("/v1/chat/completions", json={**HELLO, "a\u0000b\r\nc\u00e9": 1})
    assert r.status_code == 200, r.text
    assert r.headers["x-webui-ignored-fields"] == "a\\x00b\\x0d\\x0ac\\xe9"


@pytest.mark.parametrize("name", [" I\u00a1@", "trailing ", "   ", "\t", "ok"])
def test_a_field_name_with_spaces_at_the_ends_gives_a_header_h11_can_send(tmp_path, loaders, name):
    """uvicorn's h11 refuses a header value that starts or ends with a space and drops the connection
    (the fuzzer's field " I¡@" got no answer at all): the test client does not go through h11, so the
    header is checked with h11's own rules too."""
    import h11

    client = client_for(tmp_path, loaders, "fake-chat")
    r = client.post("/v1/chat/completions", json={**HELLO, name: 1, "x\u0010y": 2})
    assert r.status_code == 200, r.text
    value = r.headers["x-webui-ignored-fields"]
    h11.Response(status_code=200, headers=[("x-webui-ignored-fields", value)])  # raises when h11 would refuse it
    assert "x\\x10y" in value


def test_prompt_lookup_on_a_loader_without_it_runs_and_is_named_as_ignored(tmp_path, loaders):
    client = client_for(tmp_path, loaders, "fake-chat")  # a loader whose supported_params lack prompt_lookup
    r = client.post("/v1/chat/completions", json={**HELLO, "prompt_lookup": 8})
    assert r.status_code == 200, r.text
    assert r.headers["x-webui-ignored-fields"] == "prompt_lookup"
    assert (
        "x-webui-ignored-fields" not in client.post("/v1/chat/completions", json={**HELLO, "prompt_lookup": 0}).headers
    )


@pytest.mark.parametrize("stream", [False, True])
def test_a_completion_prompt_cut_to_truncation_length_says_how_many_tokens_were_not_sent(tmp_path, loaders, stream):
    """Raw text may be cut from the front to truncation_length (chat prompts never are), but not silently:
    usage.prompt_tokens_cut, and for a whole response a notice header."""
    client = client_for(tmp_path, loaders, "fake")
    body = {"prompt": "x" * 150, "max_tokens": 1, "truncation_length": 100, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    if stream:
        events = [line[len("data: ") :] for line in r.text.splitlines() if line.startswith("data: {")]
        usage = json.loads(events[-1])["usage"]
    else:
        usage = r.json()["usage"]
        assert "first 50 tokens were not sent" in r.headers["x-webui-notice"]
    assert usage["prompt_tokens_cut"] == 50 and usage["prompt_tokens"] == 100
    r = client.post("/v1/completions", json={"prompt": "x" * 50, "max_tokens": 1, "truncation_length": 100})
    assert "prompt_tokens_cut" not in r.json()["usage"] and "x-webui-notice" not in r.headers
