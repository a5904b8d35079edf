"""Tool-call formats: parsing whole replies and streams, detection from templates, grammars checked with
llama.cpp's own grammar engine on SmolLM2's vocabulary, and one real constrained generation."""

from __future__ import annotations

import ctypes
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import llama_cpp
import pytest

from testdata import MODELS_DIR, SMOLLM
from webui.agents.formats import (
    FORMAT_NAMES,
    ToolFormat,
    detect_format,
    format_by_name,
    template_handles_tools,
    tools_system_text,
)
from webui.agents.formats_base import collect
from webui.agents.types import ParsedReply, ToolCall, ToolChoice, ToolSpec
from webui.errors import SchemaError, SettingsError
from webui.templates.chat_template import ChatTemplate

TEMPLATES = Path(__file__).resolve().parent.parent / "data" / "templates"

WEATHER = ToolSpec(
    "get_weather",
    "Current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]},
)
SEARCH = ToolSpec(
    "search", "Search the web.", {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
)
TOOLS = [WEATHER, SEARCH]

PARIS = ("get_weather", {"city": "Paris"})
TWO = [("get_weather", {"city": "Paris", "days": 2}), ("search", {"q": 'café "open"'})]

# (format, model output, expected content, expected calls)
SAMPLES: list[tuple[str, str, str, list[tuple[str, dict[str, Any]]]]] = [
    # Hermes / Qwen
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', "", [PARIS]),
    (
        "hermes",
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n'
        '</tool_call>\n<tool_call>\n{"name": "search", "arguments": {"q": "café \\"open\\""}}\n</tool_call>',
        "Let me check.",
        TWO,
    ),
    ("hermes", 'A\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\nB', "A\nB", [PARIS]),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par', None, []),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>', None, []),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n', None, []),
    ("hermes", "Plain answer, no calls. 2 < 3 and <tool_ is not a marker.\n", None, []),
    # Llama 3.x
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [PARIS]),
    (
        "llama3",
        '\n{"type": "function", "name": "get_weather", "parameters": {"city": "Paris", "days": 2}}; '
        '{"name": "search", "arguments": {"q": "café \\"open\\""}}',
        "",
        TWO,
    ),
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [PARIS]),
    (
        "llama3",
        'Sure.<|python_tag|>brave_search.call(query="weather in Paris")',
        "Sure.",
        [("brave_search", {"query": "weather in Paris"})],
    ),
    ("llama3", 'Here is JSON: {"name": "Bob", "parameters": {}}', None, []),
    ("llama3", '{"name": "Bob", "age": 3}', None, []),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"', None, []),
    # Mistral
    (
        "mistral",
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}]',
        "",
        [PARIS],
    ),
    (
        "mistral",
        'Checking. [TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}, '
        '{"name": "search", "arguments": {"q": "café \\"open\\""}}]',
        "Checking.",
        TWO,
    ),
    ("mistral-args", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', "", [PARIS]),
    (
        "mistral-args",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "days": 2}[TOOL_CALLS]search[CALL_ID]a1b2c3d4e[ARGS]'
        '{"q": "café \\"open\\""}',
        "",
        TWO,
    ),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}', None, []),
    # DeepSeek
    (
        "deepseek",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "",
        [PARIS],
    ),
    (
        "deepseek",
        "I'll look.\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Paris", "days": 2}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>search\n'
        '```json\n{"q": "café \\"open\\""}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "I'll look.",
        TWO,
    ),
    (
        "deepseek-v3.1",
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜>',
        "",
        [PARIS],
    ),
    ("deepseek", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{", None, []),
    # GLM
    (
        "glm",
        "\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
        "",
        [PARIS],
    ),
    (
        "glm",
        "On it.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>"
        '\n<arg_value>2</arg_value>\n</tool_call>\n<tool_call>search\n<arg_key>q</arg_key>\n<arg_value>café "open"'
        "</arg_value>\n</tool_call>",
        "On it.",
        TWO,
    ),
    ("glm", "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Par", None, []),
    # Kimi K2
    (
        "kimi",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
        '{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>',
        "",
        [PARIS],
    ),
    (
        "kimi",
        "Sure.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
        '{"city": "Paris", "days": 2}<|tool_call_end|><|tool_call_begin|>functions.search:1'
        '<|tool_call_argument_begin|>{"q": "café \\"open\\""}<|tool_call_end|><|tool_calls_section_end|>',
        "Sure.",
        TWO,
    ),
    (
        "kimi",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{",
        None,
        [],
    ),
    # Gemma
    ("gemma", '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>', "", [PARIS]),
    (
        "functiongemma",
        "Sure.<start_function_call>call:get_weather{city:<escape>Paris<escape>,days:2}<end_function_call>"
        '<start_function_call>call:search{q:<escape>café "open"<escape>}<end_function_call>',
        "Sure.",
        TWO,
    ),
    ("functiongemma", "<start_function_call>call:get_weather{city:<escape>Paris", None, []),
    # gpt-oss (harmony)
    (
        "harmony",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>',
        "",
        [PARIS],
    ),
    (
        "harmony",
        "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}',
        "<|channel|>analysis<|message|>Need weather.<|end|>",
        [PARIS],
    ),
    (
        "harmony",
        ' to=functions.get_weather<|channel|>commentary json<|message|>{"city":"Paris"}<|call|>',
        "",
        [PARIS],
    ),
    ("harmony", "<|channel|>final<|message|>Hello!", None, []),
    ("harmony", '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":', None, []),
]


def _ids(sample: tuple[str, str, Any, Any]) -> str:
    return f"{sample[0]}:{sample[1][:30]!r}"


def _calls(reply: ParsedReply) -> list[tuple[str, Any]]:
    return [(call.name, json.loads(call.arguments)) for call in reply.tool_calls]


@pytest.mark.parametrize("sample", SAMPLES, ids=_ids)
def test_parse(sample: tuple[str, str, str | None, list[tuple[str, dict[str, Any]]]]) -> None:
    name, text, content, calls = sample
    reply = format_by_name(name).parse(text)
    # None: the output does not parse, so all of it stays content
    assert reply.content == (text if content is None else content)
    assert _calls(reply) == calls
    for call in reply.tool_calls:
        assert call.arguments == json.dumps(json.loads(call.arguments), ensure_ascii=False, separators=(",", ":"))
        assert call.id


def _streamed(fmt: ToolFormat, pieces: Iterator[str]) -> ParsedReply:
    parser = fmt.stream()
    events = [event for piece in pieces for event in parser.feed(piece)]
    return collect([*events, *parser.finish()])


@pytest.mark.parametrize("sample", SAMPLES, ids=_ids)
def test_stream_adds_up_to_parse_at_every_split(sample: tuple[str, str, Any, Any]) -> None:
    fmt = format_by_name(sample[0])
    text = sample[1]
    whole = fmt.parse(text)
    for cut in range(len(text) + 1):
        got = _streamed(fmt, iter((text[:cut], text[cut:])))
        assert (got.content, _calls(got)) == (whole.content, _calls(whole)), cut
    one_by_one = _streamed(fmt, iter(text))
    assert (one_by_one.content, _calls(one_by_one)) == (whole.content, _calls(whole))


def test_stream_holds_back_a_partial_marker_and_releases_plain_text() -> None:
    parser = format_by_name("hermes").stream()
    assert [e.content for e in parser.feed("Hello <tool_")] == ["Hello"]
    assert [e.content for e in parser.feed("cat> there")] == [" <tool_cat> there"]
    events = parser.feed('\n<tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call>')
    assert [(e.index, e.name, e.arguments) for e in events] == [(0, "search", ""), (0, None, '{"q":"x"}')]
    assert events[0].id and events[0].id.startswith("call_")
    assert parser.finish() == []


def test_stream_gives_an_unfinished_call_back_as_content_at_finish() -> None:
    parser = format_by_name("hermes").stream()
    text = 'Hi <tool_call>{"name": "search", "arguments": {"q": '
    shown = "".join(e.content for e in parser.feed(text))
    assert shown == "Hi"
    rest = parser.finish()
    assert shown + "".join(e.content for e in rest) == text
    assert all(e.index is None for e in rest)


def test_ids_follow_the_family() -> None:
    kimi = format_by_name("kimi").parse(
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.search:3<|tool_call_argument_begin|>{}"
        "<|tool_call_end|><|tool_calls_section_end|>"
    )
    assert kimi.tool_calls[0].id == "functions.search:3"
    mistral = format_by_name("mistral").parse('[TOOL_CALLS][{"name": "search", "arguments": {}}]')
    assert len(mistral.tool_calls[0].id) == 9 and mistral.tool_calls[0].id.isalnum()
    kept = format_by_name("mistral").parse('[TOOL_CALLS][{"name": "search", "arguments": {}, "id": "abcDEF123"}]')
    assert kept.tool_calls[0].id == "abcDEF123"


def test_glm_types_values_by_the_tools_schema() -> None:
    text = "<tool_call>search\n<arg_key>q</arg_key>\n<arg_value>123</arg_value>\n</tool_call>"
    glm = format_by_name("glm")
    assert json.loads(glm.parse(text).tool_calls[0].arguments) == {"q": 123}
    assert json.loads(glm.parse(text, tools=[SEARCH]).tool_calls[0].arguments) == {"q": "123"}


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_render_then_parse_round_trips(name: str) -> None:
    fmt = format_by_name(name)
    calls = [ToolCall("get_weather", '{"city":"São Paulo","days":3}'), ToolCall("search", '{"q":"a, b: [c]"}')]
    if not fmt.parallel_calls:
        calls = calls[:1]
    reply = fmt.parse(fmt.render_calls(calls))
    assert reply.content == ""
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [(c.name, c.arguments) for c in calls]


# -- detection ----------------------------------------------------------------------------------------------

DETECTED = {
    "qwen2.5.jinja": "hermes",
    "llama3.1.jinja": "llama3",
    "mistral-nemo.jinja": "mistral",
    "ministral-3.jinja": "mistral-args",
    "deepseek-r1.jinja": "deepseek",
    "deepseek-v3.1.jinja": "deepseek-v3.1",
    "glm-4.5.jinja": "glm",
    "kimi-k2.jinja": "kimi",
    "gpt-oss.jinja": "harmony",
    "functiongemma.jinja": "functiongemma",
    "gemma-4.jinja": "gemma",
}


@pytest.mark.parametrize("filename", sorted(DETECTED))
def test_detects_the_format_from_the_template(filename: str) -> None:
    source = (TEMPLATES / filename).read_text(encoding="utf-8")
    assert detect_format(source).name == DETECTED[filename]
    # DeepSeek's templates write past calls but never describe the tools (the system text does that).
    assert template_handles_tools(source) == (not filename.startswith("deepseek"))
    ChatTemplate.compile(source, filename)  # each is a real template, not just a bag of markers


def test_detection_falls_back_to_hermes() -> None:
    assert detect_format(None).name == "hermes"
    assert detect_format("{{ messages }}").name == "hermes"
    kimi = (TEMPLATES / "kimi-k2.jinja").read_text(encoding="utf-8")
    assert detect_format(None, {"tokenizer.chat_template": kimi}).name == "kimi"


def test_format_by_name_refuses_an_unknown_name() -> None:
    with pytest.raises(SettingsError, match="hermes"):
        format_by_name("nope")


def test_template_renders_the_tools_it_reads() -> None:
    source = (TEMPLATES / "qwen2.5.jinja").read_text(encoding="utf-8")
    prompt = ChatTemplate.compile(source, "qwen").render(
        [{"role": "user", "content": "Weather?"}], tools=[WEATHER.openai()]
    )
    assert '"name": "get_weather"' in prompt and "<tool_call>" in prompt


# -- real model pieces: SmolLM2's vocabulary and template ------------------------------------------------


@pytest.fixture(scope="module")
def vocab_model() -> Iterator[llama_cpp.Llama]:
    llm = llama_cpp.Llama(model_path=str(MODELS_DIR / SMOLLM), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def test_smollm2_template_does_not_handle_tools(vocab_model: llama_cpp.Llama) -> None:
    source = vocab_model.metadata["tokenizer.chat_template"]
    assert not template_handles_tools(source)
    assert detect_format(source).name == "hermes"


def _accepts(llm: llama_cpp.Llama, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets ``text`` (as SmolLM2 tokens) through, then lets it end."""
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode(), b"root")
    assert sampler, "llama.cpp refused the grammar"
    data = (llama_cpp.llama_token_data * 1)()
    candidates = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)

    def allowed(token: int) -> bool:
        data[0].id, data[0].logit, data[0].p = token, 0.0, 0.0
        candidates.size, candidates.selected = 1, -1
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
        return bool(data[0].logit != float("-inf"))

    try:
        for token in llm.tokenize(text.encode(), add_bos=False, special=False):
            if not allowed(token):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return allowed(llm.token_eos())
    finally:
        llama_cpp.llama_sampler_free(sampler)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_grammar_accepts_the_formats_own_calls_and_nothing_else(name: str, vocab_model: llama_cpp.Llama) -> None:
    fmt = format_by_name(name)
    grammar = fmt.grammar(TOOLS, ToolChoice("required"), parallel=True)
    llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
    one = fmt.render_call(ToolCall("get_weather", '{"city":"Paris","days":2}'))
    assert _accepts(vocab_model, grammar, one)
    # A lazy grammar applies from where a trigger matches (group 1 when there is one): from there on
    # the text must be in the grammar's language too.
    matches = [m for m in (re.search(pattern, one) for pattern in fmt.triggers) if m]
    assert matches
    start = min(m.start(1) if m.re.groups else m.start() for m in matches)
    assert _accepts(vocab_model, grammar, one[start:])
    if fmt.parallel_calls:
        two = fmt.render_calls([ToolCall("get_weather", '{"city":"Paris"}'), ToolCall("search", '{"q":"x"}')])
        assert _accepts(vocab_model, grammar, two)
        single = fmt.grammar(TOOLS, ToolChoice("required"), parallel=False)
        assert not _accepts(vocab_model, single, two)
    assert not _accepts(vocab_model, grammar, fmt.render_call(ToolCall("get_wether", '{"city":"Paris"}')))
    assert not _accepts(vocab_model, grammar, fmt.render_call(ToolCall("get_weather", '{"town":"Paris"}')))
    only_search = fmt.grammar(TOOLS, ToolChoice("function", "search"), parallel=False)
    assert not _accepts(vocab_model, only_search, one)
    assert _accepts(vocab_model, only_search, fmt.render_call(ToolCall("search", '{"q":"x"}')))


def test_grammar_needs_a_tool_to_call() -> None:
    hermes = format_by_name("hermes")
    with pytest.raises(SchemaError):
        hermes.grammar([], ToolChoice(), parallel=False)
    with pytest.raises(SchemaError, match="nope"):
        hermes.grammar(TOOLS, ToolChoice("function", "nope"), parallel=False)
    with pytest.raises(SchemaError):
        hermes.grammar(TOOLS, ToolChoice("none"), parallel=False)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_tools_system_text_describes_tools_and_the_exact_call(name: str) -> None:
    fmt = format_by_name(name)
    text = tools_system_text(TOOLS, fmt)
    assert "get_weather" in text and "Current weather in a city." in text and '"required": ["city"]' in text
    example = fmt.render_call(ToolCall("get_weather", '{"city":"..."}'))
    assert example in text
    assert _calls(fmt.parse(example)) == [("get_weather", {"city": "..."})]


def test_constrained_generation_on_smollm2_makes_a_valid_hermes_call() -> None:
    tool = ToolSpec(
        "get_weather",
        "Get the current weather for a city.",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    fmt = format_by_name("hermes")
    llm = llama_cpp.Llama(model_path=str(MODELS_DIR / SMOLLM), n_ctx=1024, verbose=False)
    try:
        template = ChatTemplate.compile(llm.metadata["tokenizer.chat_template"], "smollm2")
        prompt = template.render(
            [
                {"role": "system", "content": tools_system_text([tool], fmt)},
                {"role": "user", "content": "What is the weather in Paris?"},
            ]
        )
        grammar = llama_cpp.LlamaGrammar.from_string(fmt.grammar([tool], ToolChoice("required"), False), verbose=False)
        out = llm.create_completion(prompt, max_tokens=60, temperature=0.0, grammar=grammar)
    finally:
        llm.close()
    text = out["choices"][0]["text"]  # type: ignore[index]
    reply = fmt.parse(text)
    assert len(reply.tool_calls) == 1, text
    assert reply.tool_calls[0].name == "get_weather"
    jsonschema_rs.validate(tool.parameters, json.loads(reply.tool_calls[0].arguments))
