"""Images through the API: OpenAI ``image_url`` parts and Anthropic ``image`` blocks, driven by the real
``openai`` and ``anthropic`` SDKs against a real server.py.

On the text-only SmolLM2 an image is a clear 400 (never dropped); bad images and URLs the server must
not fetch are clear 400s. On a vision model (a tiny random-weight SmolVLM converted to GGUF + mmproj
with llama.cpp's own converter, ``tests/vlm_models.py``) the image reaches the model: its tokens are
counted, and two different images change the answer's first-token distribution. A second server whose
remote loader talks to the first through the chat API passes the image on as an ``image_url`` part.
"""

from __future__ import annotations

import base64
import io
import shutil

import anthropic
import httpx
import openai
import pytest
from PIL import Image

from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration


def png(color=(200, 30, 30), size=(48, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_message(url: str, text: str = "What is in the picture?") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}
    ]


# --- a text-only model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-images")
    srv = start_server(root, *make_dirs(root), "--api", "--model", SMOLLM)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def client(text_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{text_server.url}/v1", api_key="x", max_retries=0)


def test_an_image_for_a_text_only_model_is_a_clear_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=SMOLLM, messages=image_message(data_url(png())), max_tokens=8)
    assert "cannot see images" in str(caught.value)


def test_an_anthropic_image_block_for_a_text_only_model_is_a_clear_400(text_server):
    client = anthropic.Anthropic(base_url=text_server.url, api_key="x", max_retries=0)
    block = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png()).decode()},
    }
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=SMOLLM, max_tokens=8, messages=[{"role": "user", "content": [block, {"type": "text", "text": "Hi"}]}]
        )
    assert "cannot see images" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:1/cat.png", "fetch"),  # the server fetches nothing unless allowed
        ("file:///etc/passwd", "file"),
        ("data:image/png;base64,@@not-base64@@", "base64"),
        (data_url(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "image/svg+xml"), "SVG"),
        (data_url(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "image"),  # a truncated PNG
    ],
)
def test_bad_images_and_urls_are_clear_400s(client, url, expected):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=SMOLLM, messages=image_message(url), max_tokens=8)
    assert expected.lower() in str(caught.value).lower()


def test_an_image_in_an_assistant_message_is_refused(text_server):
    body = {
        "model": SMOLLM,
        "max_tokens": 4,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": data_url(png())}}]},
            {"role": "user", "content": "Again"},
        ],
    }
    r = httpx.post(f"{text_server.url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400 and "user messages" in r.text


def test_text_that_looks_like_the_image_marker_is_only_text(client):
    reply = client.chat.completions.create(
        model=SMOLLM, messages=[{"role": "user", "content": "Say <__media__> back."}], max_tokens=4, temperature=0
    )
    assert reply.choices[0].finish_reason in ("stop", "length")


# --- a vision model --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vision_server(tmp_path_factory):
    from vlm_models import ensure_tiny_vlm_gguf

    model, projector = ensure_tiny_vlm_gguf()
    root = tmp_path_factory.mktemp("api-vision")
    model_dir, user_dir = make_dirs(root)
    shutil.copy(model, model_dir / model.name)
    shutil.copy(projector, model_dir / projector.name)
    srv = start_server(root, model_dir, user_dir, "--api", "--model", model.name)
    srv.model_name = model.name
    yield srv
    stop_server(srv)


def first_token_distribution(vclient, model: str, image: bytes) -> dict[str, float]:
    reply = vclient.chat.completions.create(
        model=model,
        messages=image_message(data_url(image), "Describe."),
        max_tokens=1,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
    )
    return {t.token: t.logprob for t in reply.choices[0].logprobs.content[0].top_logprobs}


def test_a_vision_model_sees_the_image_through_the_openai_sdk(vision_server):
    vclient = openai.OpenAI(base_url=f"{vision_server.url}/v1", api_key="x", max_retries=0)
    model = vision_server.model_name
    with_image = vclient.chat.completions.create(
        model=model, messages=image_message(data_url(png())), max_tokens=4, temperature=0
    )
    without = vclient.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is in the picture?"}], max_tokens=4, temperature=0
    )
    # The image's own tokens are in the prompt.
    assert with_image.usage.prompt_tokens > without.usage.prompt_tokens + 8
    red = first_token_distribution(vclient, model, png((220, 20, 20)))
    assert red == first_token_distribution(vclient, model, png((220, 20, 20)))  # the same image: the same
    assert red != first_token_distribution(vclient, model, png((20, 20, 220), (64, 32)))  # another: changes


def test_a_vision_model_through_the_anthropic_sdk_and_count_tokens(vision_server):
    client = anthropic.Anthropic(base_url=vision_server.url, api_key="x", max_retries=0)
    source = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png()).decode()}
    content = [{"type": "image", "source": source}, {"type": "text", "text": "Describe."}]
    m = client.messages.create(
        model=vision_server.model_name,
        max_tokens=4,
        messages=[{"role": "user", "content": content}],
        extra_body={"temperature": 0},
    )
    assert m.usage.input_tokens > 8
    counted = client.messages.count_tokens(
        model=vision_server.model_name, messages=[{"role": "user", "content": content}]
    )
    assert counted.input_tokens == m.usage.input_tokens


def test_the_remote_loader_passes_images_to_a_chat_server(vision_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("api-remote-vision")
    srv = start_server(
        root,
        *make_dirs(root),
        "--api",
        "--remote-url",
        vision_server.url,
        "--remote-api",
        "chat",
    )
    try:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        with_image = client.chat.completions.create(
            model=client.models.list().data[0].id, messages=image_message(data_url(png())), max_tokens=4, temperature=0
        )
        direct = openai.OpenAI(base_url=f"{vision_server.url}/v1", api_key="x", max_retries=0)
        same = direct.chat.completions.create(
            model=vision_server.model_name, messages=image_message(data_url(png())), max_tokens=4, temperature=0
        )
        assert with_image.choices[0].message.content == same.choices[0].message.content
        assert with_image.usage.prompt_tokens == same.usage.prompt_tokens
    finally:
        stop_server(srv)
