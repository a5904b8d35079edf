"""Tool calls in chat turns (fast, on a scripted backend): parsed out of the reply, saved with it,
answered by results or Skips, the model's next reply sees them; round limit; wrong calls stay text.

The same loop on the real SmolLM2 (forced calls through the grammar) is in
tests/integration/test_chat_tools_real.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from fakes import FakeBackend
from webui.agents.types import ToolChoice, ToolSpec
from webui.chat.history import DECLINED, ChatStore
from webui.chat.prompt import Character, ChatOptions
from webui.chat.service import ChatService
from webui.errors import WebUIError
from webui.generation.scheduler import Generator
from webui.loaders import LoaderRegistry
from webui.loaders.base import Capabilities, Chunk, StreamExtras
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams
from webui.templates.chat_template import ChatTemplate
from webui.tools.types import ToolResult

CHATML = ChatTemplate.compile(
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "chatml",
)
CALC = ToolSpec(
    "calculate",
    "Evaluate an arithmetic expression.",
    {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
)
CALL_TEXT = '<tool_call>\n{"name": "calculate", "arguments": {"expression": "6*7"}}\n</tool_call>'


class ScriptedBackend(FakeBackend):
    """Answers each generation with the next text of ``script``; records prompts and grammars."""

    name: ClassVar[str] = "scripted"
    capabilities: ClassVar[Capabilities] = Capabilities(grammar=True, lazy_grammar=True)
    script: ClassVar[list[str]] = []
    seen: ClassVar[list[tuple[str, str, StreamExtras | None]]] = []

    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        self.seen.append((prompt, params.grammar_string, extras))
        text = self.script.pop(0)
        for i in range(0, len(text), 5):
            yield Chunk(text[i : i + 5], n_tokens=1)
        yield Chunk("", finish_reason="stop", prompt_tokens=len(prompt))


@pytest.fixture
def service(tmp_path, loaders):
    ScriptedBackend.script, ScriptedBackend.seen = [], []
    d = tmp_path / "models"
    d.mkdir()
    (d / "m.gguf").write_bytes(b"GGUF")
    registry = LoaderRegistry([*(loaders.get(n) for n in loaders), ScriptedBackend])
    models = ModelManager(d, LoadOptions(n_ctx=4000), loaders=registry)
    models.load("m.gguf", "scripted")
    return ChatService(Generator(models), ChatStore(tmp_path / "chats"), lambda loaded: (CHATML, ""))


def turn(service, chat, action, text="", **kw):
    t = service.turn(
        chat,
        action,
        text=text,
        character=Character("Assistant", ""),
        options=ChatOptions(system_prompt="Be brief."),
        params=SamplingParams(max_tokens=50),
        tools=kw.pop("tools", [CALC]),
        **kw,
    )
    t.result()
    return t


def test_a_call_is_parsed_saved_answered_and_the_next_reply_sees_the_result(service):
    ScriptedBackend.script = [f"Let me compute.\n{CALL_TEXT}", "It is 42."]
    chat = service.store.new("Assistant")
    first = turn(service, chat, "send", "What is 6 times 7?")
    assert first.text == "Let me compute." and [c.name for c in first.tool_calls] == ["calculate"]
    prompt, grammar, extras = ScriptedBackend.seen[0]
    assert "calculate" in prompt and "<tool_call>" in prompt  # described in the system message
    # the template has no tool role: the format's grammar applies from the call's start (lazy)
    assert extras is not None and extras.grammar_triggers and "calculate" in grammar
    saved = service.store.load("Assistant", chat.id)
    (call,) = saved.messages[-1].tool_calls
    assert call["function"]["name"] == "calculate" and json.loads(call["function"]["arguments"]) == {
        "expression": "6*7"
    }
    assert saved.pending_calls() == [call]
    with pytest.raises(WebUIError, match="Run or Skip"):
        turn(service, chat, "send", "hello?")

    service.resolve_call(chat, call["id"], ToolResult("42"))
    assert chat.pending_calls() == [] and chat.messages[-1].role == "tool" and chat.messages[-1].status == "done"
    second = turn(service, chat, "respond")
    assert second.text == "It is 42." and not second.tool_calls
    prompt = ScriptedBackend.seen[1][0]
    assert "Result of the tool calculate:\n42" in prompt and '"expression": "6*7"' in prompt
    saved = service.store.load("Assistant", chat.id)
    assert [m.role for m in saved.messages] == ["user", "assistant", "tool", "assistant"]
    raw = json.loads((service.store.folder / "Assistant" / f"{chat.id}.json").read_text())
    assert raw["internal"] == [["What is 6 times 7?", "Let me compute."], ["", "It is 42."]]


def test_skip_tells_the_model_the_user_declined(service):
    ScriptedBackend.script = [CALL_TEXT, "Fine, no calculator."]
    chat = service.store.new("Assistant")
    call = turn(service, chat, "send", "6*7?").tool_calls[0]
    service.resolve_call(chat, call.id, None)
    assert chat.messages[-1].content == DECLINED and chat.messages[-1].status == "skipped"
    turn(service, chat, "respond")
    assert DECLINED in ScriptedBackend.seen[-1][0]
    with pytest.raises(WebUIError, match="already been answered"):
        service.resolve_call(chat, call.id, ToolResult("late"))


def test_a_call_of_an_unknown_tool_or_with_wrong_arguments_stays_text(service):
    bad = '<tool_call>\n{"name": "calculate", "arguments": {"expr": 1}}\n</tool_call>'
    ScriptedBackend.script = [bad]
    chat = service.store.new("Assistant")
    t = turn(service, chat, "send", "6*7?")
    assert t.tool_calls == [] and "calculate" in t.text and "not valid" in t.notice
    assert chat.messages[-1].tool_calls == [] and chat.pending_calls() == []


def test_forcing_a_call_and_the_round_limit(service):
    ScriptedBackend.script = [CALL_TEXT, CALL_TEXT, "Done."]
    chat = service.store.new("Assistant")
    chat.tool_rounds = 2
    first = turn(service, chat, "send", "6*7?", tool_choice=ToolChoice("required"))
    _, grammar, extras = ScriptedBackend.seen[0]
    assert grammar and (extras is None or not extras.grammar_triggers)  # constrained from the first token
    service.resolve_call(chat, first.tool_calls[0].id, ToolResult("42"))
    second = turn(service, chat, "respond")
    service.resolve_call(chat, second.tool_calls[0].id, ToolResult("42"))
    third = turn(service, chat, "respond")  # two rounds used: no tools any more, and the user is told
    assert not ScriptedBackend.seen[-1][1] and "calculate" not in ScriptedBackend.seen[-1][0].split("user")[0]
    assert "limit of 2 rounds" in third.notice and third.text == "Done."


def test_regenerate_replaces_the_calls_and_tool_messages_survive_a_reload(service):
    ScriptedBackend.script = [CALL_TEXT, "Just 42."]
    chat = service.store.new("Assistant")
    turn(service, chat, "send", "6*7?")
    assert chat.pending_calls()
    turn(service, chat, "regenerate")
    assert chat.messages[-1].tool_calls == [] and chat.messages[-1].content == "Just 42."
    assert len(chat.messages[-1].versions) == 2
    reloaded = service.store.load("Assistant", chat.id)
    assert reloaded.messages[-1].content == "Just 42." and reloaded.pending_calls() == []


def test_a_new_message_starts_with_all_its_rounds(service):
    ScriptedBackend.script = [CALL_TEXT, "No more tools.", CALL_TEXT]
    chat = service.store.new("Assistant")
    chat.tool_rounds = 1
    first = turn(service, chat, "send", "6*7?")
    service.resolve_call(chat, first.tool_calls[0].id, ToolResult("42"))
    limited = turn(service, chat, "respond")
    assert "limit of 1 round" in limited.notice
    again = turn(service, chat, "send", "And 6*8?")  # the user wrote: a new answer, a new round budget
    assert again.tool_calls and not again.notice
