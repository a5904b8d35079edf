"""GBNF grammars for JSON: a schema's values, any JSON object, and grammars composed of several schemas.

The conversion itself is llama-cpp-python's ``SchemaConverter`` (the port of llama.cpp's
``json_schema_to_grammar.py``). This module wraps it so that a grammar it returns only ever produces
valid JSON of the schema:

- the schema is normalised first (annotations dropped, ``true``/``{}`` turned into "any JSON value",
  a ``type`` list with constraints split into alternatives, ``minItems``/``maxItems`` without ``items``
  given items), so the converter's first-match dispatch sees one constraint it knows;
- string characters exclude raw control characters (strict JSON parsers refuse them);
- literals are escaped completely (the converter does not escape backslashes);
- several schemas share one builder without clashing: their rules, ``$ref`` definitions included,
  are named after the ``name`` each was added under.

Which keywords survive the conversion is decided by ``webui.structured.schema.check_schema``: call it
before building a grammar from a schema that came from outside.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, BuiltinRule, SchemaConverter

from webui.structured.numbers import has_bounds, integer_bounds, integer_rule, number_bounds, number_rule

#: JSON Schema keywords that only annotate: they constrain nothing, so the grammar drops them.
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "examples",
        "default",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
    }
)

#: The keywords the converter reads (a schema with none of them matches anything). Numeric bounds
#: (``webui.structured.numbers.BOUNDS``) are read too, by ``_Converter``, on a numeric ``type``.
CONVERTED = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
    }
)

#: What ``{}`` / ``true`` means: a value of any JSON type (``integer`` is within ``number``).
ANY_VALUE_TYPES = ("object", "array", "string", "number", "boolean", "null")

# Keywords whose values are one subschema, a list of subschemas, or a map of name -> subschema.
_SUBSCHEMA = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")
_SUBSCHEMA_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAP = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")

# A string character of strict JSON: no raw quote, backslash, control character or DEL.
_JSON_CHAR = BuiltinRule(
    r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])', []
)

# Whitespace between tokens: at most one newline and a bounded indent, so a model cannot run away in it.
_WS = r'| " " | "\n" [ \t]{0,20}'

#: The largest count a grammar spells out (``minItems``/``maxItems``/``minLength``/``maxLength``
#: and ``{m,n}`` in a pattern): each becomes that many nested rule references.
MAX_REPEAT = 1000

# Characters a pattern may produce raw inside a JSON string (JSON needs the rest escaped).
_UNSAFE_IN_STRING = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F))
_CLASS_ESCAPES = {
    "d": ((0x30, 0x39),),
    "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "s": ((0x20, 0x20),),  # tabs and newlines would be raw control characters in JSON
}
_METACHARS = "[]()|{}*+?"

# Keywords the converter's dispatch looks at before a schema's ``type``.
_BEFORE_TYPE = frozenset({"$ref", "anyOf", "oneOf", "const", "enum"})

_RULE_NAME_RE = re.compile(r"[^a-zA-Z0-9-]+")
_LITERAL_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in text:
        if ch in _LITERAL_ESCAPES:
            out.append(_LITERAL_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def rule_name(text: str) -> str:
    """A valid GBNF rule name made from ``text`` (letters, digits and dashes)."""
    return _RULE_NAME_RE.sub("-", text).strip("-") or "rule"


class _Converter(SchemaConverter):
    """``SchemaConverter`` with complete literal escaping, strict JSON string characters,
    ``$ref`` rules named per schema (the original names them after the definition alone) and
    bounded numbers (``webui.structured.numbers``; the original ignores the bounds)."""

    def __init__(self) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self.prefix = ""
        self._ref_rules: dict[str, str] = {}

    def visit(self, schema: Any, name: str) -> str:
        if (
            isinstance(schema, dict)
            and schema.get("type") in ("integer", "number")
            and has_bounds(schema)
            and not (_BEFORE_TYPE & schema.keys())
        ):
            if schema["type"] == "integer":
                body = integer_rule(*integer_bounds(schema))
            else:
                body = number_rule(*number_bounds(schema))
            rule = name + "-" if name in RESERVED_NAMES else name or "root"
            return str(self._add_rule(rule, f"({body}) space"))
        return str(super().visit(schema, name))

    def _format_literal(self, literal: str) -> str:
        return gbnf_literal(literal)

    def _add_primitive(self, name: str, rule: BuiltinRule) -> str:
        if rule is PRIMITIVE_RULES["char"]:
            rule = _JSON_CHAR
        return str(super()._add_primitive(name, rule))

    def _resolve_ref(self, ref: str) -> str:
        if ref in self._ref_rules:
            return self._ref_rules[ref]
        base = rule_name(f"{self.prefix}-ref-{ref.split('#')[-1].split('/')[-1]}")
        name, i = base, 0
        while name in self._rules or name in self._ref_rules.values():
            name, i = f"{base}{i}", i + 1
        # Reserved before visiting, so a recursive reference inside resolves to this same rule.
        self._ref_rules[ref] = name
        got = self.visit(self._refs[ref], name)
        if got != name:
            self._rules[name] = got
        return name


class GrammarBuilder:
    """Composes a GBNF grammar from JSON schemas and raw rules.

    Rules ``space`` (an optional single space, used inside the JSON values) and ``ws`` (a short run
    of whitespace, for use between larger pieces) are always defined.
    """

    def __init__(self) -> None:
        self._conv = _Converter()
        self._schemas = 0

    def schema(self, schema: dict[str, Any] | bool, name: str) -> str:
        """Add rules for one JSON value matching ``schema``; returns the rule to reference.

        ``name`` prefixes the schema's rule names (any text: it is sanitised). Raises ``ValueError``
        for a schema the converter cannot handle (``check_schema`` reports those properly first).
        """
        prefix = rule_name(name)
        if prefix == "root":
            prefix = "root-value"
        self._schemas += 1
        value = normalize(copy.deepcopy(schema))
        conv = self._conv
        conv.prefix = prefix
        try:
            value = conv.resolve_refs(value, f"schema{self._schemas}:")
            return str(conv.visit(value, prefix))
        except (AssertionError, KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"the schema cannot be turned into a grammar: {exc}") from exc

    @staticmethod
    def literal(text: str) -> str:
        """A GBNF string literal matching exactly ``text``."""
        return gbnf_literal(text)

    def rule(self, name: str, body: str) -> str:
        """Add ``name ::= body``; returns the rule's name (suffixed if ``name`` is taken by another body)."""
        return str(self._conv._add_rule(rule_name(name), body))

    def build(self, root: str) -> str:
        """The whole grammar: ``root ::= <root>`` and every rule added so far."""
        rules = dict(self._conv._rules)
        rules.setdefault("ws", _WS)
        lines = [] if root == "root" else [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in sorted(rules.items())]
        return "\n".join(lines) + "\n"


def schema_grammar(schema: dict[str, Any]) -> str:
    """A grammar for exactly one JSON value of ``schema`` (``response_format`` ``json_schema``)."""
    builder = GrammarBuilder()
    return builder.build(builder.schema(schema, "schema"))


def json_object_grammar() -> str:
    """A grammar for any one JSON object (``response_format`` ``json_object``)."""
    builder = GrammarBuilder()
    return builder.build(builder.schema({"type": "object"}, "json"))


def normalize(schema: Any) -> Any:
    """``schema`` rewritten into the forms the converter handles (in place for dicts; returns it).

    Every rewrite keeps or narrows the set of values the grammar produces, never widens it.
    """
    if schema is True or schema == {}:
        return {"type": list(ANY_VALUE_TYPES)}
    if not isinstance(schema, dict):
        return schema
    for key in ANNOTATIONS & schema.keys():
        del schema[key]
    for key in _SUBSCHEMA:
        if key in schema and key != "additionalProperties":
            schema[key] = normalize(schema[key])
    for key in _SUBSCHEMA_LIST:
        if isinstance(schema.get(key), list):
            schema[key] = [normalize(s) for s in schema[key]]
    for key in _SUBSCHEMA_MAP:
        if isinstance(schema.get(key), dict):
            schema[key] = {k: normalize(v) for k, v in schema[key].items()}
    extra = schema.get("additionalProperties")
    if "properties" in schema and extra is not False:
        # Extra keys may collide with declared ones in a grammar: produce only the declared ones.
        schema.pop("additionalProperties", None)
    elif isinstance(extra, dict) or extra is True:
        schema["additionalProperties"] = normalize(extra)
        if schema["additionalProperties"] == {"type": list(ANY_VALUE_TYPES)} and "properties" not in schema:
            # Any key, any value: the plain object rule.
            del schema["additionalProperties"]
            schema.setdefault("type", "object")
    if ("minItems" in schema or "maxItems" in schema) and "items" not in schema and "prefixItems" not in schema:
        schema["items"] = {"type": list(ANY_VALUE_TYPES)}
    if schema.get("items") is False and "prefixItems" not in schema:
        schema["maxItems"] = 0
        schema["items"] = {"type": list(ANY_VALUE_TYPES)}
    if "enum" in schema or "const" in schema:
        # The values are the grammar (the converter would look at a type list first).
        schema.pop("type", None)
    if "pattern" in schema and _may_be(schema.get("type"), "string"):
        schema["pattern"] = convertible_pattern(schema["pattern"])
    if "allOf" in schema and len(schema["allOf"]) == 1 and schema.keys() <= {"allOf", "$defs", "definitions"}:
        # A lone allOf (pydantic's way to describe a $ref) is its member.
        member = schema.pop("allOf")[0]
        if isinstance(member, dict):
            schema.update(member)
    types = schema.get("type")
    if isinstance(types, list) and len(types) == 1:
        schema["type"] = types[0]
    elif isinstance(types, list) and set(schema) - {"type"} and not ({"anyOf", "oneOf", "$ref"} & schema.keys()):
        # The converter's type-list branch drops every other keyword: one alternative per type.
        rest = {k: v for k, v in schema.items() if k != "type"}
        schema.clear()
        schema["anyOf"] = [dict(copy.deepcopy(rest), type=t) for t in types]
    if not (schema.keys() & CONVERTED - {"$defs", "definitions"}):
        schema["type"] = list(ANY_VALUE_TYPES)
    return schema


def _may_be(types: Any, name: str) -> bool:
    return types is None or types == name or (isinstance(types, list) and name in types)


def convertible_pattern(pattern: str) -> str:
    """``pattern`` rewritten for the converter, producing only what can stand raw in a JSON string.

    The result is anchored (an unanchored pattern matches anywhere, so any safe characters go around
    it); ``.``, classes and ``\\d``/``\\w``/``\\s`` become explicit classes without quotes,
    backslashes and control characters; escaped punctuation becomes a one-character class (the
    converter would pass the backslash on, which GBNF refuses). Raises ``ValueError`` naming the part
    of the pattern a grammar cannot produce.
    """
    core = pattern
    start = core.startswith("^")
    if start:
        core = core[1:]
    end = core.endswith("$") and _backslashes_before(core, len(core) - 1) % 2 == 0
    if end:
        core = core[:-1]
    body = _rewrite(core, pattern)
    if start and end:
        return f"^{body}$"
    anything = _class_text(_subtract(((0, 0x10FFFF),), _UNSAFE_IN_STRING), negated=False) + "*"
    return f"^{'' if start else anything}({body}){'' if end else anything}$"


def _backslashes_before(text: str, index: int) -> int:
    n = 0
    while index - n - 1 >= 0 and text[index - n - 1] == "\\":
        n += 1
    return n


def _rewrite(core: str, pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(core)
    while i < n:
        c = core[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError(f"the pattern /{pattern}/ ends with a lone backslash")
            e = core[i + 1]
            i += 2
            if e in _CLASS_ESCAPES:
                out.append(_class_text(_CLASS_ESCAPES[e], negated=False))
            elif e in _METACHARS:
                out.append("\\" + e)
            elif e.isalnum() or e in '"\\':
                raise ValueError(
                    f"the pattern /{pattern}/ uses \\{e}, which a grammar cannot produce "
                    "(supported escapes: \\d \\w \\s and escaped punctuation)"
                )
            else:
                out.append(_class_text(((ord(e), ord(e)),), negated=False))
        elif c == "[":
            i, text = _rewrite_class(core, i, pattern)
            out.append(text)
        elif c == ".":
            out.append(_class_text(_subtract(((0, 0x10FFFF),), _UNSAFE_IN_STRING), negated=False))
            i += 1
        elif c == "(" and core[i + 1 : i + 2] == "?":
            raise ValueError(
                f"the pattern /{pattern}/ uses a (?...) group (lookaround, non-capturing or named), "
                "which a grammar cannot produce"
            )
        elif c in "^$":
            raise ValueError(f"the pattern /{pattern}/ uses '{c}' inside; a grammar supports it only at the ends")
        elif c == '"' or ord(c) < 0x20 or ord(c) == 0x7F:
            raise ValueError(
                f"the pattern /{pattern}/ contains {c!r}, which must be escaped inside a JSON string "
                "and cannot be produced by a grammar"
            )
        elif c == "{":
            close = core.find("}", i)
            counts = core[i + 1 : close].split(",") if close > 0 else []
            if not counts or len(counts) > 2 or not all(x.strip().isdigit() or x.strip() == "" for x in counts):
                raise ValueError(f"the pattern /{pattern}/ has a '{{' that is not a repetition count")
            if any(x.strip() and int(x) > MAX_REPEAT for x in counts):
                raise ValueError(f"the pattern /{pattern}/ repeats more than {MAX_REPEAT} times")
            out.append(core[i : close + 1])
            i = close + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _rewrite_class(core: str, i: int, pattern: str) -> tuple[int, str]:
    """The class starting at ``core[i] == '['``: (index after it, its safe rewrite)."""
    i += 1
    negated = core[i : i + 1] == "^"
    if negated:
        i += 1
    chars: list[int] = []
    ranges: list[tuple[int, int]] = []
    first = True
    while True:
        if i >= len(core):
            raise ValueError(f"the pattern /{pattern}/ has an unclosed '['")
        c = core[i]
        if c == "]" and not first:
            i += 1
            break
        first = False
        if c == "\\":
            e = core[i + 1 : i + 2]
            i += 2
            if e in _CLASS_ESCAPES:
                ranges.extend(_CLASS_ESCAPES[e])
                continue
            simple = {"n": 0x0A, "r": 0x0D, "t": 0x09, "f": 0x0C, "v": 0x0B}
            if e in simple:
                point = simple[e]
            elif e in ("x", "u"):
                width = 2 if e == "x" else 4
                digits = core[i : i + width]
                if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise ValueError(f"the pattern /{pattern}/ has a bad \\{e} escape")
                point = int(digits, 16)
                i += width
            elif e and not e.isalnum():
                point = ord(e)
            else:
                raise ValueError(f"the pattern /{pattern}/ uses \\{e} in a class, which a grammar cannot produce")
        else:
            point = ord(c)
            i += 1
        if core[i : i + 1] == "-" and core[i + 1 : i + 2] not in ("]", ""):
            hi_c = core[i + 1]
            if hi_c == "\\":
                raise ValueError(f"the pattern /{pattern}/ has an escaped range end, which is not supported")
            if ord(hi_c) < point:
                raise ValueError(f"the pattern /{pattern}/ has a backwards range")
            ranges.append((point, ord(hi_c)))
            i += 2
        else:
            chars.append(point)
    ranges.extend((p, p) for p in chars)
    if negated:
        return i, _class_text(_merge(ranges + list(_UNSAFE_IN_STRING)), negated=True)
    safe = _subtract(_merge(ranges), _UNSAFE_IN_STRING)
    if not safe:
        raise ValueError(f"the pattern /{pattern}/ has a class with nothing a JSON string may hold raw")
    return i, _class_text(safe, negated=False)


def _merge(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _subtract(
    ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...], cut: tuple[tuple[int, int], ...]
) -> list[tuple[int, int]]:
    out = list(_merge(ranges))
    for c_lo, c_hi in cut:
        kept: list[tuple[int, int]] = []
        for lo, hi in out:
            if hi < c_lo or lo > c_hi:
                kept.append((lo, hi))
                continue
            if lo < c_lo:
                kept.append((lo, c_lo - 1))
            if hi > c_hi:
                kept.append((c_hi + 1, hi))
        out = kept
    return out


def _class_text(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...], *, negated: bool) -> str:
    def char(point: int) -> str:
        if point <= 0xFF:
            return f"\\x{point:02X}"
        if point <= 0xFFFF:
            return f"\\u{point:04X}"
        return f"\\U{point:08X}"

    items = "".join(char(lo) if lo == hi else f"{char(lo)}-{char(hi)}" for lo, hi in ranges)
    return f"[{'^' if negated else ''}{items}]"
