"""The chat request engine: checks before the queue, messages for templates with and without tool
support, and the assembly of a job's chunks into content, reasoning and checked tool calls."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from webui.agents.engine import ChatPlan, ChatRequest, ReplyAssembler, check_request, messages_for_template
from webui.agents.formats import format_by_name
from webui.agents.reasoning import reasoning_style
from webui.agents.types import ToolChoice, ToolSpec
from webui.errors import InvalidMessagesError, SchemaError, UnsupportedFeatureError
from webui.generation.scheduler import GenerationStats, Prepared
from webui.loaders.base import Chunk, TokenLogprob, ToolCallDelta

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
USER = {"role": "user", "content": "Weather in Paris?"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def test_checks_refuse_what_cannot_be_honoured_before_queueing():
    check_request(ChatRequest([USER], tools=[WEATHER]))
    with pytest.raises(SchemaError, match="'nope'"):
        check_request(ChatRequest([USER], tools=[WEATHER], tool_choice=ToolChoice("function", "nope")))
    with pytest.raises(SchemaError, match="no tools"):
        check_request(ChatRequest([USER], tool_choice=ToolChoice("required")))
    with pytest.raises(SchemaError, match="two tools"):
        check_request(ChatRequest([USER], tools=[WEATHER, WEATHER]))
    with pytest.raises(SchemaError, match=r"tools\[0\]"):
        check_request(ChatRequest([USER], tools=[ToolSpec("f", "", {"type": "objekt"})]))
    with pytest.raises(InvalidMessagesError, match="call_9"):
        check_request(ChatRequest([USER, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]))
    with pytest.raises(UnsupportedFeatureError, match="response_format"):
        check_request(ChatRequest([USER], tools=[WEATHER], response_format={"type": "json_object"}))
    with pytest.raises(SchemaError, match="schema is missing"):
        check_request(ChatRequest([USER], response_format={"type": "json_schema", "json_schema": {}}))
    # a call followed by its result is a conversation
    check_request(
        ChatRequest(
            [
                USER,
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            ],
            tools=[WEATHER],
        )
    )


def test_a_template_without_tools_gets_them_described_and_history_written_out():
    hermes = format_by_name("hermes")
    history = [
        {"role": "system", "content": "Be brief."},
        USER,
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
    ]
    out = messages_for_template(history, hermes, False, [WEATHER])
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.")
    assert "get_weather" in out[0]["content"] and "<tool_call>" in out[0]["content"]
    assert out[2]["role"] == "assistant" and "<tool_call>" in out[2]["content"] and "Paris" in out[2]["content"]
    assert out[3] == {"role": "user", "content": "Result of the tool get_weather:\nSunny, 21 C"}
    # a template that reads tools gets the calls as transformers passes them (arguments an object)
    native = messages_for_template(history, hermes, True, [WEATHER])
    assert native[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert native[3]["role"] == "tool" and native[3]["name"] == "get_weather"


def job_with(plan: ChatPlan, finish: str = "stop") -> SimpleNamespace:
    stats = GenerationStats(model="m", loader="fake", seed=1, finish_reason=finish)
    return SimpleNamespace(prepared=Prepared("p", detail=plan), stats=stats)


def run(assembler: ReplyAssembler, pieces: list[str]) -> list:
    events = []
    for piece in pieces:
        events += assembler.feed(Chunk(piece, n_tokens=1))
    return events + assembler.finish()


def test_reasoning_content_and_a_checked_tool_call_come_apart():
    request = ChatRequest([USER], tools=[WEATHER])
    plan = ChatPlan(request, format=format_by_name("hermes"), reasoning=reasoning_style("<think>"), thinking_open=True)
    assembler = ReplyAssembler(job_with(plan))
    text = 'I should call the tool.</think>Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    events = run(assembler, [text[i : i + 7] for i in range(0, len(text), 7)])
    reply = assembler.reply
    assert reply.reasoning == "I should call the tool."
    assert reply.content == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert reply.finish_reason == "tool_calls"
    calls = [e for e in events if e.kind == "tool_call"]
    assert (
        calls[0].name == "get_weather"
        and calls[0].id
        and "".join(e.arguments for e in calls) == reply.tool_calls[0].arguments
    )
    assert not any("<tool_call>" in e.text or "</think>" in e.text for e in events)


def test_a_call_that_does_not_match_its_schema_stays_text():
    plan = ChatPlan(ChatRequest([USER], tools=[WEATHER]), format=format_by_name("hermes"))
    assembler = ReplyAssembler(job_with(plan))
    run(assembler, ['<tool_call>\n{"name": "get_weather", "arguments": {"town": 3}}\n</tool_call>'])
    assert assembler.reply.tool_calls == [] and assembler.reply.finish_reason == "stop"
    assert "get_weather" in assembler.reply.content


def test_a_chat_servers_parsed_calls_and_reasoning_pass_through():
    plan = ChatPlan(ChatRequest([USER], tools=[WEATHER]), remote=True)
    assembler = ReplyAssembler(job_with(plan))
    events = assembler.feed(Chunk("", reasoning="thinking"))
    events += assembler.feed(Chunk("", tool_calls=[ToolCallDelta(0, "call_a", "get_weather", '{"city":')]))
    events += assembler.feed(Chunk("", tool_calls=[ToolCallDelta(0, None, None, ' "Rome"}')], finish_tool_calls=True))
    events += assembler.finish()
    assert assembler.reply.reasoning == "thinking"
    assert [(c.id, c.name, c.arguments) for c in assembler.reply.tool_calls] == [
        ("call_a", "get_weather", '{"city": "Rome"}')
    ]
    assert assembler.reply.finish_reason == "tool_calls"


def test_logprobs_travel_with_the_content_they_made():
    plan = ChatPlan(ChatRequest([USER], top_logprobs=1))
    assembler = ReplyAssembler(job_with(plan, "length"))
    lp = TokenLogprob("Hi", -0.5)
    events = assembler.feed(Chunk("Hi", n_tokens=1, logprobs=[lp])) + assembler.finish()
    assert events[0].logprobs == [lp] and assembler.reply.logprobs == [lp]
    assert assembler.reply.finish_reason == "length"


def test_a_keyword_the_grammar_cannot_enforce_is_refused_only_when_strict():
    age = {"type": "object", "properties": {"age": {"type": "integer", "multipleOf": 2}}, "required": ["age"]}
    loose = check_request(ChatRequest([USER], tools=[ToolSpec("f", "", age)]))
    assert loose == ["tools[0].function.parameters: 'multipleOf' at properties.age"]
    with pytest.raises(SchemaError, match="'multipleOf'"):
        check_request(ChatRequest([USER], tools=[ToolSpec("f", "", age, strict=True)]))
    strict_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": age, "strict": True}}
    with pytest.raises(SchemaError, match="'multipleOf'"):
        check_request(ChatRequest([USER], response_format=strict_format))


def test_numeric_bounds_are_enforced_so_strict_schemas_with_them_pass():
    rating = {"type": "object", "properties": {"stars": {"type": "integer", "minimum": 1, "maximum": 5}}}
    strict_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": rating, "strict": True}}
    assert check_request(ChatRequest([USER], response_format=strict_format)) == []


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "json_schema": "a string"},
        {"type": "json_schema", "json_schema": {"schema": "not a schema"}},
        {"type": "json_schema", "json_schema": {"schema": {"type": "object"}, "strict": "yes"}},
        {"type": 3},
        {},
    ],
)
def test_odd_response_formats_are_clear_errors_not_crashes(response_format):
    try:
        check_request(ChatRequest([USER], response_format=response_format))
    except SchemaError:
        pass
