"""Image parts at the API edge: OpenAI ``image_url`` parts and Anthropic ``image`` blocks become markers
in the text plus URLs in order; a chat server gets them back as ``image_url`` parts."""

import pytest
from pydantic import ValidationError

from webui.agents.engine import ChatRequest, with_image_parts
from webui.api.anthropic_schemas import MessagesRequest, chat_request_of
from webui.api.schemas import ChatCompletionRequest
from webui.attachments.types import IMAGE_MARKER, ImageInput
from webui.errors import InvalidMessagesError, UnsupportedFeatureError


def test_openai_parts_become_markers_and_urls_in_order():
    req = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare "},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        {"type": "text", "text": "with"},
                        {"type": "image_url", "image_url": "data:image/png;base64,BBBB"},
                    ],
                }
            ]
        }
    )
    text, urls = req.messages[0].content_and_images()
    assert text == f"Compare {IMAGE_MARKER}\nwith{IMAGE_MARKER}\n"
    assert urls == ["data:image/png;base64,AAAA", "data:image/png;base64,BBBB"]


def test_typed_marker_text_is_defused():
    req = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": f"a {IMAGE_MARKER} b"}]})
    text, urls = req.messages[0].content_and_images()
    assert IMAGE_MARKER not in text and urls == []


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url"},
        {"type": "image_url", "image_url": {"detail": "low"}},
        {"type": "input_audio", "input_audio": {}},
        {"type": "file", "file": {}},
    ],
)
def test_parts_we_cannot_use_are_refused(part):
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": [part]}]})


def test_anthropic_image_blocks():
    body = MessagesRequest.model_validate(
        {
            "model": "x",
            "max_tokens": 4,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                        {"type": "text", "text": "What is it?"},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    ],
                }
            ],
        }
    )
    request, ignored = chat_request_of(body)
    assert request.image_urls == ["data:image/png;base64,AAAA", "https://example.com/a.png"]
    assert request.messages[-1]["content"].count(IMAGE_MARKER) == 2 and ignored == []


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (None, InvalidMessagesError),
        ({"type": "base64", "data": "AAAA"}, InvalidMessagesError),
        ({"type": "file", "file_id": "f"}, InvalidMessagesError),
    ],
)
def test_bad_anthropic_image_sources(source, error):
    block = {"type": "image"} if source is None else {"type": "image", "source": source}
    body = MessagesRequest.model_validate(
        {"model": "x", "max_tokens": 4, "messages": [{"role": "user", "content": [block]}]}
    )
    with pytest.raises(error):
        chat_request_of(body)


def test_an_anthropic_document_block_says_what_to_do():
    body = MessagesRequest.model_validate(
        {
            "model": "x",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
        }
    )
    with pytest.raises(UnsupportedFeatureError, match="document"):
        chat_request_of(body)


def test_a_chat_server_gets_image_url_parts_back():
    images = [ImageInput(b"1", "image/png", 1, 1), ImageInput(b"2", "image/jpeg", 1, 1)]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"{IMAGE_MARKER}\nFirst, then{IMAGE_MARKER}\n"},
    ]
    out = with_image_parts(messages, images)
    assert out[0] == messages[0]
    parts = out[1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text", "image_url"]
    assert parts[0]["image_url"]["url"] == images[0].data_url() and parts[1]["text"] == "First, then"
    assert parts[2]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert with_image_parts(messages, []) is messages
    assert ChatRequest(messages=[]).images == []


def test_an_image_detail_we_do_not_use_is_named_as_ignored():
    def request(detail):
        url = {"url": "data:image/png;base64,AAAA", **({"detail": detail} if detail else {})}
        return ChatCompletionRequest.model_validate(
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": url}]}], "user": "u"}
        )

    assert request("high").ignored_fields() == ["user", "messages[].content[].image_url.detail"]
    assert request("auto").ignored_fields() == ["user"]
    assert request(None).ignored_fields() == ["user"]
