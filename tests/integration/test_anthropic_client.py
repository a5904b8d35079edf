"""POST /v1/messages and /v1/messages/count_tokens (the Anthropic Messages API), driven by the real
``anthropic`` SDK against a real server.py with SmolLM2 and an API key (issue 17).

The SDK calls ``{base_url}/v1/messages``, so its base_url is the server's root, not ``.../v1``.
anthropic 2.15 sends its ``api_key`` as ``Authorization: Bearer``; ``x-api-key`` (what Anthropic's
own API and many other clients send) is checked through the SDK's ``default_headers`` and raw HTTP.
Tools are forced (SmolLM2-135M would not choose one by itself) and replies greedy and short.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import jsonschema_rs
import pytest

from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration

KEY = "s3cret-key"
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {"name": "get_weather", "description": "Get the current weather in a city.", "input_schema": CITY_SCHEMA}
FORCE_WEATHER = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris today?"}]
ASK_CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
SYSTEM = "You are a geography teacher. Answer in one short sentence."
WEATHER_REPORT = "Sunny, 21 degrees Celsius."
# anthropic 2.15 has no temperature argument any more (the API still takes the field)
GREEDY: dict[str, Any] = {"extra_body": {"temperature": 0}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("anthropic")
    srv = start_server(root, *make_dirs(root), "--api", "--api-key", KEY, "--model", SMOLLM)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def client(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)


def tool_use(message: Any) -> Any:
    """The one tool_use block of a reply, its input checked against the tool's schema."""
    (block,) = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather" and block.id and isinstance(block.input, dict)
    jsonschema_rs.validate(CITY_SCHEMA, block.input)
    return block


def test_a_plain_reply_with_a_system_prompt(client):
    m = client.messages.create(model=SMOLLM, max_tokens=40, system=SYSTEM, messages=ASK_CAPITAL, **GREEDY)
    assert m.type == "message" and m.role == "assistant" and m.id
    assert m.content[0].type == "text" and "Paris" in m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.input_tokens > 10 and m.usage.output_tokens > 0


def test_max_tokens_stops_the_reply(client):
    messages = [{"role": "user", "content": "Write a long story about a dragon."}]
    m = client.messages.create(model=SMOLLM, max_tokens=3, messages=messages, **GREEDY)
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3


def test_system_as_text_blocks_counts_the_same_as_a_string(client):
    as_string = client.messages.count_tokens(model=SMOLLM, system=SYSTEM, messages=ASK_CAPITAL)
    as_blocks = client.messages.count_tokens(
        model=SMOLLM, system=[{"type": "text", "text": SYSTEM}], messages=ASK_CAPITAL
    )
    assert as_string.input_tokens == as_blocks.input_tokens > 10


def test_count_tokens_matches_the_input_tokens_of_a_reply(client):
    counted = client.messages.count_tokens(model=SMOLLM, system=SYSTEM, messages=ASK_CAPITAL)
    m = client.messages.create(model=SMOLLM, max_tokens=5, system=SYSTEM, messages=ASK_CAPITAL, **GREEDY)
    assert counted.input_tokens == m.usage.input_tokens
    with_tool = client.messages.count_tokens(model=SMOLLM, system=SYSTEM, messages=ASK_CAPITAL, tools=[WEATHER_TOOL])
    assert with_tool.input_tokens > counted.input_tokens  # the tool's description is part of the prompt


@pytest.mark.parametrize(
    "tool_choice",
    [FORCE_WEATHER, {"type": "any", "disable_parallel_tool_use": True}],
    ids=["tool", "any"],
)
def test_a_forced_tool_gives_a_tool_use_block(client, tool_choice):
    m = client.messages.create(
        model=SMOLLM, max_tokens=60, tools=[WEATHER_TOOL], tool_choice=tool_choice, messages=ASK_WEATHER, **GREEDY
    )
    assert m.stop_reason == "tool_use"
    tool_use(m)
    assert [b.type for b in m.content if b.type != "tool_use"] == []


def test_a_call_cut_off_by_max_tokens_leaks_no_markup(client):
    """Parallel calls allowed: SmolLM2 calls get_weather again and again until max_tokens cuts one
    off. The finished call is returned; the unfinished one is no call and no text either."""
    m = client.messages.create(
        model=SMOLLM,
        max_tokens=60,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any"},
        messages=ASK_WEATHER,
        **GREEDY,
    )
    assert any(b.type == "tool_use" for b in m.content)
    assert not [b for b in m.content if b.type == "text" and "<tool_call>" in b.text]
    assert m.usage.output_tokens == 60 and m.stop_reason == "max_tokens"


def test_a_tool_result_round_trip_ends_in_an_answer(client):
    first = client.messages.create(
        model=SMOLLM,
        max_tokens=60,
        tools=[WEATHER_TOOL],
        tool_choice=FORCE_WEATHER,
        messages=ASK_WEATHER,
        **GREEDY,
    )
    call = tool_use(first)
    messages = [
        *ASK_WEATHER,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": WEATHER_REPORT}]},
    ]
    # "none": the model must now answer in words (left to itself, a 135M model may call again)
    second = client.messages.create(
        model=SMOLLM, max_tokens=150, tools=[WEATHER_TOOL], tool_choice={"type": "none"}, messages=messages, **GREEDY
    )
    assert second.stop_reason == "end_turn"
    assert [b.type for b in second.content] == ["text"] and second.content[0].text.strip()
    alone = client.messages.count_tokens(
        model=SMOLLM, tools=[WEATHER_TOOL], tool_choice={"type": "none"}, messages=ASK_WEATHER
    )
    assert second.usage.input_tokens > alone.input_tokens + 10  # the call and its result went in


def test_streamed_text_and_the_final_message(client):
    with client.messages.stream(model=SMOLLM, max_tokens=40, system=SYSTEM, messages=ASK_CAPITAL, **GREEDY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Paris" in text and final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 10 and final.usage.output_tokens > 0
    plain = client.messages.create(model=SMOLLM, max_tokens=40, system=SYSTEM, messages=ASK_CAPITAL, **GREEDY)
    assert plain.content[0].text == text  # greedy: streaming changes nothing


def test_a_streamed_tool_use(client):
    with client.messages.stream(
        model=SMOLLM,
        max_tokens=60,
        tools=[WEATHER_TOOL],
        tool_choice=FORCE_WEATHER,
        messages=ASK_WEATHER,
        **GREEDY,
    ) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_message()
    assert {"message_start", "content_block_start", "content_block_delta", "message_stop"} <= kinds
    assert final.stop_reason == "tool_use"
    tool_use(final)


def test_a_wrong_key_is_refused_and_x_api_key_works(server, client):
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0).messages.create(
            model=SMOLLM, max_tokens=3, messages=ASK_CAPITAL
        )
    assert refused.value.status_code == 401
    by_header = anthropic.Anthropic(
        base_url=server.url, api_key=None, default_headers={"x-api-key": KEY}, max_retries=0
    )
    assert by_header.messages.create(model=SMOLLM, max_tokens=3, messages=ASK_CAPITAL, **GREEDY).content
    body = {"model": SMOLLM, "max_tokens": 3, "messages": ASK_CAPITAL}
    headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
    ok = httpx.post(server.url + "/v1/messages", json=body, headers={**headers, "x-api-key": KEY}, timeout=120)
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    wrong = httpx.post(server.url + "/v1/messages", json=body, headers={**headers, "x-api-key": "wrong"}, timeout=120)
    assert wrong.status_code == 401


def test_errors_have_the_anthropic_shape(server):
    """Anthropic's clients read ``{"type": "error", "error": {"type", "message"}}``."""
    headers = {"anthropic-version": "2023-06-01", "x-api-key": KEY}
    no_max_tokens = httpx.post(
        server.url + "/v1/messages", json={"model": SMOLLM, "messages": ASK_CAPITAL}, headers=headers, timeout=120
    )
    assert no_max_tokens.status_code == 400
    body = no_max_tokens.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    wrong_key = httpx.post(
        server.url + "/v1/messages",
        json={"model": SMOLLM, "max_tokens": 3, "messages": ASK_CAPITAL},
        headers={**headers, "x-api-key": "wrong"},
        timeout=120,
    )
    assert wrong_key.status_code == 401 and wrong_key.json()["error"]["type"] == "authentication_error"
