"""The machinery every tool-call format shares: a cursor that reads a call block and knows when the text
so far cannot decide it yet, one streaming scanner (``parse`` is the same scanner fed the whole text), and
grammar helpers.

A format describes only its own shape: the literal ``markers`` where a call block can begin, how to read
one block (:meth:`ToolFormat.read_block`), its grammar and how a call is written. Reading a block is
*prefix-stable*: on a prefix of the output it either decides (the calls and where the block ends, or "not
a call") exactly as it would on the whole output, or says it needs more text. That is what makes the
streamed events add up to :meth:`ToolFormat.parse` of the whole text, whatever the chunking.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from webui.agents.types import ParsedReply, ToolCall, ToolChoice, ToolSpec, ToolStreamEvent, new_call_id
from webui.errors import SchemaError
from webui.structured.gbnf import GrammarBuilder


class Incomplete(Exception):
    """The text ends before the block is decided (only raised while streaming)."""


class Invalid(Exception):
    """The text at this marker is not a call block of the format: it stays content."""


@dataclass
class RawCall:
    """A call as read from the output: arguments already compact JSON text."""

    name: str
    arguments: str
    id: str | None = None


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def arguments_object(value: Any) -> dict[str, Any]:
    """A call's arguments as an object: an object, a JSON string holding one, or nothing (``{}``)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise Invalid from None
    if not isinstance(value, dict):
        raise Invalid
    return value


class Cursor:
    """Reads a block from ``pos``. Running out of text raises :class:`Incomplete` while streaming
    (``final`` false) and :class:`Invalid` at the end of the output."""

    def __init__(self, text: str, pos: int, final: bool) -> None:
        self.text, self.pos, self.final = text, pos, final

    def out_of_text(self) -> Exception:
        return Invalid() if self.final else Incomplete()

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, literal: str) -> bool:
        """Whether ``literal`` comes next (undecided while the text is a proper prefix of it)."""
        rest = self.text[self.pos : self.pos + len(literal)]
        if rest == literal:
            return True
        if len(rest) < len(literal) and literal.startswith(rest):
            if self.final:
                return False
            raise Incomplete
        return False

    def accept(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def expect(self, *literals: str) -> str:
        """Consume one of ``literals`` (the first that matches) or raise :class:`Invalid`."""
        for literal in literals:
            if self.accept(literal):
                return literal
        raise Invalid

    def until(self, literal: str) -> str:
        """The text up to ``literal``, consumed with it."""
        end = self.text.find(literal, self.pos)
        if end < 0:
            raise self.out_of_text()
        piece = self.text[self.pos : end]
        self.pos = end + len(literal)
        return piece

    def word(self, allowed: str = r"[\w.\-]") -> str:
        """A run of ``allowed`` characters (a function name); empty is :class:`Invalid`."""
        start = self.pos
        pattern = re.compile(allowed)
        while self.pos < len(self.text) and pattern.fullmatch(self.text[self.pos]):
            self.pos += 1
        if self.pos >= len(self.text) and not self.final:
            raise Incomplete  # the name may go on
        if self.pos == start:
            raise Invalid
        return self.text[start : self.pos]

    def json(self) -> Any:
        """A JSON object or array starting here (found by matching brackets, then parsed)."""
        text, start = self.text, self.pos
        if start >= len(text):
            raise self.out_of_text()
        if text[start] not in "{[":
            raise Invalid
        depth, in_string, escaped = 0, False, False
        for i in range(start, len(text)):
            char = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start : i + 1])
                    except ValueError:
                        raise Invalid from None
                    self.pos = i + 1
                    return value
        raise self.out_of_text()

    def call_object(self, require_arguments: bool = False) -> RawCall:
        """``{"name": ..., "arguments": {...}}`` (also ``"parameters"``, and an optional ``"id"``)."""
        return call_from_dict(self.json(), require_arguments)


def call_from_dict(value: Any, require_arguments: bool = False) -> RawCall:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        raise Invalid
    if require_arguments and "arguments" not in value and "parameters" not in value:
        raise Invalid
    arguments = value.get("arguments", value.get("parameters"))
    call_id = value.get("id") if isinstance(value.get("id"), str) else None
    return RawCall(value["name"], compact(arguments_object(arguments)), call_id)


# -- the scanner: streaming and whole-text parsing ----------------------------------------------------


@dataclass
class _Found:
    calls: list[RawCall]
    end: int


class ToolStreamParser:
    """Feeds generated text in as it comes; hands out content as soon as it cannot be the start of a
    call, and each call once it is complete. :meth:`finish` settles what is left (an unfinished call
    goes out as content)."""

    def __init__(self, fmt: ToolFormat, tools: Sequence[ToolSpec] = ()) -> None:
        self._fmt = fmt
        self._tools = tuple(tools)
        self._buf = ""
        self._at_start = type(fmt).start_block is not ToolFormat.start_block
        self._index = 0
        # Whitespace next to calls: what precedes a run of calls is kept aside and put back only if
        # more text follows, so "Sure.\n<call>" gives "Sure." and "A\n<call>\nB" gives "A\nB".
        self._ws = ""
        self._sep = ""
        self._after_call = False
        self._shown = False

    def feed(self, text: str) -> list[ToolStreamEvent]:
        self._buf += text
        return self._scan(final=False)

    def finish(self) -> list[ToolStreamEvent]:
        events = self._scan(final=True)
        if self._ws and not self._after_call:
            events.append(ToolStreamEvent(content=self._ws))
        self._ws = ""
        return _merged(events)

    # -- internals --

    def _scan(self, final: bool) -> list[ToolStreamEvent]:
        events: list[ToolStreamEvent] = []
        fmt = self._fmt
        while self._buf:
            if self._at_start:
                found = self._try(lambda: fmt.start_block(Cursor(self._buf, 0, final), self._tools))
                if found == "wait":
                    break
                self._at_start = False
                if isinstance(found, _Found):
                    self._emit_calls(found.calls, events)
                    self._buf = self._buf[found.end :]
                continue
            idx = _first_marker(self._buf, fmt.markers)
            partial = -1 if final else _partial_marker(self._buf, fmt.markers)
            if partial >= 0 and (idx < 0 or partial < idx):
                self._emit_content(self._buf[:partial], events)
                self._buf = self._buf[partial:]
                break
            if idx < 0:
                self._emit_content(self._buf, events)
                self._buf = ""
                break
            self._emit_content(self._buf[:idx], events)
            self._buf = self._buf[idx:]
            found = self._try(lambda: fmt.read_block(Cursor(self._buf, 0, final), self._tools))
            if found == "wait":
                break
            if isinstance(found, _Found):
                self._emit_calls(found.calls, events)
                self._buf = self._buf[found.end :]
            else:  # not a call after all: the marker's first character is text, look further on
                self._emit_content(self._buf[0], events)
                self._buf = self._buf[1:]
        return _merged(events)

    @staticmethod
    def _try(read: Callable[[], tuple[list[RawCall], int]]) -> _Found | str | None:
        try:
            calls, end = read()
        except Incomplete:
            return "wait"
        except Invalid:
            return None
        return _Found(calls, end)

    def _emit_content(self, text: str, events: list[ToolStreamEvent]) -> None:
        if not text:
            return
        full = self._ws + text
        body = full.rstrip()
        self._ws = full[len(body) :]
        if not body:
            return
        if self._after_call:
            body = (self._sep if self._shown else "") + body.lstrip()
            self._after_call = False
        self._shown = True
        events.append(ToolStreamEvent(content=body))

    def _emit_calls(self, calls: list[RawCall], events: list[ToolStreamEvent]) -> None:
        if not self._after_call:
            self._sep = self._ws
            self._after_call = True
        self._ws = ""
        for call in calls:
            call_id = call.id or self._fmt.new_id()
            events.append(ToolStreamEvent(index=self._index, id=call_id, name=call.name))
            events.append(ToolStreamEvent(index=self._index, arguments=call.arguments))
            self._index += 1


def _first_marker(text: str, markers: Sequence[str]) -> int:
    found = [i for i in (text.find(m) for m in markers) if i >= 0]
    return min(found) if found else -1


def _partial_marker(text: str, markers: Sequence[str]) -> int:
    """Where the earliest possible start of a marker cut off by the end of ``text`` is (-1: none)."""
    longest = max((len(m) for m in markers), default=0)
    for start in range(max(0, len(text) - longest + 1), len(text)):
        tail = text[start:]
        if any(len(tail) < len(m) and m.startswith(tail) for m in markers):
            return start
    return -1


def _merged(events: list[ToolStreamEvent]) -> list[ToolStreamEvent]:
    out: list[ToolStreamEvent] = []
    for event in events:
        if event.index is None and out and out[-1].index is None:
            out[-1].content += event.content
        else:
            out.append(event)
    return out


def collect(events: Sequence[ToolStreamEvent]) -> ParsedReply:
    """Stream events put together the way an OpenAI client does."""
    content: list[str] = []
    calls: dict[int, ToolCall] = {}
    for event in events:
        if event.index is None:
            content.append(event.content)
            continue
        call = calls.get(event.index)
        if call is None:
            call = calls[event.index] = ToolCall(name=event.name or "", arguments="", id=event.id or new_call_id())
        call.arguments += event.arguments
    return ParsedReply("".join(content), [calls[i] for i in sorted(calls)])


# -- the format base class ------------------------------------------------------------------------------


class ToolFormat:
    """How one model family writes tool calls.

    ``triggers`` are regular expressions (``re.search``) that find the start of a call in generated
    text: the call begins where the match begins, or at group 1 when the pattern has a group (as
    llama.cpp's lazy grammars read them). The grammar's root starts with what the trigger matches.
    """

    name: str = ""
    triggers: tuple[str, ...] = ()
    #: Literal strings a call block can begin with (where the scanner tries :meth:`read_block`).
    markers: tuple[str, ...] = ()
    #: The family's models put several calls in one reply.
    parallel_calls: bool = True

    def __repr__(self) -> str:
        return f"<ToolFormat {self.name}>"

    # -- reading --

    def read_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        """Read one call block at ``cursor`` (at a marker); raise :class:`Invalid` / :class:`Incomplete`."""
        raise NotImplementedError

    def start_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        """A block that only counts at the very start of the output (a format without one leaves this)."""
        raise Invalid

    def new_id(self) -> str:
        return new_call_id()

    def parse(self, text: str, tools: Sequence[ToolSpec] = ()) -> ParsedReply:
        """The whole output split into content and calls; what does not parse stays content."""
        scanner = self.stream(tools)
        return collect([*scanner.feed(text), *scanner.finish()])

    def stream(self, tools: Sequence[ToolSpec] = ()) -> ToolStreamParser:
        """An incremental parser; ``tools`` (optional) lets formats with untyped values type them."""
        return ToolStreamParser(self, tools)

    # -- writing --

    def render_call(self, call: ToolCall) -> str:
        return self.render_calls([call])

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        """How the model writes these calls as one turn."""
        raise NotImplementedError

    # -- grammar --

    def grammar(self, tools: Sequence[ToolSpec], choice: ToolChoice, parallel: bool) -> str:
        """GBNF whose language is one valid call (or, with ``parallel``, one or more) in this format."""
        chosen = chosen_tools(tools, choice)
        builder = GrammarBuilder()
        root = self.grammar_root(builder, chosen, parallel and self.parallel_calls)
        return builder.build(root)

    def grammar_root(self, builder: GrammarBuilder, tools: Sequence[ToolSpec], parallel: bool) -> str:
        raise NotImplementedError


def chosen_tools(tools: Sequence[ToolSpec], choice: ToolChoice) -> list[ToolSpec]:
    """The tools a grammar may call under ``choice``."""
    if not tools:
        raise SchemaError("A tool-call grammar needs at least one tool.")
    if choice.mode == "none":
        raise SchemaError("tool_choice 'none' allows no tool call, so there is no tool-call grammar.")
    if choice.mode == "function":
        named = [tool for tool in tools if tool.name == choice.name]
        if not named:
            raise SchemaError(f"tool_choice names the function {choice.name!r}, which is not one of the tools.")
        return named
    return list(tools)


# -- grammar helpers --------------------------------------------------------------------------------------


@dataclass
class Rules:
    """Shared GBNF pieces a format's grammar uses (added once per builder)."""

    builder: GrammarBuilder
    made: dict[str, str] = field(default_factory=dict)

    def sp(self) -> str:
        """Optional whitespace the way JSON writers put it: nothing, a space, or a newline and indent."""
        return self._once("tc-sp", '| " " | "\\n" [ \\t]{0,16}')

    def nl(self) -> str:
        """An optional newline."""
        return self._once("tc-nl", '| "\\n"')

    def _once(self, name: str, body: str) -> str:
        if name not in self.made:
            self.made[name] = self.builder.rule(name, body)
        return self.made[name]


def rule_name(*parts: str) -> str:
    """A GBNF rule name from free text (tool names may hold ``_`` or ``.``)."""
    return "-".join(re.sub(r"[^a-zA-Z0-9]+", "-", part).strip("-") or "x" for part in parts).lower()


def args_rule(builder: GrammarBuilder, tool: ToolSpec) -> str:
    """The rule for a JSON arguments object matching ``tool.parameters``."""
    return builder.schema(tool.parameters or {"type": "object"}, rule_name("tc", tool.name, "args"))


def json_call_rule(
    builder: GrammarBuilder, rules: Rules, tool: ToolSpec, key: str = "arguments", tail: str = ""
) -> str:
    """``{"name": "<tool>", "<key>": <arguments>}`` with JSON-style optional whitespace (``tail``: more
    GBNF before the closing brace)."""
    sp, lit = rules.sp(), builder.literal
    body = " ".join(
        [
            lit("{"),
            sp,
            lit('"name"'),
            sp,
            lit(":"),
            sp,
            lit(json.dumps(tool.name, ensure_ascii=False)),
            sp,
            lit(","),
            sp,
            lit(json.dumps(key)),
            sp,
            lit(":"),
            sp,
            args_rule(builder, tool),
            tail,
            sp,
            lit("}"),
        ]
    )
    return builder.rule(rule_name("tc", tool.name, "call"), body)


def alternatives(rules: Sequence[str]) -> str:
    return "( " + " | ".join(rules) + " )"


def example_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Placeholder arguments for a schema (the required properties, or all when none is required)."""
    properties = schema.get("properties") or {}
    required = [name for name in schema.get("required") or [] if name in properties] or list(properties)
    return {name: _example_value(properties[name]) for name in required}


def _example_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "..."
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {
        "integer": 1,
        "number": 1.5,
        "boolean": True,
        "array": [],
        "object": example_arguments(schema) if schema.get("properties") else {},
        "null": None,
    }.get(kind or "string", "...")
