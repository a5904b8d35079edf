"""Chat templates: compiled once, rendered in a sandbox whose work is bounded."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from testdata import PROJECT_DIR
from webui.errors import ConversationRejectedError, InvalidNameError, SettingsError, TemplateError, UnsafeTemplateError
from webui.templates import chat_template as templates
from webui.templates.chat_template import (
    FALLBACK_TEMPLATE_NAME,
    ChatTemplate,
    InstructionTemplateStore,
    RenderLimits,
    choose_template,
)

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "What is 2+2?"},
]
SHIPPED = ["Alpaca", "ChatML", "Gemma", "Llama-3", "Mistral", "Vicuna"]
# Small limits keep the "too much work" cases fast; the caps are the same code either way.
SMALL = RenderLimits(
    max_range=1000, max_steps=20_000, max_value_size=100_000, max_output_chars=200_000, max_seconds=2.0
)
# A real model template (SmolLM2's), used where "the model's own template" is needed.
MODEL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture
def shipped() -> InstructionTemplateStore:
    return InstructionTemplateStore(PROJECT_DIR / "instruction-templates")


def render(source: str, messages: list[dict] | None = None, limits: RenderLimits = RenderLimits(), **kw) -> str:
    return ChatTemplate.compile(source, "t", limits=limits).render(messages or CONVERSATION, **kw)


# -- compiling and rendering ----------------------------------------------------------------------


def test_compiles_once_and_renders_many_times(monkeypatch):
    parses = []
    original = templates._GuardedEnvironment._parse

    def counting(self, *args):
        parses.append(args)
        return original(self, *args)

    monkeypatch.setattr(templates._GuardedEnvironment, "_parse", counting)
    tpl = ChatTemplate.compile(MODEL_TEMPLATE, "smol")
    compiled = tpl._template
    first, second = tpl.render(CONVERSATION), tpl.render(CONVERSATION)
    assert first == second
    assert len(parses) == 1 and tpl._template is compiled
    assert (tpl.name, tpl.source) == ("smol", MODEL_TEMPLATE)


def test_shipped_templates_are_listed(shipped):
    assert shipped.names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_template_renders_a_conversation(shipped, name):
    text = shipped.load(name).render(CONVERSATION, bos_token="<BOS>", eos_token="<EOS>")
    positions = [text.find(m["content"]) for m in CONVERSATION]
    assert -1 not in positions and positions == sorted(positions), text
    without = shipped.load(name).render(CONVERSATION, add_generation_prompt=False)
    assert len(without) < len(text) or name == "Mistral"  # Mistral's [/INST] already is the prompt


def test_chatml_renders_the_exact_format(shipped):
    assert shipped.load("ChatML").render(CONVERSATION) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_formats_that_use_bos_and_eos(shipped):
    llama = shipped.load("Llama-3").render(CONVERSATION[1:2], bos_token="<|begin_of_text|>")
    assert llama == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    gemma = shipped.load("Gemma").render(CONVERSATION, bos_token="<bos>")
    assert gemma == (
        "<bos><start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
    )
    mistral = shipped.load("Mistral").render(CONVERSATION, bos_token="<s>", eos_token="</s>")
    assert mistral == "<s>[INST] You are terse.\n\nHi there [/INST]Hello!</s>[INST] What is 2+2? [/INST]"


def test_hugging_face_helpers():
    assert render("{{ {'a': '<b>&'}|tojson }}") == '{"a": "<b>&"}'  # no HTML escaping
    assert re.fullmatch(r"\d{4}", render("{{ strftime_now('%Y') }}"))
    assert (
        render(
            "{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
            "{% generation %}{{ m.content }}|{% endgeneration %}{% endfor %}"
        )
        == "You are terse.|Hi there|"
    )
    assert render("{{ date_string }}/{{ bos_token }}", date_string="today", bos_token="<s>") == "today/<s>"


def test_raise_exception_rejects_the_conversation():
    source = (
        "{% if messages[0]['role'] != 'user' %}"
        "{{ raise_exception('Conversation must start with the user') }}{% endif %}"
    )
    with pytest.raises(ConversationRejectedError, match="Conversation must start with the user") as info:
        render(source)
    assert info.value.code == "conversation_rejected" and info.value.status_code == 400
    assert render(source, CONVERSATION[1:2]) == ""


def test_syntax_error_names_the_template_and_line():
    with pytest.raises(TemplateError, match=r"'broken' has a syntax error on line 2") as info:
        ChatTemplate.compile("{% for m in messages %}\n{{ m['content'] }\n{% endfor %}", "broken")
    assert type(info.value) is TemplateError and info.value.code == "invalid_template"
    with pytest.raises(TemplateError, match="empty"):
        ChatTemplate.compile("  ", "blank")


def test_runtime_error_names_the_line():
    with pytest.raises(TemplateError, match=r"failed on line 2: ZeroDivisionError") as info:
        render("ok\n{{ 1 // 0 }}")
    assert type(info.value) is TemplateError and info.value.code == "invalid_template"


def test_renders_from_many_threads_at_once():
    tpl = ChatTemplate.compile(MODEL_TEMPLATE, "smol")
    expected = tpl.render(CONVERSATION)
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda _: tpl.render(CONVERSATION), range(40))) == {expected}


def test_a_long_conversation_is_not_refused():
    # The caps grow with the input, so a huge context's worth of text still renders.
    messages = [{"role": "user", "content": "x" * 3_000_000}]
    assert len(render(MODEL_TEMPLATE, messages)) > 3_000_000


# -- hostile templates ------------------------------------------------------------------------------

NS_LOOP = "{% set ns = namespace(s='ab', l=[1]) %}{% for i in range(64) %}"
UNSAFE = {
    "mro": "{{ ''.__class__.__mro__ }}",
    "class": "{{ ''.__class__ }}",
    "cycler globals": "{{ cycler.__init__.__globals__ }}",
    "lipsum globals": "{{ lipsum.__globals__['os'] }}",
    "joiner globals": "{{ joiner.__init__.__globals__ }}",
    "namespace globals": "{{ namespace.__init__.__globals__ }}",
    "namespace dunder set": "{% set ns = namespace() %}{% set ns.__class__ = 1 %}",
    "namespace underscore kwarg": "{{ namespace(_x=1) }}",
    "raise_exception globals": "{{ raise_exception.__globals__ }}",
    "self": "{{ self.__init__ }}",
    "attr filter": "{{ ''|attr('__class__') }}",
    "format field": "{{ '{0.__class__}'.format('') }}",
    "mutate messages": "{{ messages.pop() }}",
    # runaway work
    "range": "{% for i in range(10**9) %}{% endfor %}",
    "huge range": "{{ range(10**30)|length }}",
    "string times": "{{ 'a' * 10**9 }}",
    "list times": "{{ [1] * 10**9 }}",
    "power": "{{ 10 ** (10 ** 9) }}",
    "squaring": "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
    "nested loops": "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
    "looping over characters": "{% for c in 'x' * 50000 %}{% endfor %}",
    "doubling with ~": NS_LOOP + "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "doubling with +": NS_LOOP + "{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "doubling a list": NS_LOOP + "{% set ns.l = [ns.l, ns.l] %}{% endfor %}",
    "set block": "{% set x %}{% for i in range(1000) %}{{ 'x' * 90000 }}{% endfor %}{% endset %}",
    "set block literal": "{% set x %}{% for i in range(1000) %}" + "y" * 5000 + "{% endfor %}{% endset %}",
    "output": "{% for i in range(1000) %}{{ 'x' * 50000 }}{% endfor %}",
    "% width": "{{ '%1000000000s' % 'x' }}",
    "% repeated key": "{{ ('%(a)s' * 1000) % {'a': 'x' * 1000} }}",
    "format width": "{{ '{:>1000000000}'.format('x') }}",
    "format width argument": "{{ '{:{}}'.format('x', 1000000000) }}",
    "center filter": "{{ 'x'|center(1000000000) }}",
    "ljust method": "{{ 'x'.ljust(10**9) }}",
    "replace filter": "{{ ('a' * 1000)|replace('', 'b' * 1000) }}",
    "replace method": "{{ ('x' * 1000).replace('x', 'y' * 1000) }}",
    "join method": "{{ ('y' * 1000).join(range(1000)|map('string')) }}",
    "join filter": "{{ range(1000)|map('string')|join('y' * 1000) }}",
    "indent": "{{ ('a\\n' * 10000)|indent('b' * 100) }}",
    "sum of lists": "{{ ([[1]] * 1000)|sum(start=[]) }}",
    "fromkeys": "{{ dict.fromkeys(range(1000), 'x' * 1000)|tojson }}",
    "tojson indent": "{{ messages|tojson(indent=1000000) }}",
    "batch fill": "{{ [1]|batch(10**9, 'x')|list }}",
    "lipsum": "{{ lipsum(1000000) }}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "exponential macro": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"
    ),
    "recursive loop": "{% for x in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}",
    "exponential recursive loop": "{% for x in range(30) recursive %}{{ loop(range(x)) }}{% endfor %}",
}


@pytest.mark.parametrize("source", UNSAFE.values(), ids=UNSAFE.keys())
def test_hostile_template_is_stopped(source):
    with pytest.raises(UnsafeTemplateError, match="unsafe template") as info:
        render(source, limits=SMALL)
    assert info.value.code == "unsafe_template"


@pytest.mark.parametrize(
    "source", ["{% for i in range(10**9) %}{% endfor %}", "{{ 'a' * 10**9 }}", "{{ ''.__class__.__mro__ }}"]
)
def test_hostile_template_is_stopped_with_default_limits(source):
    with pytest.raises(UnsafeTemplateError, match="unsafe template"):
        render(source)


def test_includes_and_imports_are_not_available():
    with pytest.raises(TemplateError):
        render("{% include 'secrets.txt' %}")


# -- choosing a template ----------------------------------------------------------------------------


def test_choose_override(shipped):
    template, note = choose_template(MODEL_TEMPLATE, "Llama-3", shipped)
    assert template.name == "Llama-3"
    assert note == "Using instruction template Llama-3 (override)."


def test_choose_the_models_own_template(shipped):
    template, note = choose_template(MODEL_TEMPLATE, None, shipped)
    assert template.source == MODEL_TEMPLATE
    assert note == "Using the model's own chat template."


@pytest.mark.parametrize("model_template", [None, "", "  \n"])
def test_choose_fallback_without_a_model_template(shipped, model_template):
    template, note = choose_template(model_template, None, shipped)
    assert template.name == FALLBACK_TEMPLATE_NAME == "ChatML"
    assert note == (
        "Base model: not trained to chat - use the Notebook or pick a template. Using instruction template ChatML."
    )


def test_a_servers_model_without_a_told_template_is_not_called_a_base_model(shipped):
    """The remote loader's model: a server that does not tell the template says nothing of the model (found by
    hand: a chat model behind such a server was called "not trained to chat")."""
    template, note = choose_template(None, None, shipped, {"remote.api": "/v1/completions"})
    assert template.name == "ChatML"
    assert "Base model" not in note and note.startswith("The server does not tell its model's chat template")


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"general.architecture": "gemma3", "general.basename": "gemma-3"}, "Gemma"),
        ({"general.architecture": "llama", "general.basename": "Meta-Llama-3.1"}, "Llama-3"),
        ({"general.architecture": "llama", "general.basename": "Llama-2"}, "ChatML"),
        ({"general.architecture": "llama", "general.name": "Llama-3.2-1B"}, "Llama-3"),
        ({"model_type": "mistral"}, "Mistral"),
        ({"general.architecture": "unknownarch"}, "ChatML"),
    ],
)
def test_a_base_model_falls_back_to_its_familys_template(shipped, metadata, expected):
    template, note = choose_template(None, None, shipped, metadata)
    assert template.name == expected and note.startswith("Base model: not trained to chat")


@pytest.mark.parametrize(
    ("name", "stops"),
    [
        ("ChatML", ["<|im_end|>\n<|im_start|>user", "<|im_end|>", "<|im_start|>"]),
        ("Gemma", ["<end_of_turn>\n<start_of_turn>user", "<end_of_turn>", "<start_of_turn>"]),
        (
            "Llama-3",
            [
                "<|eot_id|><|start_header_id|>user<|end_header_id|>",
                "<|eot_id|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
            ],
        ),
        ("Alpaca", ["### Instruction:"]),
    ],
)
def test_turn_markers_of_a_template_are_its_stop_strings(shipped, name, stops):
    # a base model writes these as text and then invents the user's turn: they must end the reply
    assert shipped.load(name).stop_strings == stops


def test_choose_fallback_for_an_unsafe_model_template(shipped):
    template, note = choose_template("{{ ''.__class__.__mro__ }}" + MODEL_TEMPLATE, None, shipped)
    assert template.name == "ChatML"
    assert "unsafe" in note and "'__class__'" in note and note.endswith("using instruction template ChatML instead.")


def test_choose_fallback_for_an_invalid_model_template(shipped):
    template, note = choose_template("{% for m in messages %}", None, shipped)
    assert template.name == "ChatML"
    assert "syntax error on line 1" in note and "ChatML" in note


def test_a_template_that_rejects_some_conversations_is_kept(shipped):
    no_system = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}" + MODEL_TEMPLATE
    )
    template, note = choose_template(no_system, None, shipped)
    assert template.source == no_system and note == "Using the model's own chat template."
    template, note = choose_template("{{ raise_exception('never') }}", None, shipped)
    assert template.name == "ChatML" and "never" in note


def test_a_missing_override_is_an_error_not_a_silent_fallback(shipped):
    with pytest.raises(SettingsError, match="no instruction template called 'Nope'"):
        choose_template(MODEL_TEMPLATE, "Nope", shipped)


# -- the store --------------------------------------------------------------------------------------


def test_store_names_skip_hidden_and_temp_files(tmp_path: Path):
    for name in ("b.yaml", "A.yaml", ".hidden.yaml", ".b.yaml.x.tmp", "notes.txt"):
        (tmp_path / name).write_text("instruction_template: x\n")
    assert InstructionTemplateStore(tmp_path).names() == ["A", "b"]
    assert InstructionTemplateStore(tmp_path / "missing").names() == []


def test_store_reports_malformed_yaml(tmp_path: Path):
    (tmp_path / "Bad.yaml").write_text("instruction_template: [unclosed\n")
    with pytest.raises(SettingsError, match="Bad.yaml is not valid YAML"):
        InstructionTemplateStore(tmp_path).load("Bad")


def test_store_reports_a_missing_key(tmp_path: Path):
    (tmp_path / "Old.yaml").write_text("user: 'USER:'\nbot: 'ASSISTANT:'\n")
    with pytest.raises(SettingsError, match="Old.yaml has no 'instruction_template' key"):
        InstructionTemplateStore(tmp_path).load("Old")


def test_store_reports_bad_jinja_by_template_name(tmp_path: Path):
    (tmp_path / "Broken.yaml").write_text("instruction_template: '{% if %}'\n")
    with pytest.raises(TemplateError, match="'Broken' has a syntax error on line 1"):
        InstructionTemplateStore(tmp_path).load("Broken")


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", ""])
def test_store_refuses_names_that_are_not_file_names(tmp_path: Path, name):
    with pytest.raises(InvalidNameError):
        InstructionTemplateStore(tmp_path).load(name)


def test_store_reports_an_unknown_name(tmp_path: Path):
    with pytest.raises(SettingsError, match="no instruction template called 'Ghost'"):
        InstructionTemplateStore(tmp_path).load("Ghost")
