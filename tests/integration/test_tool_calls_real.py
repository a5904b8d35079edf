"""Tool calls through the request engine on both local loaders, on real SmolLM2 weights.

The API tests drive llama.cpp through the openai client; these run the same engine (template with
the tools described, the format's grammar, the assembler) on the transformers checkpoint too, and
the lazy grammar of ``tool_choice: auto`` on llama.cpp.
"""

from __future__ import annotations

import json

import pytest

from webui.agents.engine import ChatRequest, ReplyAssembler, chat_prepare
from webui.agents.types import ToolChoice, ToolSpec
from webui.generation.scheduler import Generator
from webui.models.manager import LoadedModel, ModelManager
from webui.params import LoadOptions, SamplingParams
from webui.structured.schema import validate
from webui.templates.chat_template import InstructionTemplateStore, choose_template

pytestmark = pytest.mark.integration
WEATHER = ToolSpec(
    "get_weather",
    "Get the current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
GREEDY = SamplingParams(do_sample=False, max_tokens=60, seed=1)


def template_for(store: InstructionTemplateStore):
    def choose(loaded: LoadedModel):
        b = loaded.backend
        return choose_template(b.chat_template, None, store, b.metadata)

    return choose


def run(generator: Generator, store, request: ChatRequest):
    job = generator.submit(params=GREEDY, prepare=chat_prepare(template_for(store), request))
    assembler = ReplyAssembler(job)
    for chunk in job:
        assembler.feed(chunk)
    assembler.finish()
    return assembler.reply, job


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return InstructionTemplateStore(tmp_path_factory.mktemp("templates"))


@pytest.fixture(scope="module", params=["llama.cpp", "transformers"])
def generator(request, smollm_path, hf_checkpoint):
    if request.param == "llama.cpp":
        models = ModelManager(smollm_path.parent, LoadOptions(n_ctx=2048))
        models.load(smollm_path.name)
    else:
        models = ModelManager(hf_checkpoint.parent, LoadOptions(n_ctx=2048))
        models.load(hf_checkpoint.name)
    yield Generator(models)
    models.unload()


@pytest.mark.parametrize("choice", [ToolChoice("required"), ToolChoice("function", "get_weather")])
def test_a_forced_call_parses_and_matches_its_schema(generator, store, choice):
    # one call (a 135M model given room for several repeats the same one until max_tokens)
    request = ChatRequest(ASK, tools=[WEATHER], tool_choice=choice, parallel_tool_calls=False)
    reply, job = run(generator, store, request)
    assert reply.finish_reason == "tool_calls", (reply, job.text)
    (call,) = reply.tool_calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    args = json.loads(call.arguments)
    assert validate(WEATHER.parameters, args) == [] and "paris" in args["city"].lower()
    # SmolLM2's template does not read tools: they were described in the system message
    assert "get_weather" in job.prepared.prompt and "<tool_call>" in job.prepared.prompt


def test_a_result_goes_back_and_the_model_answers(generator, store):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    history = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny and 24 degrees."},
    ]
    reply, job = run(generator, store, ChatRequest(history, tools=[WEATHER], tool_choice=ToolChoice("none")))
    assert reply.finish_reason in ("stop", "length") and not reply.tool_calls
    assert reply.content.strip()
    assert "Sunny and 24 degrees." in job.prepared.prompt


def test_auto_lets_the_model_write_text_or_a_valid_call(generator, store):
    chatty = [{"role": "user", "content": "Hello! How are you?"}]
    reply, _ = run(generator, store, ChatRequest(chatty, tools=[WEATHER]))
    for call in reply.tool_calls:  # whatever it chose, a call that comes out is a valid one
        assert validate(WEATHER.parameters, json.loads(call.arguments)) == []
    assert reply.content.strip() or reply.tool_calls
    assert "<tool_call>" not in reply.content


@pytest.fixture(scope="module")
def transformers_api(hf_checkpoint, tmp_path_factory):
    """server.py with the transformers checkpoint, asked through the official openai client."""
    import openai

    from harness import start_server, stop_server

    root = tmp_path_factory.mktemp("hf-api")
    user = root / "user"
    user.mkdir()
    srv = start_server(root, hf_checkpoint.parent, user, "--api", "--model", hf_checkpoint.name, ctx_size=2048)
    yield openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    stop_server(srv)


OPENAI_WEATHER = {"type": "function", "function": {"name": WEATHER.name, "parameters": WEATHER.parameters}}


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_client_gets_a_forced_call_from_the_transformers_loader(transformers_api, stream):
    force = {"type": "function", "function": {"name": "get_weather"}}
    body = dict(model="m", messages=ASK, tools=[OPENAI_WEATHER], tool_choice=force, temperature=0, max_tokens=60)
    if stream:
        with transformers_api.chat.completions.stream(**body) as events:
            for _ in events:
                pass
            completion = events.get_final_completion()
    else:
        completion = transformers_api.chat.completions.create(**body)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert validate(WEATHER.parameters, json.loads(call.function.arguments)) == []
