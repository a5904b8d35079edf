"""Anthropic's Messages API (/v1/messages), driven by the real ``anthropic`` SDK against a real server.py
on SmolLM2: reply shapes and usage, streaming, stop sequences, count_tokens, errors, tool use."""

from __future__ import annotations

import anthropic
import pytest

from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
GREEDY = {"do_sample": False, "seed": 1}
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name"}},
        "required": ["city"],
    },
}


def client_for(url: str, key: str = "unused") -> anthropic.Anthropic:
    # The SDK calls {base_url}/v1/messages: the base URL is the server's root.
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("messages")
    srv = start_server(root, *make_dirs(root), "--api", "--model", SMOLLM)
    yield client_for(srv.url)
    stop_server(srv)


def test_a_reply_has_anthropic_shape_and_usage(client):
    r = client.messages.create(model="anything", max_tokens=40, messages=QUESTION, extra_body=GREEDY)
    assert r.id.startswith("msg_") and r.type == "message" and r.role == "assistant" and r.model == SMOLLM
    assert [b.type for b in r.content] == ["text"] and "Paris" in r.content[0].text
    assert r.stop_reason == "end_turn" and r.stop_sequence is None
    assert r.usage.input_tokens > 10 and 0 < r.usage.output_tokens < 40
    short = client.messages.create(model="x", max_tokens=3, messages=QUESTION, extra_body=GREEDY)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3


def test_the_system_prompt_is_part_of_the_prompt_count_tokens_says(client):
    # (SmolLM2's template writes its own system prompt when there is none: compare two of ours.)
    system = "You are a geography teacher for young children. Answer in one short and friendly sentence."
    short = client.messages.count_tokens(model="x", system="Be brief.", messages=QUESTION).input_tokens
    with_system = client.messages.count_tokens(model="x", system=system, messages=QUESTION).input_tokens
    assert with_system > short + 8
    r = client.messages.create(
        model="x", max_tokens=30, system=[{"type": "text", "text": system}], messages=QUESTION, extra_body=GREEDY
    )
    assert r.usage.input_tokens == with_system and r.content[0].text


def test_streaming_builds_the_same_message(client):
    whole = client.messages.create(model="x", max_tokens=40, messages=QUESTION, extra_body=GREEDY)
    with client.messages.stream(model="x", max_tokens=40, messages=QUESTION, extra_body=GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 2 and "".join(pieces) == final.content[0].text == whole.content[0].text
    assert final.stop_reason == "end_turn" and final.model == SMOLLM
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_a_stop_sequence_ends_the_reply_and_is_named(client):
    text = client.messages.create(model="x", max_tokens=40, messages=QUESTION, extra_body=GREEDY).content[0].text
    word = text.split()[2]
    r = client.messages.create(model="x", max_tokens=40, messages=QUESTION, stop_sequences=[word], extra_body=GREEDY)
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == word
    assert r.content[0].text == text[: text.index(word)]
    with client.messages.stream(
        model="x", max_tokens=40, messages=QUESTION, stop_sequences=[word], extra_body=GREEDY
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.content[0].text == r.content[0].text


def test_requests_it_cannot_honour_are_bad_requests(client):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="x", max_tokens=5, messages=[{"role": "user", "content": [image, {"type": "text", "text": "What?"}]}]
        )
    assert "image 1 is corrupt or truncated" in refused.value.message  # (a PNG signature alone)
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(model="x", max_tokens=5, messages=QUESTION, extra_body={"logit_bias": {"1": 1}})
    assert "logit_bias" in unknown.value.message


def test_the_api_key_is_checked_in_anthropic_shape(tmp_path):
    srv = start_server(tmp_path, *make_dirs(tmp_path), "--api-key", "s3cret")
    try:
        with pytest.raises(anthropic.AuthenticationError) as wrong:
            client_for(srv.url, "wrong").messages.create(model="x", max_tokens=5, messages=QUESTION)
        assert wrong.value.body["error"]["type"] == "authentication_error"
        # the right key (sent as x-api-key) passes; no model is loaded yet: a clear error
        with pytest.raises(anthropic.InternalServerError) as none_loaded:
            client_for(srv.url, "s3cret").messages.create(model="x", max_tokens=5, messages=QUESTION)
        assert none_loaded.value.status_code == 503 and "No model is loaded" in none_loaded.value.message
    finally:
        stop_server(srv)


def test_a_forced_tool_call_and_its_result(client):
    ask = [{"role": "user", "content": "What is the weather like in Paris?"}]
    r = client.messages.create(
        model="x",
        max_tokens=150,
        messages=ask,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        extra_body=GREEDY,
    )
    assert r.stop_reason == "tool_use" and [b.type for b in r.content] == ["tool_use"]
    call = r.content[0]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    assert set(call.input) == {"city"} and isinstance(call.input["city"], str)
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24 degrees Celsius."}
    follow = client.messages.create(
        model="x",
        max_tokens=40,
        messages=[*ask, {"role": "assistant", "content": r.content}, {"role": "user", "content": [result]}],
        tools=[WEATHER],
        extra_body=GREEDY,
    )
    assert follow.stop_reason in ("end_turn", "max_tokens", "tool_use") and follow.content
    assert follow.usage.input_tokens > r.usage.input_tokens


def test_a_streamed_tool_call_arrives_as_input_json(client):
    with client.messages.stream(
        model="x",
        max_tokens=150,
        messages=[{"role": "user", "content": "Weather in Tokyo?"}],
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        extra_body=GREEDY,
    ) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_message()
    assert "input_json" in kinds and final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["tool_use"]
    call = final.content[0]
    assert call.name == "get_weather" and isinstance(call.input.get("city"), str)
