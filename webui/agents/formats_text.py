"""Tool-call formats whose arguments are not one JSON object: GLM 4.5/4.6 (``<arg_key>``/``<arg_value>``
pairs) and Gemma's ``call:NAME{key:value}`` (Gemma 4 and FunctionGemma markers)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from webui.agents.formats_base import (
    Cursor,
    Invalid,
    RawCall,
    Rules,
    ToolFormat,
    alternatives,
    compact,
    rule_name,
)
from webui.agents.types import ToolCall, ToolSpec
from webui.structured.gbnf import GrammarBuilder


def _args(call: ToolCall) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _properties(tools: Sequence[ToolSpec], name: str) -> dict[str, Any]:
    for tool in tools:
        if tool.name == name:
            return dict((tool.parameters or {}).get("properties") or {})
    return {}


def _is_plain_string(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "string"


class GlmFormat(ToolFormat):
    """GLM 4.5 / 4.6: ``<tool_call>NAME\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n</tool_call>``.
    A string value is written raw, any other value as JSON. Without the tools to say a key's type, a
    value that parses as JSON (``42``, ``true``, ``[1]``) is taken as that value."""

    name = "glm"
    triggers = (r"<tool_call>",)
    markers = ("<tool_call>",)

    def read_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        cursor.expect("<tool_call>")
        name = cursor.word()
        properties = _properties(tools, name)
        arguments: dict[str, Any] = {}
        while True:
            cursor.ws()
            if cursor.accept("</tool_call>"):
                return [RawCall(name, compact(arguments))], cursor.pos
            cursor.expect("<arg_key>")
            key = cursor.until("</arg_key>").strip()
            if not key:
                raise Invalid
            cursor.ws()
            cursor.expect("<arg_value>")
            arguments[key] = _glm_value(cursor.until("</arg_value>"), properties.get(key))

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        out = []
        for c in calls:
            pairs = "".join(
                f"<arg_key>{k}</arg_key>\n<arg_value>{v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                "</arg_value>\n"
                for k, v in _args(c).items()
            )
            out.append(f"<tool_call>{c.name}\n{pairs}</tool_call>")
        return "\n".join(out)

    def grammar_root(self, builder: GrammarBuilder, tools: Sequence[ToolSpec], parallel: bool) -> str:
        rules = Rules(builder)
        nl, lit = rules.nl(), builder.literal
        text = builder.rule("tc-glm-text", '( [^<] | "<" [^/] )*')
        alts = []
        for tool in tools:
            schema = tool.parameters or {}
            required = set(schema.get("required") or [])
            pieces = []
            for key, prop in (schema.get("properties") or {}).items():
                if _is_plain_string(prop) and not prop.get("enum") and "const" not in prop:
                    value = text
                elif isinstance(prop, dict) and prop.get("type") == "string" and prop.get("enum"):
                    value = alternatives([lit(str(v)) for v in prop["enum"]])
                else:
                    value = builder.schema(prop, rule_name("tc", tool.name, key))
                piece = (
                    f"{lit('<arg_key>' + key + '</arg_key>')} {nl} {lit('<arg_value>')} {value} "
                    f"{lit('</arg_value>')} {nl}"
                )
                pieces.append(piece if key in required else f"( {piece} )?")
            body = f"{lit('<tool_call>' + tool.name)} {lit(chr(10))} {' '.join(pieces)} {lit('</tool_call>')}"
            alts.append(builder.rule(rule_name("tc", tool.name, "call"), body))
        call = builder.rule("tc-call", alternatives(alts))
        return builder.rule("tc-root", f"{call} ( {nl} {call} )*" if parallel else call)


def _glm_value(raw: str, schema: Any) -> Any:
    if _is_plain_string(schema):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class GemmaFormat(ToolFormat):
    """Gemma's function calls: ``OPEN call:NAME{key:QUOTE text QUOTE,n:3,flag:true,list:[...]} CLOSE``.
    Gemma 4 writes ``<|tool_call>`` ... ``<tool_call|>`` with ``<|"|>`` quotes; FunctionGemma writes
    ``<start_function_call>`` ... ``<end_function_call>`` with ``<escape>``."""

    def __init__(self, name: str, open_: str, close: str, quote: str) -> None:
        self.name = name
        self.open, self.close, self.quote = open_, close, quote
        self.markers = (open_,)
        self.triggers = (re.escape(open_),)

    def read_block(self, cursor: Cursor, tools: Sequence[ToolSpec]) -> tuple[list[RawCall], int]:
        calls: list[RawCall] = []
        cursor.expect(self.open)
        cursor.expect("call:")
        name = cursor.word()
        calls.append(RawCall(name, compact(self._object(cursor))))
        cursor.expect(self.close)
        return calls, cursor.pos

    def _value(self, cursor: Cursor) -> Any:
        if cursor.accept(self.quote):
            return cursor.until(self.quote)
        if cursor.peek("{"):
            return self._object(cursor)
        if cursor.peek("["):
            cursor.expect("[")
            items: list[Any] = []
            while not cursor.accept("]"):
                if items:
                    cursor.expect(",")
                items.append(self._value(cursor))
            return items
        token = cursor.word(r"[\w.+\-]")
        literals: dict[str, Any] = {"true": True, "false": False, "null": None}
        if token in literals:
            return literals[token]
        try:
            return json.loads(token)
        except ValueError:
            raise Invalid from None

    def _object(self, cursor: Cursor) -> dict[str, Any]:
        cursor.expect("{")
        value: dict[str, Any] = {}
        while not cursor.accept("}"):
            if value:
                cursor.expect(",")
            key = cursor.until(self.quote) if cursor.accept(self.quote) else cursor.word(r"[\w\-]")
            cursor.expect(":")
            value[key] = self._value(cursor)
        return value

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        return "".join(f"{self.open}call:{c.name}{self._write(_args(c))}{self.close}" for c in calls)

    def _write(self, value: Any) -> str:
        if isinstance(value, str):
            return f"{self.quote}{value}{self.quote}"
        if isinstance(value, dict):
            return "{" + ",".join(f"{k}:{self._write(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ",".join(self._write(v) for v in value) + "]"
        return json.dumps(value)

    # -- grammar: JSON schema to this syntax (types, enums, nested objects and arrays) --

    def grammar_root(self, builder: GrammarBuilder, tools: Sequence[ToolSpec], parallel: bool) -> str:
        lit = builder.literal
        alts = [
            builder.rule(
                rule_name("tc", tool.name, "call"),
                f"{lit(self.open + 'call:' + tool.name)} "
                f"{self._rule(builder, tool.parameters or {'type': 'object'}, rule_name('tc', tool.name))} "
                f"{lit(self.close)}",
            )
            for tool in tools
        ]
        call = builder.rule("tc-call", alternatives(alts))
        return builder.rule("tc-root", f"{call}+" if parallel else call)

    def _rule(self, builder: GrammarBuilder, schema: Any, name: str) -> str:
        lit = builder.literal
        if not isinstance(schema, dict):
            return self._any(builder)
        if "const" in schema:
            return lit(self._write(schema["const"]))
        if schema.get("enum"):
            return alternatives([lit(self._write(v)) for v in schema["enum"]])
        kind = schema.get("type")
        if kind == "string":
            return self._string(builder)
        if kind == "integer":
            return builder.rule("tc-g-int", '"-"? [0-9]{1,15}')
        if kind == "number":
            return builder.rule("tc-g-num", '"-"? [0-9]{1,15} ( "." [0-9]{1,15} )?')
        if kind == "boolean":
            return builder.rule("tc-g-bool", '"true" | "false"')
        if kind == "null":
            return lit("null")
        if kind == "array":
            item = self._rule(builder, schema.get("items"), f"{name}-item")
            return builder.rule(f"{name}-arr", f'"[" ( {item} ( "," {item} )* )? "]"')
        if kind == "object" and schema.get("properties"):
            return self._object_rule(builder, schema, name)
        if kind == "object":
            return self._any_object(builder)
        return self._any(builder)

    def _object_rule(self, builder: GrammarBuilder, schema: dict[str, Any], name: str) -> str:
        lit = builder.literal
        properties: dict[str, Any] = schema["properties"]
        required = [k for k in properties if k in set(schema.get("required") or [])]
        optional = [k for k in properties if k not in required]
        piece = {k: f"{lit(k + ':')} {self._rule(builder, properties[k], rule_name(name, k))}" for k in properties}
        if required:
            body = ' "," '.join(piece[k] for k in required)
            body += "".join(f' ( "," {piece[k]} )?' for k in optional)
        else:
            any_piece = alternatives([piece[k] for k in optional])
            body = f'( {any_piece} ( "," {any_piece} )* )?'
        return builder.rule(f"{name}-obj", f'"{{" {body} "}}"')

    def _string(self, builder: GrammarBuilder) -> str:
        quote = builder.literal(self.quote)
        return builder.rule("tc-g-str", f"{quote} [^<]* {quote}")

    def _any_object(self, builder: GrammarBuilder) -> str:
        self._any(builder)
        return "tc-g-obj"

    def _any(self, builder: GrammarBuilder) -> str:
        """Any value (for schemas this syntax cannot follow closely: ``anyOf``, no ``type``)."""
        text = self._string(builder)
        number = builder.rule("tc-g-num", '"-"? [0-9]{1,15} ( "." [0-9]{1,15} )?')
        key = "[a-zA-Z0-9_-]+"
        builder.rule("tc-g-obj", f'"{{" ( {key} ":" tc-g-any ( "," {key} ":" tc-g-any )* )? "}}"')
        return builder.rule(
            "tc-g-any",
            f'{text} | {number} | "true" | "false" | "null" | "[" ( tc-g-any ( "," tc-g-any )* )? "]" | tc-g-obj',
        )
