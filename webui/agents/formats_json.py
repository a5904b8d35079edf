"""Tool-call formats whose arguments are a JSON object: Hermes/Qwen, Llama 3.x, Mistral, DeepSeek, Kimi K2
and gpt-oss (harmony). The shapes follow what the models were trained on (and what llama.cpp's
``common/chat*`` parses); see each class."""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Sequence
from typing import Any

from webui.agents.formats_base import (
    Cursor,
    Invalid,
    RawCall,
    Rules,
    ToolFormat,
    alternatives,
    args_rule,
    arguments_object,
    call_from_dict,
    compact,
    json_call_rule,
    rule_name,
)
from webui.agents.types import ToolCall, ToolSpec
from webui.structured.gbnf import GrammarBuilder


def _args(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        return {}


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class HermesFormat(ToolFormat):
    """Hermes 2 Pro / Qwen 2.5 / Qwen 3: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``,
    several in a row for parallel calls."""

    name = "hermes"
    triggers = (r"<tool_call>",)
    markers = ("<tool_call>",)

    def read_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        cursor.expect("<tool_call>")
        cursor.ws()
        call = cursor.call_object()
        cursor.ws()
        cursor.expect("</tool_call>")
        return [call], cursor.pos

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        return "\n".join(f"<tool_call>\n{_dump({'name': c.name, 'arguments': _args(c)})}\n</tool_call>" for c in calls)

    def grammar_root(self, builder: GrammarBuilder, tools: Sequence[ToolSpec], parallel: bool) -> str:
        rules = Rules(builder)
        sp, lit = rules.sp(), builder.literal
        body = alternatives([json_call_rule(builder, rules, tool) for tool in tools])
        call = builder.rule("tc-call", f"{lit('<tool_call>')} {sp} {body} {sp} {lit('</tool_call>')}")
        return builder.rule("tc-root", f"{call} ( {sp} {call} )*" if parallel else call)


class Llama3Format(ToolFormat):
    """Llama 3.1-3.3: the whole reply is ``{"name": ..., "parameters": {...}}`` (``"arguments"`` too;
    several joined by ``;``), or after ``<|python_tag|>`` that JSON or a built-in tool's
    ``name.call(key="value")``."""

    name = "llama3"
    triggers = (r"^\s*(\{\s*\"name\")", r"<\|python_tag\|>")
    markers = ("<|python_tag|>",)

    def start_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        cursor.ws()
        calls = [cursor.call_object(require_arguments=True)]
        while True:
            after = cursor.pos
            cursor.ws()
            if not cursor.accept(";"):
                cursor.pos = after
                return calls, cursor.pos
            cursor.ws()
            calls.append(cursor.call_object(require_arguments=True))

    def read_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        cursor.expect("<|python_tag|>")
        cursor.ws()
        if cursor.peek("{"):
            return [cursor.call_object(require_arguments=True)], cursor.pos
        name = cursor.word(r"\w")
        cursor.expect(".call(")
        arguments: dict[str, Any] = {}
        cursor.ws()
        while not cursor.accept(")"):
            if arguments:
                cursor.expect(",")
                cursor.ws()
            key = cursor.word(r"\w")
            cursor.ws()
            cursor.expect("=")
            cursor.ws()
            arguments[key] = _python_value(cursor)
            cursor.ws()
        return [RawCall(name, compact(arguments))], cursor.pos

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        return "; ".join(_dump({"name": c.name, "parameters": _args(c)}) for c in calls)

    def grammar_root(self, builder: GrammarBuilder, tools: Sequence[ToolSpec], parallel: bool) -> str:
        rules = Rules(builder)
        sp, lit = rules.sp(), builder.literal
        call = builder.rule(
            "tc-call", alternatives([json_call_rule(builder, rules, tool, key="parameters") for tool in tools])
        )
        calls = f"{call} ( {sp} {lit(';')} {sp} {call} )*" if parallel else call
        return builder.rule("tc-root", f"{lit('<|python_tag|>')}? {calls}")


def _python_value(cursor: Cursor) -> Any:
    """A keyword argument's value in a built-in tool call: a string (either quote) or a literal."""
    for quote in ('"', "'"):
        if cursor.accept(quote):
            start = cursor.pos
            text = cursor.text
            i = start
            while True:
                if i >= len(text):
                    raise cursor.out_of_text()
                if text[i] == "\\":
                    i += 2
                    continue
                if text[i] == quote:
                    break
                i += 1
            cursor.pos = i + 1
            raw = text[start:i]
            if quote == '"':
                try:
                    return json.loads(f'"{raw}"')
                except ValueError:
                    raise Invalid from None
            return raw.replace("\\'", "'")
    token = cursor.word(r"[\w.+\-]")
    literals = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}
    if token in literals:
        return literals[token]
    try:
        return json.loads(token)
    except ValueError:
        raise Invalid from None


_MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")


class MistralFormat(ToolFormat):
    """Mistral. ``array`` style (Nemo, Small 3.x): ``[TOOL_CALLS][{"name": ..., "arguments": {...},
    "id": "9 letters"}, ...]``; ``args`` style (v11 tokenizers: Magistral, Devstral, Ministral 3):
    ``[TOOL_CALLS]name[ARGS]{...}`` per call (Small 3.2 adds ``[CALL_ID]id`` before ``[ARGS]``).
    Both styles are read either way; the style decides what is written and constrained."""

    triggers = (r"\[TOOL_CALLS\]",)
    markers = ("[TOOL_CALLS]",)

    def __init__(self, name: str, args_style: bool) -> None:
        self.name = name
        self.args_style = args_style

    def new_id(self) -> str:
        # Mistral's templates reject tool-call ids that are not 9 letters or digits.
        return "".join(random.choices(string.ascii_letters + string.digits, k=9))

    def read_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        cursor.expect("[TOOL_CALLS]")
        cursor.ws()
        if cursor.peek("["):
            items = cursor.json()
            if not isinstance(items, list) or not items:
                raise Invalid
            calls = [call_from_dict(item) for item in items]
            for call in calls:
                if call.id is not None and not _MISTRAL_ID.fullmatch(call.id):
                    call.id = None
            return calls, cursor.pos
        name = cursor.word()
        call_id = None
        if cursor.accept("[CALL_ID]"):
            call_id = cursor.word(r"[A-Za-z0-9]")
        cursor.expect("[ARGS]")
        cursor.ws()
        arguments = arguments_object(cursor.json())
        return [RawCall(name, compact(arguments), call_id)], cursor.pos

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        if self.args_style:
            return "".join(f"[TOOL_CALLS]{c.name}[ARGS]{_dump(_args(c))}" for c in calls)
        items = []
        for c in calls:
            item: dict[str, Any] = {"name": c.name, "arguments": _args(c)}
            if _MISTRAL_ID.fullmatch(c.id):
                item["id"] = c.id
            items.append(item)
        return "[TOOL_CALLS]" + _dump(items)

    def grammar_root(self, builder: GrammarBuilder, tools: Sequence[ToolSpec], parallel: bool) -> str:
        rules = Rules(builder)
        sp, lit = rules.sp(), builder.literal
        if self.args_style:
            alts = [
                builder.rule(
                    rule_name("tc", tool.name, "call"),
                    f"{lit('[TOOL_CALLS]' + tool.name + '[ARGS]')} {args_rule(builder, tool)}",
                )
                for tool in tools
            ]
            call = builder.rule("tc-call", alternatives(alts))
            return builder.rule("tc-root", f"{call}+" if parallel else call)
        quote = lit('"')
        key = lit('"id"')
        call_id = f"( {sp} {lit(',')} {sp} {key} {sp} {lit(':')} {sp} {quote} [a-zA-Z0-9]{{9}} {quote} )?"
        call = builder.rule(
            "tc-call", alternatives([json_call_rule(builder, rules, tool, tail=call_id) for tool in tools])
        )
        calls = f"{call} ( {sp} {lit(',')} {sp} {call} )*" if parallel else call
        return builder.rule("tc-root", f"{lit('[TOOL_CALLS]')} {lit('[')} {sp} {calls} {sp} {lit(']')}")


_DS_BEGINS = (
    "<｜tool▁calls▁begin｜>",
    # Spellings the R1 distills write (llama.cpp accepts them too).
    "<｜tool_calls_begin｜>",
    "<｜tool calls begin｜>",
    "<｜tool\\_calls\\_begin｜>",
    "<｜tool▁calls｜>",
)
_DS_END = "<｜tool▁calls▁end｜>"
_DS_CALL, _DS_SEP, _DS_CALL_END = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"
_NAME = re.compile(r"[\w.\-]+")


class DeepSeekFormat(ToolFormat):
    """DeepSeek. R1 / V3: ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json
    \\n{...}\\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>``; V3.1 (``v31``) drops the type and the
    fence: ``<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>``. Both are read either way."""

    triggers = tuple(re.escape(begin) for begin in _DS_BEGINS)
    markers = _DS_BEGINS

    def __init__(self, name: str, v31: bool) -> None:
        self.name = name
        self.v31 = v31

    def read_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        cursor.expect(*_DS_BEGINS)
        calls: list[RawCall] = []
        while True:
            cursor.ws()
            cursor.accept(_DS_CALL)
            if cursor.accept("function" + _DS_SEP):
                name = cursor.until("\n").strip()
                cursor.ws()
                cursor.expect("```json", "```")
                cursor.ws()
                arguments = cursor.json()
                cursor.ws()
                cursor.expect("```")
            else:
                name = cursor.until(_DS_SEP).strip()
                cursor.ws()
                arguments = cursor.json()
            if not _NAME.fullmatch(name):
                raise Invalid
            cursor.ws()
            cursor.expect(_DS_CALL_END)
            calls.append(RawCall(name, compact(arguments_object(arguments))))
            end = cursor.pos
            cursor.ws()
            if cursor.accept(_DS_END):
                return calls, cursor.pos
            if cursor.final and cursor.at_end():
                return calls, end  # the closing marker was cut off (a stop string, the token limit)
            if not cursor.peek(_DS_CALL):
                return calls, end

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        if self.v31:
            body = "".join(f"{_DS_CALL}{c.name}{_DS_SEP}{_dump(_args(c))}{_DS_CALL_END}" for c in calls)
        else:
            body = "".join(
                f"{_DS_CALL}function{_DS_SEP}{c.name}\n```json\n{_dump(_args(c))}\n```{_DS_CALL_END}" for c in calls
            )
        return f"{_DS_BEGINS[0]}{body}{_DS_END}"

    def grammar_root(self, builder: GrammarBuilder, tools: Sequence[ToolSpec], parallel: bool) -> str:
        rules = Rules(builder)
        sp, lit = rules.sp(), builder.literal
        alts = []
        for tool in tools:
            args = args_rule(builder, tool)
            if self.v31:
                body = f"{lit(_DS_CALL + tool.name + _DS_SEP)} {args} {lit(_DS_CALL_END)}"
            else:
                head = f"{_DS_CALL}function{_DS_SEP}{tool.name}\n```json\n"
                body = f"{lit(head)} {args} {lit(chr(10) + '```' + _DS_CALL_END)}"
            alts.append(builder.rule(rule_name("tc", tool.name, "call"), body))
        call = builder.rule("tc-call", alternatives(alts))
        begin = alternatives([lit(b) for b in _DS_BEGINS])
        calls = f"( {call} {sp} )+" if parallel else f"{call} {sp}"
        return builder.rule("tc-root", f"{begin} {calls} {lit(_DS_END)}")


_KIMI_SECTION, _KIMI_SECTION_END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
_KIMI_CALL, _KIMI_ARGS, _KIMI_CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
_KIMI_ID = re.compile(r"(?:functions\.)?([\w.\-]+?)(?::\d+)?")


class KimiFormat(ToolFormat):
    """Kimi K2: ``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0
    <|tool_call_argument_begin|>{...}<|tool_call_end|>...<|tool_calls_section_end|>``. The
    ``functions.NAME:N`` text is the call's id (the template writes it back)."""

    name = "kimi"
    triggers = (re.escape(_KIMI_SECTION),)
    markers = (_KIMI_SECTION,)

    def read_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        cursor.expect(_KIMI_SECTION)
        calls: list[RawCall] = []
        while True:
            cursor.ws()
            if calls and cursor.accept(_KIMI_SECTION_END):
                return calls, cursor.pos
            if calls and cursor.final and cursor.at_end():
                return calls, cursor.pos
            cursor.expect(_KIMI_CALL)
            call_id = cursor.until(_KIMI_ARGS).strip()
            match = _KIMI_ID.fullmatch(call_id)
            if not match:
                raise Invalid
            cursor.ws()
            arguments = arguments_object(cursor.json())
            cursor.ws()
            cursor.expect(_KIMI_CALL_END)
            calls.append(RawCall(match.group(1), compact(arguments), call_id))

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        body = ""
        for i, c in enumerate(calls):
            call_id = c.id if re.fullmatch(rf"functions\.{re.escape(c.name)}:\d+", c.id) else f"functions.{c.name}:{i}"
            body += f"{_KIMI_CALL}{call_id}{_KIMI_ARGS}{_dump(_args(c))}{_KIMI_CALL_END}"
        return f"{_KIMI_SECTION}{body}{_KIMI_SECTION_END}"

    def grammar_root(self, builder: GrammarBuilder, tools: Sequence[ToolSpec], parallel: bool) -> str:
        lit = builder.literal
        alts = [
            builder.rule(
                rule_name("tc", tool.name, "call"),
                f"{lit(_KIMI_CALL + 'functions.' + tool.name + ':')} [0-9]{{1,3}} {lit(_KIMI_ARGS)} "
                f"{args_rule(builder, tool)} {lit(_KIMI_CALL_END)}",
            )
            for tool in tools
        ]
        call = builder.rule("tc-call", alternatives(alts))
        calls = f"{call}+" if parallel else call
        return builder.rule("tc-root", f"{lit(_KIMI_SECTION)} {calls} {lit(_KIMI_SECTION_END)}")


_HARMONY_IN_CHANNEL = re.compile(
    r"(?:commentary|analysis) to=functions\.([\w.\-]+)\s*(?:(?:<\|constrain\|>)?\s*[\w\-]+)?\s*"
)
_HARMONY_IN_ROLE = re.compile(
    r" to=functions\.([\w.\-]+)\s*<\|channel\|>(?:commentary|analysis)\s*(?:(?:<\|constrain\|>)?\s*[\w\-]+)?\s*"
)


class HarmonyFormat(ToolFormat):
    """gpt-oss (harmony): ``<|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json
    <|message|>{...}<|call|>``, or the recipient in the role: ``<|start|>assistant to=functions.NAME
    <|channel|>commentary json<|message|>{...}``. Only the calls are taken out; the other channels'
    framing (``analysis``, ``final``) is left for the reasoning splitter."""

    name = "harmony"
    triggers = (r"<\|start\|>assistant to=", r"<\|channel\|>(?:commentary|analysis) to=", r"^( to=)")
    markers = ("<|start|>assistant", "<|channel|>")
    #: ``<|call|>`` ends the model's turn: one call per generation.
    parallel_calls = False

    def start_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        if not cursor.peek(" to="):
            raise Invalid
        return self._call(cursor, _HARMONY_IN_ROLE)

    def read_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        if cursor.accept("<|start|>assistant") and cursor.peek(" to="):
            return self._call(cursor, _HARMONY_IN_ROLE)
        cursor.expect("<|channel|>")
        return self._call(cursor, _HARMONY_IN_CHANNEL)

    @staticmethod
    def _call(cursor: Cursor, header: re.Pattern[str]) -> tuple[list[RawCall], int]:
        match = header.fullmatch(cursor.until("<|message|>"))
        if not match:
            raise Invalid
        arguments = arguments_object(cursor.json())
        cursor.accept("<|call|>")
        return [RawCall(match.group(1), compact(arguments))], cursor.pos

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        return "".join(
            f"<|start|>assistant<|channel|>commentary to=functions.{c.name} <|constrain|>json"
            f"<|message|>{compact(_args(c))}<|call|>"
            for c in calls
        )

    def grammar_root(self, builder: GrammarBuilder, tools: Sequence[ToolSpec], parallel: bool) -> str:
        lit = builder.literal
        in_role, in_channel = [], []
        for tool in tools:
            args = args_rule(builder, tool)
            in_role.append(
                builder.rule(
                    rule_name("tc", tool.name, "role"),
                    f"{lit(tool.name + '<|channel|>commentary')} ( {lit(' <|constrain|>json')} | {lit(' json')} )? "
                    f"{lit('<|message|>')} {args}",
                )
            )
            in_channel.append(
                builder.rule(
                    rule_name("tc", tool.name, "channel"),
                    f"{lit(tool.name)} {lit(' <|constrain|>json')}? {lit('<|message|>')} {args}",
                )
            )
        recipient = lit(" to=functions.")
        channel = f"{lit('<|channel|>')} ( {lit('commentary')} | {lit('analysis')} )"
        return builder.rule(
            "tc-root",
            f"{lit('<|start|>assistant')}? ( {recipient} {alternatives(in_role)} | "
            f"{channel} {recipient} {alternatives(in_channel)} ) {lit('<|call|>')}?",
        )
