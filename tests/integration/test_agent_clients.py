"""/v1/chat/completions as agent frameworks use it (issue 17): tool calls, structured output,
logprobs, ``n``, usage in streams and the rest of the OpenAI chat surface, driven by the real
openai SDK, AutoGen, LangChain and instructor against a real server.py with SmolLM2.

SmolLM2-135M is too small to decide by itself to call a tool or to answer in JSON, so every test
forces the call (a named tool or ``"required"``) or the format: the server's grammar makes the reply
valid, and the test checks the wire format each client reads, not the model's judgement. Replies
are greedy (temperature 0, a seed) and short.

LangChain and AutoGen import tiktoken, which downloads its encodings on first use; there is no
network here. The calls these tests make never count tokens, and ``no_tiktoken_download`` makes
sure of it: a download attempt fails the test at once instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jsonschema_rs
import openai
import pytest
from pydantic import BaseModel

from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration

CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Get the current weather in a city.", "parameters": CITY_SCHEMA},
}
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris today?"}]
ASK_CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
WEATHER_REPORT = "Sunny, 21 degrees Celsius."
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 1}


class City(BaseModel):
    city: str


class GetWeather(BaseModel):
    city: str


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("agent-clients")
    srv = start_server(root, *make_dirs(root), "--api", "--model", SMOLLM)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(autouse=True)
def no_tiktoken_download(monkeypatch):
    import tiktoken.load

    def refuse(blobpath: str) -> bytes:
        raise AssertionError(f"tiktoken tried to download {blobpath}: this code path counts tokens")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)


def weather_arguments(arguments: str) -> dict[str, Any]:
    """A tool call's arguments: a JSON object that matches the get_weather schema."""
    args = json.loads(arguments)
    jsonschema_rs.validate(CITY_SCHEMA, args)
    return args


# --- the openai SDK ---------------------------------------------------------------------------


@pytest.mark.parametrize("tool_choice", [FORCE_WEATHER, "required"], ids=["named", "required"])
def test_a_forced_tool_choice_returns_one_schema_valid_call(client, tool_choice):
    r = client.chat.completions.create(
        model=SMOLLM,
        messages=ASK_WEATHER,
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
        parallel_tool_calls=False,
        max_tokens=40,
        **GREEDY,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    weather_arguments(call.function.arguments)
    assert r.usage.completion_tokens > 0


def test_a_call_cut_off_by_max_tokens_leaks_no_markup(client):
    """Parallel calls allowed: SmolLM2 calls get_weather again and again until max_tokens cuts one
    off. The finished call is returned; the unfinished one is no call and no text either."""
    r = client.chat.completions.create(
        model=SMOLLM, messages=ASK_WEATHER, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=40, **GREEDY
    )
    choice = r.choices[0]
    assert choice.message.tool_calls and all(c.function.name == "get_weather" for c in choice.message.tool_calls)
    for call in choice.message.tool_calls:
        weather_arguments(call.function.arguments)
    assert "<tool_call>" not in (choice.message.content or "")
    assert r.usage.completion_tokens == 40 and choice.finish_reason == "length"


def test_streamed_tool_call_deltas_assemble_into_the_call(client):
    """Assembled by hand, as clients without the SDK's helpers do: by ``index``, the id and name
    from the first delta, the argument text concatenated."""
    calls: dict[int, dict[str, str]] = {}
    finish = None
    stream = client.chat.completions.create(
        model=SMOLLM,
        messages=ASK_WEATHER,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=40,
        stream=True,
        **GREEDY,
    )
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and list(calls) == [0]
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    weather_arguments(calls[0]["arguments"])


def test_the_sdk_stream_helper_parses_a_strict_tool_call(client):
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather", description="Get the current weather.")
    with client.chat.completions.stream(
        model=SMOLLM, messages=ASK_WEATHER, tools=[tool], tool_choice=FORCE_WEATHER, max_tokens=40, **GREEDY
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds and "tool_calls.function.arguments.done" in kinds
    (call,) = final.choices[0].message.tool_calls
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert call.function.parsed_arguments.city == weather_arguments(call.function.arguments)["city"]


def test_a_tool_result_round_trip_ends_in_an_answer(client):
    first = client.chat.completions.create(
        model=SMOLLM, messages=ASK_WEATHER, tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER, max_tokens=40, **GREEDY
    )
    (call,) = first.choices[0].message.tool_calls
    messages = [
        *ASK_WEATHER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": WEATHER_REPORT},
    ]
    # "none": the model must now answer in words (left to itself, a 135M model may call again)
    second = client.chat.completions.create(
        model=SMOLLM, messages=messages, tools=[WEATHER_TOOL], tool_choice="none", max_tokens=150, **GREEDY
    )
    answer = second.choices[0]
    assert answer.finish_reason == "stop" and not answer.message.tool_calls
    assert answer.message.content and answer.message.content.strip()
    alone = client.chat.completions.create(
        model=SMOLLM, messages=ASK_WEATHER, tools=[WEATHER_TOOL], tool_choice="none", max_tokens=1, **GREEDY
    )
    assert second.usage.prompt_tokens > alone.usage.prompt_tokens + 10  # the call and its result went in


def test_parse_returns_the_pydantic_object(client):
    messages = [{"role": "user", "content": "Which city is the capital of France? Reply in JSON."}]
    r = client.chat.completions.parse(model=SMOLLM, messages=messages, response_format=City, max_tokens=60, **GREEDY)
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(r.choices[0].message.parsed, City) and r.choices[0].message.parsed.city


def test_json_object_mode_returns_parseable_json(client):
    messages = [{"role": "user", "content": 'Give the capital of France as a JSON object with the key "city".'}]
    r = client.chat.completions.create(
        model=SMOLLM, messages=messages, response_format={"type": "json_object"}, max_tokens=60, **GREEDY
    )
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_greedy_logprobs_put_the_chosen_token_first(client):
    # no repetition penalty: the token picked is then the most likely one however logprobs are taken
    r = client.chat.completions.create(
        model=SMOLLM,
        messages=ASK_CAPITAL,
        logprobs=True,
        top_logprobs=3,
        max_tokens=6,
        extra_body={"repeat_penalty": 1.0},
        **GREEDY,
    )
    choice = r.choices[0]
    tokens = choice.logprobs.content
    assert len(tokens) == r.usage.completion_tokens == 6
    assert "".join(t.token for t in tokens) == choice.message.content
    for t in tokens:
        assert len(t.top_logprobs) == 3
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == pytest.approx(t.logprob)
        alternatives = [a.logprob for a in t.top_logprobs]
        assert alternatives == sorted(alternatives, reverse=True) and all(lp <= 0 for lp in alternatives)
        assert t.bytes is None or bytes(t.bytes).decode("utf-8", "replace")


def test_n_returns_that_many_choices(client):
    r = client.chat.completions.create(model=SMOLLM, messages=ASK_CAPITAL, n=2, max_tokens=8, **GREEDY)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content for c in r.choices)


def test_include_usage_sends_a_last_chunk_with_the_usage(client):
    chunks = list(
        client.chat.completions.create(
            model=SMOLLM,
            messages=ASK_CAPITAL,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
            **GREEDY,
        )
    )
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 8 or body[-1].choices[0].finish_reason == "stop"
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in body) and body[-1].choices[0].finish_reason


def test_max_completion_tokens_limits_the_reply(client):
    messages = [{"role": "user", "content": "Write a long story about a dragon."}]
    r = client.chat.completions.create(model=SMOLLM, messages=messages, max_completion_tokens=3, **GREEDY)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3


def test_content_as_a_list_of_text_parts(client):
    parts = [
        {"type": "text", "text": "What is the capital of France?"},
        {"type": "text", "text": "Answer in one sentence."},
    ]
    r = client.chat.completions.create(
        model=SMOLLM, messages=[{"role": "user", "content": parts}], max_tokens=30, **GREEDY
    )
    assert "Paris" in r.choices[0].message.content


def test_models_retrieve_and_an_unknown_model(client):
    model = client.models.retrieve(SMOLLM)
    assert model.id == SMOLLM and model.object == "model"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-model.gguf")
    error = missing.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "model_not_found"
    assert "no-such-model.gguf" in error["message"]


def test_too_many_top_logprobs_is_a_400(client, server):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=SMOLLM, messages=ASK_CAPITAL, logprobs=True, top_logprobs=1000, max_tokens=3
        )
    assert bad.value.status_code == 400 and "top_logprobs" in bad.value.message
    raw = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": SMOLLM, "messages": ASK_CAPITAL, "logprobs": True, "top_logprobs": 1000},
    )
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"}


# --- AutoGen ----------------------------------------------------------------------------------


def autogen_client(server, **create_args: Any):
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    # model_info: SMOLLM is no OpenAI model name, so AutoGen is told what it can do (and never
    # looks the name up in its own table, or in tiktoken's)
    return OpenAIChatCompletionClient(
        model=SMOLLM,
        base_url=server.url + "/v1",
        api_key="unused",
        max_retries=0,
        model_info={
            "vision": False,
            "function_calling": True,
            "json_output": True,
            "structured_output": True,
            "family": "unknown",
            "multiple_system_messages": False,
        },
        max_tokens=60,
        temperature=0,
        seed=1,
        **create_args,
    )


def run_in_own_loop(coro: Any) -> Any:
    """Run ``coro`` on a fresh event loop in a thread of its own: in a full run the browser tests'
    Playwright leaves an event loop running in the main thread, where asyncio.run() refuses."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=600)


def test_autogen_model_client_calls_a_named_tool_and_parses_structured_output(server):
    from autogen_core.models import UserMessage
    from autogen_core.tools import FunctionTool

    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return WEATHER_REPORT

    async def run() -> tuple[Any, Any]:
        model_client = autogen_client(server)
        tool = FunctionTool(get_weather, description="Get the current weather in a city.")
        try:
            called = await model_client.create(
                [UserMessage(content=ASK_WEATHER[0]["content"], source="user")], tools=[tool], tool_choice=tool
            )
            structured = await model_client.create(
                [UserMessage(content="Which city is the capital of France? Reply in JSON.", source="user")],
                json_output=City,
            )
        finally:
            await model_client.close()
        return called, structured

    called, structured = run_in_own_loop(run())
    assert called.finish_reason == "function_calls"
    (call,) = called.content
    assert call.name == "get_weather" and call.id
    weather_arguments(call.arguments)
    assert isinstance(City.model_validate_json(structured.content), City)


def test_autogen_agent_runs_its_tool(server):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.messages import ToolCallExecutionEvent, ToolCallRequestEvent

    cities: list[str] = []

    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        cities.append(city)
        return f"{city}: {WEATHER_REPORT}"

    async def run() -> Any:
        # AssistantAgent always asks with tool_choice "auto"; extra_body (which the openai SDK puts
        # over the body's own fields) makes it "required", as the model would not call by itself
        model_client = autogen_client(server, extra_body={"tool_choice": "required"})
        agent = AssistantAgent("assistant", model_client=model_client, tools=[get_weather])
        try:
            return await agent.run(task="What is the weather like in Paris today?")
        finally:
            await model_client.close()

    result = run_in_own_loop(run())
    assert len(cities) == 1 and cities[0]
    requests = [m for m in result.messages if isinstance(m, ToolCallRequestEvent)]
    executions = [m for m in result.messages if isinstance(m, ToolCallExecutionEvent)]
    assert requests and requests[0].content[0].name == "get_weather"
    assert executions and WEATHER_REPORT in executions[0].content[0].content
    assert not executions[0].content[0].is_error
    assert WEATHER_REPORT in result.messages[-1].to_text()


# --- LangChain --------------------------------------------------------------------------------


def langchain_model(server):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=server.url + "/v1",
        api_key="unused",
        model=SMOLLM,
        temperature=0,
        seed=1,
        max_tokens=60,
        max_retries=0,
        use_responses_api=False,
    )


@pytest.mark.parametrize("tool_choice", ["get_forecast", "any"])
def test_langchain_bound_tool_is_called_with_typed_args(server, tool_choice):
    from langchain_core.tools import tool

    @tool
    def get_forecast(city: str, days: int) -> str:
        """Get the weather forecast for a city for a number of days."""
        return WEATHER_REPORT

    message = (
        langchain_model(server)
        # one call: with parallel calls allowed, a 135M model repeats the call until max_tokens
        .bind_tools([get_forecast], tool_choice=tool_choice, parallel_tool_calls=False)
        .invoke("What will the weather be like in Paris for the next 3 days?")
    )
    (call,) = message.tool_calls
    assert call["name"] == "get_forecast" and call["id"]
    assert isinstance(call["args"]["city"], str) and isinstance(call["args"]["days"], int)
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert get_forecast.invoke(call).content == WEATHER_REPORT  # the call runs as LangChain hands it over


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output(server, method):
    structured = langchain_model(server).with_structured_output(City, method=method)
    answer = structured.invoke("Which city is the capital of France? Reply in JSON.")
    assert isinstance(answer, City) and answer.city


# --- instructor -------------------------------------------------------------------------------


# Mode.JSON is left out: it asks for json_object (any JSON) and puts the schema in the prompt, and
# SmolLM2-135M answers with a copy of the schema ({"city": {"title": ..., "type": "string"}}).
@pytest.mark.parametrize("mode", ["JSON_SCHEMA", "TOOLS"])
def test_instructor_returns_a_validated_object(server, mode):
    import instructor

    patched = instructor.from_openai(
        openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0), mode=instructor.Mode[mode]
    )
    city = patched.chat.completions.create(
        model=SMOLLM,
        response_model=City,
        messages=[{"role": "user", "content": "The capital of France is Paris. Extract the city."}],
        max_retries=1,
        max_tokens=60,
        **GREEDY,
    )
    assert isinstance(city, City) and city.city
