"""Checking JSON schemas before they become grammars, and checking values against them afterwards.

``check_schema`` accepts a schema only if the grammar made from it (``webui.structured.gbnf``) can
enforce every constraint in it: a keyword the grammar cannot enforce is an error naming the keyword
and where it is, never a constraint quietly dropped. ``validate`` checks a value after the fact (the
arguments of a tool call, a reply parsed as JSON).

What llama-cpp-python's ``SchemaConverter`` enforces, found by building grammars and testing values
against them with llama.cpp (``tests/unit/test_structured.py``): ``type`` (one or a list), ``enum``,
``const``, ``properties`` with ``required``, ``additionalProperties`` (without ``properties``, or
``false``), ``items``, ``prefixItems``, ``minItems``/``maxItems``, ``minLength``/``maxLength`` (on
plain strings), ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` (on an ``integer``
or ``number`` type: ``webui.structured.numbers``), ``pattern`` (a regex subset), ``format`` date/time/date-time/uuid, ``anyOf``, ``oneOf``
(when its alternatives cannot overlap), ``allOf`` (merging object properties) and local ``$ref``.
Everything in the JSON Schema vocabulary beyond that is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import llama_cpp
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError as JsonSchemaError

from webui.errors import SchemaError
from webui.structured.gbnf import ANNOTATIONS, CONVERTED, MAX_REPEAT, convertible_pattern, schema_grammar
from webui.structured.numbers import BOUNDS, integer_bounds, number_bounds

#: Largest schema accepted, as JSON text.
MAX_SCHEMA_BYTES = 64 * 1024
#: Deepest nesting of objects and arrays in a schema's JSON.
MAX_DEPTH = 24

#: Formats the grammar enforces (other formats are refused).
FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})

#: JSON Schema keywords (2020-12 and older drafts) that a grammar cannot enforce.
UNENFORCED = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "minProperties",
        "maxProperties",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
        "multipleOf",
        "additionalItems",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "$vocabulary",
    }
)

#: Every JSON Schema keyword that constrains (other keys are annotations or not JSON Schema at all).
VOCABULARY = CONVERTED | UNENFORCED | set(BOUNDS) | {"$id"}

# Keyword values that constrain nothing (``uniqueItems: false``...).
_NO_OP = {"uniqueItems": False, "minProperties": 0, "minContains": 1}
_STRUCTURAL = frozenset({"$defs", "definitions"})
_STRING_LENGTH = ("minLength", "maxLength")
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength")


def check_schema(schema: Any, where: str, *, strict: bool = True, loose: list[str] | None = None) -> dict[str, Any]:
    """``schema`` if a grammar can enforce all of it; otherwise ``SchemaError`` saying what and where.

    ``where`` names the schema in the request (``tools[0].function.parameters``). With ``strict``
    False (a tool or ``response_format`` sent without ``"strict": true``: the client asked for the
    schema's shape, not a guarantee) a constraint keyword the grammar does not enforce (``minimum``,
    ``uniqueItems``...) is not an error: it is described in ``loose`` for the caller to report
    (the value is still checked against the whole schema after generation).
    """
    if not isinstance(schema, dict):
        raise SchemaError(f"{where} must be a JSON object (a JSON schema), not {_kind(schema)}.")
    try:
        size = len(json.dumps(schema, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{where} is not plain JSON: {exc}.") from exc
    if size > MAX_SCHEMA_BYTES:
        raise SchemaError(
            f"{where} is too large for a grammar: {size // 1024} KB of JSON (at most {MAX_SCHEMA_BYTES // 1024} KB)."
        )
    if _depth(schema) > MAX_DEPTH:
        raise SchemaError(f"{where} is nested too deeply for a grammar (more than {MAX_DEPTH} levels).")
    try:
        Draft202012Validator.check_schema(schema)
    except JsonSchemaError as exc:
        at = _path(exc.absolute_path)
        raise SchemaError(f"{where} is not a valid JSON Schema: {exc.message} (at {at}).") from exc
    _Walker(schema, where, None if strict else (loose if loose is not None else [])).node(schema, "", top=True)
    try:
        grammar = schema_grammar(schema)
    except ValueError as exc:
        raise SchemaError(f"{where} cannot be turned into a grammar: {exc}.") from exc
    if not grammar_parses(grammar):
        raise SchemaError(f"{where} cannot be turned into a grammar llama.cpp accepts.")
    return schema


def validate(schema: dict[str, Any], value: Any) -> list[str]:
    """What is wrong with ``value`` against ``schema`` (empty: it matches), each naming where."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        problems.append(f"{_path(error.absolute_path)}: {error.message}")
    return problems


def grammar_parses(grammar: str) -> bool:
    """Whether llama.cpp parses ``grammar`` (no model needed)."""
    sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


class _Walker:
    """Walks every subschema, refusing what the grammar would not enforce."""

    def __init__(self, root: dict[str, Any], where: str, loose: list[str] | None = None) -> None:
        self.root = root
        self.where = where
        self.walked: set[str] = set()
        #: Not strict: unenforced keywords are listed here instead of refused.
        self.loose = loose

    def fail(self, text: str, path: str, tail: str = "") -> SchemaError:
        return SchemaError(f"{self.where} {text} at {path or 'the top level'}{tail}.")

    def unenforced(self, keyword: str, path: str, why: str = "", hint: str = "") -> SchemaError:
        return self.fail(f"uses '{keyword}'{why}", path, f", which cannot be enforced by a grammar{hint}")

    def node(self, schema: Any, path: str, *, top: bool = False) -> None:
        if schema is True:
            return
        if schema is False:
            raise self.fail("has the schema 'false' (no value can match it)", path)
        assert isinstance(schema, dict)  # check_schema already ran the metaschema
        for key in _STRUCTURAL & schema.keys():
            for name, sub in schema[key].items():
                self.node(sub, _join(path, f"{key}.{name}"))
        if "$id" in schema and not top:
            raise self.unenforced("$id", path, " inside the schema (it changes what $ref points to)")
        constraining = (schema.keys() & VOCABULARY) - _STRUCTURAL
        if "enum" in schema or "const" in schema:
            self.fixed_values(schema, path)
            return
        for keyword in sorted(constraining & UNENFORCED):
            if _NO_OP.get(keyword, object()) != schema[keyword]:
                if self.loose is None:
                    raise self.unenforced(keyword, path)
                self.loose.append(f"{self.where}: '{keyword}' at {path or 'the top level'}")
        if "$ref" in schema:
            self.ref(schema, path, constraining)
            return
        if "anyOf" in schema or "oneOf" in schema:
            self.alternatives(schema, path, constraining)
            return
        if "allOf" in schema:
            self.all_of(schema, path, constraining)
            return
        types = schema.get("type")
        type_set = set(types) if isinstance(types, list) else {types} if types else None
        self.strings(schema, path, type_set)
        self.numbers(schema, path, type_set)
        self.objects(schema, path, type_set)
        self.arrays(schema, path)

    def fixed_values(self, schema: dict[str, Any], path: str) -> None:
        """``enum``/``const``: the grammar writes the values, so each must satisfy the rest of the schema."""
        values = [schema["const"]] if "const" in schema else list(schema["enum"])
        rest = {k: v for k, v in schema.items() if k != "const" and k not in ANNOTATIONS}
        if "const" not in schema:
            rest.pop("enum", None)
        for key in _STRUCTURAL:
            if key in self.root:
                rest.setdefault(key, self.root[key])
        for value in values:
            if problems := validate(rest, value):
                raise self.fail(
                    f"lists the value {json.dumps(value)}, which does not match the rest of its schema",
                    path,
                    f" ({problems[0]})",
                )

    def ref(self, schema: dict[str, Any], path: str, constraining: set[str]) -> None:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise self.fail(
                f"uses '$ref': {json.dumps(ref)}",
                path,
                "; only references inside the schema (#/$defs/...) are supported",
            )
        target: Any = self.root
        for part in ref[2:].split("/"):
            if "~" in part or "%" in part or not isinstance(target, dict) or part not in target:
                raise self.fail(f"has a '$ref' {json.dumps(ref)} that points to nothing it can resolve", path)
            target = target[part]
        if not isinstance(target, dict | bool):
            raise self.fail(f"has a '$ref' {json.dumps(ref)} that does not point to a schema", path)
        if ref not in self.walked:
            self.walked.add(ref)
            self.node(target, ref[2:].replace("/", "."))
        for keyword in sorted(constraining - {"$ref"}):
            raise self.unenforced(keyword, path, " next to '$ref' (only the reference is used)")

    def alternatives(self, schema: dict[str, Any], path: str, constraining: set[str]) -> None:
        keyword = "oneOf" if "oneOf" in schema else "anyOf"
        for other in sorted(constraining - {keyword}):
            raise self.unenforced(other, path, f" next to '{keyword}' (move it into each alternative)")
        options = schema[keyword]
        for i, option in enumerate(options):
            self.node(option, _join(path, f"{keyword}[{i}]"))
        if keyword == "oneOf":
            resolved = [self.resolve(o) for o in options]
            for i in range(len(resolved)):
                for j in range(i + 1, len(resolved)):
                    if not _disjoint(resolved[i], resolved[j]):
                        raise self.fail(
                            f"uses 'oneOf' whose alternatives {i} and {j} may both match one value",
                            path,
                            "; a grammar cannot ensure that exactly one matches (use 'anyOf', or make them differ "
                            "in type or in a required constant property)",
                        )

    def all_of(self, schema: dict[str, Any], path: str, constraining: set[str]) -> None:
        parts = schema["allOf"]
        if len(parts) == 1 and constraining == {"allOf"}:
            self.node(parts[0], _join(path, "allOf[0]"))
            return
        for other in sorted(constraining - {"allOf", "type"}):
            raise self.unenforced(other, path, " next to 'allOf'")
        if schema.get("type", "object") != "object":
            raise self.unenforced("allOf", path, " on a non-object")
        seen: set[str] = set()
        for i, part in enumerate(parts):
            sub = _join(path, f"allOf[{i}]")
            self.node(part, sub)
            part = self.resolve(part)
            extra = (part.keys() & VOCABULARY) - {
                "properties",
                "required",
                "type",
                "additionalProperties",
            }
            if extra or part.get("type", "object") != "object" or part.get("additionalProperties", False) is not False:
                raise self.unenforced(
                    "allOf", path, " with members that are not plain objects (a grammar only merges their properties)"
                )
            names = set(part.get("properties", {}))
            if names & seen:
                raise self.unenforced("allOf", path, f" with the property {sorted(names & seen)[0]!r} in two members")
            seen |= names

    def strings(self, schema: dict[str, Any], path: str, types: set[str] | None) -> None:
        for keyword in _COUNTS:
            if schema.get(keyword, 0) > MAX_REPEAT:
                raise self.fail(
                    f"has '{keyword}' {schema[keyword]} (more than {MAX_REPEAT}: too large for a grammar)", path
                )
        if schema.get("minLength", 0) > schema.get("maxLength", MAX_REPEAT):
            raise self.fail("has minLength above maxLength (no value can match)", path)
        if schema.get("minItems", 0) > schema.get("maxItems", MAX_REPEAT):
            raise self.fail("has minItems above maxItems (no value can match)", path)
        stringy = types is None or "string" in types
        fmt = schema.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise self.unenforced(
                "format", path, f" {json.dumps(fmt)}", f" (the supported formats: {', '.join(sorted(FORMATS))})"
            )
        if stringy and "pattern" in schema:
            try:
                convertible_pattern(schema["pattern"])
            except ValueError as exc:
                raise self.fail("has a pattern a grammar cannot enforce", path, f": {exc}") from exc
            if fmt is not None:
                raise self.unenforced("format", path, " next to 'pattern' (only the pattern is used)")
        lengths = [k for k in _STRING_LENGTH if k in schema]
        if lengths and types is None:
            raise self.unenforced(lengths[0], path, ' without "type": "string"')
        if lengths and stringy and ("pattern" in schema or fmt is not None):
            other = "pattern" if "pattern" in schema else "format"
            raise self.unenforced(lengths[0], path, f" next to '{other}' (only the {other} is used)")

    def numbers(self, schema: dict[str, Any], path: str, types: set[str] | None) -> None:
        bounds = [k for k in BOUNDS if k in schema]
        if not bounds:
            return
        if types is None:
            # The grammar bounds a number it writes as one; without a type it may write any value.
            if self.loose is None:
                raise self.unenforced(bounds[0], path, ' without "type": "integer" or "number"')
            self.loose.append(f"{self.where}: '{bounds[0]}' at {path or 'the top level'}")
            return
        for kind, bounded in (("integer", integer_bounds), ("number", number_bounds)):
            if kind in types:
                try:
                    bounded(schema)
                except ValueError as exc:
                    raise self.fail(f"has bounds that no {kind} meets", path, f" ({exc})") from exc

    def objects(self, schema: dict[str, Any], path: str, types: set[str] | None) -> None:
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            self.node(sub, _join(path, f"properties.{name}"))
        if types is not None and "object" not in types:
            return
        for name in schema.get("required", []):
            if name not in properties:
                raise self.fail(
                    f"requires the property {name!r}",
                    path,
                    ", but it is not in 'properties' (a grammar only writes the properties it lists)",
                )
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and not properties:
            self.node(extra, _join(path, "additionalProperties"))

    def arrays(self, schema: dict[str, Any], path: str) -> None:
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if prefix is not None:
            if items not in (None, False):
                raise self.unenforced("items", path, " next to 'prefixItems' (only the tuple is used)")
            if not schema.get("minItems", 0) <= len(prefix) <= schema.get("maxItems", len(prefix)):
                raise self.unenforced(
                    "minItems/maxItems",
                    path,
                    f" with a {len(prefix)}-item 'prefixItems' (the grammar writes all of them)",
                )
            for i, sub in enumerate(prefix):
                self.node(sub, _join(path, f"prefixItems[{i}]"))
        elif items is not None and items is not False:
            self.node(items, _join(path, "items"))

    def resolve(self, schema: Any) -> Any:
        """``schema`` with local ``$ref`` chains followed."""
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            target: Any = self.root
            for part in schema["$ref"][2:].split("/"):
                target = target[part]
            schema, seen = target, seen + 1
        return schema


def _disjoint(a: Any, b: Any) -> bool:
    """Whether no value can match both ``a`` and ``b`` (true only when that is evident)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    values_a, values_b = _fixed(a), _fixed(b)
    if values_a is not None and values_b is not None:
        return not (values_a & values_b)
    types_a, types_b = _types(a), _types(b)
    if types_a is not None and types_b is not None and not (types_a & types_b):
        return True
    props_a, props_b = a.get("properties", {}), b.get("properties", {})
    for name in set(a.get("required", [])) & set(b.get("required", [])):
        fixed_a, fixed_b = _fixed(props_a.get(name)), _fixed(props_b.get(name))
        if fixed_a is not None and fixed_b is not None and not (fixed_a & fixed_b):
            return True
    return False


def _fixed(schema: Any) -> set[str] | None:
    """The values ``schema`` allows, as canonical JSON, if it lists them."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return {_canonical(schema["const"])}
    if "enum" in schema:
        return {_canonical(v) for v in schema["enum"]}
    return None


def _canonical(value: Any) -> str:
    # JSON Schema compares 1 and 1.0 as equal, true and 1 as different.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True)


def _types(schema: dict[str, Any]) -> set[str] | None:
    """The JSON types ``schema`` can match (``integer`` counted as ``number``), if evident."""
    types = schema.get("type")
    if types is None:
        return None
    names = set(types) if isinstance(types, list) else {types}
    return {"number" if t == "integer" else t for t in names}


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children: Iterator[Any] = iter(item.values() if isinstance(item, dict) else item)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the top level"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "a number"
