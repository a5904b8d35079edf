"""Anthropic's Messages API shapes: requests translated into the engine's request, the engine's events
into content blocks and stream events, errors; and the routes over the app's ASGI stack with the
scripted FakeBackend (tests/integration/test_messages_api.py drives SmolLM2 with the real SDK)."""

from __future__ import annotations

import json

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api_fakes import FAILURE, FailingBackend
from webui.agents.engine import Reply, ReplyEvent
from webui.api import create_api, install_error_handlers
from webui.api.anthropic import MessageShape, create_messages_api, error_body, tool_use_id
from webui.api.anthropic_schemas import CountTokensRequest, MessagesRequest, chat_request_of, params_of
from webui.errors import GenerationError, InvalidMessagesError, SchemaError, UnsupportedFeatureError
from webui.loaders import LoaderRegistry
from webui.services import Services
from webui.settings import Settings

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def translate(**body):
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return chat_request_of(MessagesRequest.model_validate({"model": "m", "max_tokens": 10, **body}))


# -- requests ---------------------------------------------------------------------------------------------


def test_a_tool_conversation_becomes_openai_shaped_messages():
    chat, ignored = translate(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris"}, {"type": "text", "text": "?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Call the tool.", "signature": "x"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "21 C"}]},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        tools=[WEATHER],
    )
    assert chat.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris\n\n?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
            "reasoning_content": "Call the tool.",
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21 C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert [t.name for t in chat.tools] == ["get_weather"] and chat.tools[0].parameters == WEATHER["input_schema"]
    assert chat.tool_choice.mode == "auto" and chat.parallel_tool_calls
    assert ignored == ["system[].cache_control"]


def test_consecutive_turns_are_combined_and_failed_results_say_so():
    chat, _ = translate(
        messages=[
            {"role": "user", "content": "One"},
            {"role": "user", "content": [{"type": "text", "text": "Two"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}],
            },
        ],
        tools=[{**WEATHER, "name": "f"}],
    )
    assert chat.messages[0] == {"role": "user", "content": "One\n\nTwo"}
    assert chat.messages[1]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert chat.messages[2] == {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"}


@pytest.mark.parametrize(
    "choice,mode,name,parallel",
    [
        ({"type": "auto"}, "auto", None, True),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", None, False),
        ({"type": "tool", "name": "get_weather"}, "function", "get_weather", True),
        ({"type": "none"}, "none", None, True),
    ],
)
def test_tool_choice(choice, mode, name, parallel):
    chat, _ = translate(tools=[WEATHER], tool_choice=choice)
    assert (chat.tool_choice.mode, chat.tool_choice.name, chat.parallel_tool_calls) == (mode, name, parallel)


def test_thinking_output_config_and_sampling_fields():
    chat, ignored = translate(thinking={"type": "enabled", "budget_tokens": 2048}, metadata={"user_id": "u"})
    assert chat.enable_thinking is True and ignored == ["metadata", "thinking.budget_tokens"]
    assert translate(thinking={"type": "disabled"})[0].enable_thinking is False
    assert translate(thinking={"type": "adaptive"})[0].enable_thinking is None
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat, _ = translate(output_config={"effort": "max", "format": {"type": "json_schema", "schema": schema}})
    assert chat.reasoning_effort == "high"
    assert chat.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    body = MessagesRequest.model_validate(
        {
            "model": "m",
            "max_tokens": 7,
            "messages": [{"role": "user", "content": "x"}],
            "temperature": 0.2,
            "top_k": 5,
            "seed": 3,
            "repetition_penalty": 1.3,
            "do_sample": False,
        }  # fmt: skip
    )
    params = params_of(body, preset={"temperature": 1.5, "min_p": 0.2, "max_tokens": 99})
    assert (params.max_tokens, params.temperature, params.top_k, params.min_p) == (7, 0.2, 5, 0.2)
    assert (params.seed, params.repeat_penalty, params.do_sample, params.stop) == (3, 1.3, False, [])


@pytest.mark.parametrize(
    "body,error,words",
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
            InvalidMessagesError,
            "messages[0].content[0].source: base64 images need media_type and data",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}],
                    }
                ]
            },  # noqa: E501
            UnsupportedFeatureError,
            "images are not supported yet",
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            UnsupportedFeatureError,
            "prefill",
        ),
        ({"logit_bias": {"1": 2}, "n": 2}, UnsupportedFeatureError, "logit_bias, n"),
        ({"tools": [{**WEATHER, "color": "red"}]}, UnsupportedFeatureError, "tools[].color"),
        ({"mcp_servers": [{"url": "x"}]}, UnsupportedFeatureError, "MCP servers"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, UnsupportedFeatureError, "server tool"),
        ({"tools": [{"name": "f"}]}, SchemaError, "tools[0].input_schema is missing"),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool"}}, SchemaError, "needs the tool's name"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]},
            InvalidMessagesError,
            "belongs in an assistant message",
        ),
        ({"messages": [{"role": "user", "content": "\ud800"}]}, InvalidMessagesError, "surrogate"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(body, error, words):
    with pytest.raises(error) as refused:
        translate(**body)
    assert words in refused.value.message


def test_count_tokens_takes_the_same_conversation_without_max_tokens():
    body = CountTokensRequest.model_validate(
        {"model": "m", "system": "S", "messages": [{"role": "user", "content": "x"}]}
    )
    chat, _ = chat_request_of(body)
    assert chat.messages == [{"role": "system", "content": "S"}, {"role": "user", "content": "x"}]
    with pytest.raises(UnsupportedFeatureError):  # sampling fields belong to /v1/messages only
        chat_request_of(CountTokensRequest.model_validate({**body.model_dump(), "stream": True}))


# -- answers ----------------------------------------------------------------------------------------------


def replay(events):
    """The message the anthropic SDK builds from these stream events."""
    snapshot, bufs = None, {}
    for name, data in events:
        assert data["type"] == name
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


def test_events_become_blocks_in_order_and_the_stream_builds_the_same_message():
    shape = MessageShape()
    shape.model = "m"
    engine = [
        ReplyEvent("reasoning", "Need "),
        ReplyEvent("reasoning", "weather."),
        ReplyEvent("content", "Checking"),
        ReplyEvent("content", "."),
        ReplyEvent("tool_call", index=0, id="call_abc", name="get_weather"),
        ReplyEvent("tool_call", index=0, arguments='{"city": '),
        ReplyEvent("tool_call", index=0, arguments='"Paris"}'),
        ReplyEvent("tool_call", index=1, id="call_def", name="get_time"),
    ]
    usage = {"input_tokens": 5, "output_tokens": 0}
    events = [("message_start", {"type": "message_start", "message": shape.message(None, usage, content=False)})]
    events += shape.add(engine[:3]) + shape.add(engine[3:]) + shape.end()
    reason = shape.stop_reason(Reply(finish_reason="tool_calls"))
    delta = {"stop_reason": reason, "stop_sequence": None}
    events += [("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 9}})]
    events += [("message_stop", {"type": "message_stop"})]
    whole = shape.message(reason, {"input_tokens": 5, "output_tokens": 9})
    assert whole["content"] == [
        {"type": "thinking", "thinking": "Need weather.", "signature": ""},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_abc", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_def", "name": "get_time", "input": {}},
    ]
    assert whole["stop_reason"] == "tool_use" and whole["id"].startswith("msg_")
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        *["content_block_start", "content_block_delta", "content_block_delta", "content_block_stop"] * 2,
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert [d["index"] for n, d in events if n == "content_block_start"] == [0, 1, 2, 3]
    assert replay(events).to_dict() == {**whole, "stop_details": None}


def test_a_stop_sequence_ends_the_answer_even_across_pieces():
    shape = MessageShape(["END", "STOP"])
    events = shape.add([ReplyEvent("content", "one S"), ReplyEvent("content", "TO")])
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "one "  # "STO" held back
    shape.add([ReplyEvent("content", "P and more"), ReplyEvent("tool_call", index=0, id="x", name="f")])
    shape.end()
    assert shape.stop_sequence == "STOP" and shape.stop_reason(Reply(finish_reason="stop")) == "stop_sequence"
    assert shape.blocks == [{"type": "text", "text": "one "}]
    held = MessageShape(["STOP"])
    held.add([ReplyEvent("content", "ends in ST")])
    held.end()  # not a stop after all: the held text is part of the answer
    assert held.blocks == [{"type": "text", "text": "ends in ST"}] and held.stop_sequence is None


def test_stop_reasons_ids_omitted_thinking_and_bad_arguments():
    shape = MessageShape()
    assert [shape.stop_reason(Reply(finish_reason=r)) for r in ("stop", "length", "tool_calls", "cancelled")] == [
        "end_turn",
        "max_tokens",
        "tool_use",
        "end_turn",
    ]
    assert tool_use_id("call_1") == "toolu_1" and tool_use_id("toolu_2") == "toolu_2"
    assert tool_use_id(None).startswith("toolu_")
    quiet = MessageShape(show_thinking=False)
    quiet.add([ReplyEvent("reasoning", "hmm"), ReplyEvent("content", "Hi")])
    assert quiet.blocks == [{"type": "text", "text": "Hi"}]
    bad = MessageShape()
    bad.add([ReplyEvent("tool_call", index=0, id="c", name="f", arguments="[1]")])
    with pytest.raises(GenerationError, match="not a JSON object"):
        bad.end()


def test_error_bodies_have_anthropic_types():
    assert error_body(401, "no") == {"type": "error", "error": {"type": "authentication_error", "message": "no"}}
    types = [error_body(s, "")["error"]["type"] for s in (400, 404, 413, 500, 503, 529)]
    assert types == [
        "invalid_request_error",
        "not_found_error",
        "request_too_large",
        "api_error",
        "api_error",
        "overloaded_error",
    ]


# -- the routes, with the scripted backend ("0 1 2 ..." a token each) ------------------------------------------


def app_for(tmp_path, loaders, api_key: str = "", loader: str = "fake") -> tuple[FastAPI, Services]:
    models = tmp_path / "user" / "models"
    models.mkdir(parents=True)
    (models / "a.gguf").write_bytes(b"GGUF ok")
    registry = LoaderRegistry([*(loaders.get(n) for n in loaders), FailingBackend])
    services = Services.build(Settings(user_data_dir=tmp_path / "user", api=True, api_key=api_key), loaders=registry)
    services.load_model("a.gguf", loader)
    app = FastAPI()
    install_error_handlers(app)
    # Before the OpenAI router, whose last route answers every other /v1 path with a 404.
    app.include_router(create_messages_api(services), prefix="/v1")
    app.include_router(create_api(services), prefix="/v1")
    return app, services


BODY = {"model": "any", "max_tokens": 4, "messages": [{"role": "user", "content": "Count"}]}


def sse_events(text: str) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in text.split("\n"):
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: ") :])))
    return events


def test_a_message_whole_and_streamed(tmp_path, loaders):
    app, services = app_for(tmp_path, loaders)
    client = TestClient(app)
    r = client.post("/v1/messages", json={**BODY, "metadata": {"user_id": "x"}})
    assert r.status_code == 200 and r.headers["x-webui-ignored-fields"] == "metadata"
    message = r.json()
    assert message["content"] == [{"type": "text", "text": "0 1 2 3 "}] and message["model"] == "a.gguf"
    assert message["stop_reason"] == "max_tokens" and message["usage"]["output_tokens"] == 4
    assert message["usage"]["input_tokens"] > 5
    stopped = client.post("/v1/messages", json={**BODY, "max_tokens": 50, "stop_sequences": ["3 "]}).json()
    assert stopped["content"][0]["text"] == "0 1 2 " and stopped["stop_reason"] == "stop_sequence"
    assert stopped["stop_sequence"] == "3 "
    r = client.post("/v1/messages", json={**BODY, "stream": True, "metadata": {}})
    assert r.headers["x-webui-ignored-fields"] == "metadata" and "\r" not in r.text
    events = sse_events(r.text)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    final = replay(events).to_dict()
    assert final["content"] == message["content"] and final["usage"]["output_tokens"] == 4
    assert final["stop_reason"] == "max_tokens" and final["model"] == "a.gguf"
    count = client.post("/v1/messages/count_tokens", json={k: v for k, v in BODY.items() if k != "max_tokens"})
    assert count.json() == {"input_tokens": message["usage"]["input_tokens"]}
    assert not services.cancels._events  # every request's cancel is forgotten


def test_errors_are_anthropic_shaped_on_these_routes_only(tmp_path, loaders):
    app, _ = app_for(tmp_path, loaders, api_key="s3cret")
    client = TestClient(app)
    wrong = client.post("/v1/messages", json=BODY, headers={"x-api-key": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    assert "x-api-key" in wrong.json()["error"]["message"]
    for headers in ({"x-api-key": "s3cret"}, {"Authorization": "Bearer s3cret"}):
        assert client.post("/v1/messages", json=BODY, headers=headers).status_code == 200
    key = {"x-api-key": "s3cret"}
    invalid = client.post("/v1/messages", json={"messages": []}, headers=key)
    assert invalid.status_code == 400 and invalid.json()["type"] == "error"
    assert (
        invalid.json()["error"]["type"] == "invalid_request_error"
        and "max_tokens" in invalid.json()["error"]["message"]
    )
    broken = client.post("/v1/messages", content=b"{not json", headers={**key, "content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_request_error"
    hot = client.post("/v1/messages", json={**BODY, "temperature": 9}, headers=key)
    assert hot.status_code == 400 and "temperature" in hot.json()["error"]["message"]
    image = {**BODY, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}
    refused = client.post("/v1/messages", json=image, headers=key).json()
    assert (
        refused["error"]["type"] == "invalid_request_error"
        and "type must be 'base64' or 'url'" in refused["error"]["message"]
    )
    openai_shape = client.post(
        "/v1/chat/completions", json={"messages": []}, headers={"Authorization": "Bearer s3cret"}
    )
    assert openai_shape.status_code == 400 and set(openai_shape.json()) == {"error"}


def test_a_failure_mid_stream_is_the_streams_last_event(tmp_path, loaders):
    app, _ = app_for(tmp_path, loaders, loader="failing")
    r = TestClient(app).post("/v1/messages", json={**BODY, "max_tokens": 10, "stream": True})
    events = sse_events(r.text)
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert r.status_code == 200 and text == "0 1 2 "  # what was generated before the failure reached the client
    assert events[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": FAILURE}})
    assert "message_stop" not in [n for n, _ in events]


def test_a_tool_schema_keyword_the_grammar_leaves_out_is_named_in_a_header(tmp_path, loaders):
    app, _ = app_for(tmp_path, loaders)
    tool = {
        "name": "pick",
        "description": "Pick an even number.",
        "input_schema": {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}},
    }
    r = TestClient(app).post("/v1/messages", json={**BODY, "tools": [tool], "tool_choice": {"type": "none"}})
    assert r.status_code == 200, r.text
    assert "'multipleOf' at properties.n" in r.headers["x-webui-not-enforced"]
    strict = {**tool, "strict": True}
    r = TestClient(app).post("/v1/messages", json={**BODY, "tools": [strict]})
    assert r.status_code == 400 and "multipleOf" in r.json()["error"]["message"]


def test_a_body_that_is_not_json_is_a_400_in_anthropics_shape(tmp_path, loaders):
    app, _ = app_for(tmp_path, loaders)
    r = TestClient(app).post("/v1/messages", content=b"PH\xf1s", headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
