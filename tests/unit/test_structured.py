"""JSON schemas -> GBNF grammars, and which schema keywords a grammar can enforce.

Grammars are checked with llama.cpp's own grammar engine over SmolLM2's real vocabulary (loaded
vocabulary-only, no weights): a text is accepted when every one of its tokens is allowed in turn and
the grammar may end after it. The table of unenforced keywords is proven twice: the converter's
grammar lets a value that breaks the keyword through, and ``check_schema`` refuses the keyword.
"""

from __future__ import annotations

import ctypes
import json
import math

import llama_cpp
import pytest

from webui.errors import SchemaError, UnsupportedFeatureError
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams
from webui.structured.gbnf import GrammarBuilder, json_object_grammar, schema_grammar
from webui.structured.numbers import integer_bounds
from webui.structured.schema import MAX_SCHEMA_BYTES, check_schema, grammar_parses, validate

W = "response_format.json_schema.schema"


@pytest.fixture(scope="module")
def vocab(smollm_path):
    llm = llama_cpp.Llama(str(smollm_path), vocab_only=True, verbose=False)
    yield llm
    llm.close()


@pytest.fixture
def accepts(vocab):
    def run(grammar: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab._model.vocab, grammar.encode(), b"root")
        assert sampler, f"llama.cpp could not parse:\n{grammar}"
        try:

            def allowed(token: int) -> bool:
                data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
                candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
                return not math.isinf(data[0].logit)

            for token in vocab.tokenize(text.encode(), add_bos=False, special=False):
                if not allowed(token):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return allowed(vocab.token_eos())
        finally:
            llama_cpp.llama_sampler_free(sampler)

    return run


@pytest.fixture
def language(vocab):
    """``language(grammar)`` -> a function telling whether the grammar accepts a text (one sampler, reset)."""
    samplers = []

    def make(grammar: str):
        sampler = llama_cpp.llama_sampler_init_grammar(vocab._model.vocab, grammar.encode(), b"root")
        assert sampler, f"llama.cpp could not parse:\n{grammar}"
        samplers.append(sampler)

        def allowed(token: int) -> bool:
            data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            return not math.isinf(data[0].logit)

        def accepts(text: str) -> bool:
            llama_cpp.llama_sampler_reset(sampler)
            for token in vocab.tokenize(text.encode(), add_bos=False, special=False):
                if not allowed(token):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return allowed(vocab.token_eos())

        return accepts

    yield make
    for sampler in samplers:
        llama_cpp.llama_sampler_free(sampler)


def refused(schema, *words):
    with pytest.raises(SchemaError) as info:
        check_schema(schema, W)
    message = str(info.value)
    assert message.startswith(W), message
    for word in words:
        assert word in message, message
    return message


# --- the grammar builder -------------------------------------------------------------------------


def test_schema_grammar_accepts_exactly_the_schemas_values(accepts):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
        "required": ["answer"],
    }
    grammar = schema_grammar(schema)
    assert accepts(grammar, '{"answer": "yes"}')
    assert accepts(grammar, '{"answer":"no"} ')
    for bad in ['{"answer": "maybe"}', "{}", '{"answer": "yes"', 'Sure! {"answer": "yes"}']:
        assert not accepts(grammar, bad), bad


def test_json_object_grammar_is_any_object_and_only_an_object(accepts):
    grammar = json_object_grammar()
    assert accepts(grammar, '{"a": [1, 2.5, -3e4, {"b": null}], "c": true, "d": "x\\ny"}')
    assert accepts(grammar, "{}")
    for bad in ["[1]", '"text"', "{'a': 1}", '{"a": 1,}']:
        assert not accepts(grammar, bad), bad


def test_strings_never_hold_raw_control_characters_or_quotes(accepts):
    grammar = schema_grammar({"type": "string"})
    assert accepts(grammar, '"a\\nb \\"q\\" \\u00e9 é"')
    assert not accepts(grammar, '"a\nb"')
    assert not accepts(grammar, '"a"b"')


def test_literals_are_fully_escaped(accepts):
    assert GrammarBuilder.literal('a"b\\c\nd\x01') == '"a\\"b\\\\c\\nd\\x01"'
    tricky = ['he said "hi"', "C:\\path", "tab\there", "ünï"]
    grammar = schema_grammar({"enum": tricky})
    for value in tricky:
        assert accepts(grammar, json.dumps(value)), value
    assert not accepts(grammar, '"he said "')


def test_several_schemas_in_one_builder_do_not_clash(accepts):
    builder = GrammarBuilder()
    a = builder.schema(
        {
            "type": "object",
            "properties": {"node": {"$ref": "#/$defs/Node"}},
            "required": ["node"],
            "$defs": {
                "Node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}
            },
        },
        "tool_a",
    )
    b = builder.schema(
        {
            "type": "object",
            "properties": {"node": {"$ref": "#/$defs/Node"}},
            "required": ["node"],
            "$defs": {"Node": {"type": "integer"}},
        },
        "tool_b",
    )
    assert a != b and a.startswith("tool-a") and b.startswith("tool-b")
    call = builder.rule("call", f"{builder.literal('<call>')} ws ({a} | {b})")
    grammar = builder.build(call)
    assert grammar.startswith("root ::= call\n")
    assert "\nspace ::=" in grammar and "\nws ::=" in grammar
    assert accepts(grammar, '<call>{"node": {"kids": [{"kids": []}]}}')  # a's recursive Node
    assert accepts(grammar, '<call>{"node": 7}')  # b's Node
    assert not accepts(grammar, '<call>{"node": {"kids": [7]}}')
    assert not accepts(grammar, '{"node": 7}')


def test_rule_names_are_sanitised_and_a_taken_name_gets_a_new_one():
    builder = GrammarBuilder()
    assert builder.rule("my_rule!", '"a"') == "my-rule"
    assert builder.rule("my_rule!", '"a"') == "my-rule"
    assert builder.rule("my_rule!", '"b"') != "my-rule"
    assert grammar_parses(builder.build("my-rule"))


# --- what the grammar enforces --------------------------------------------------------------------

ENFORCED = [
    ({"type": "integer"}, ["-12", "0"], ["1.5", '"1"']),
    ({"type": "number"}, ["1.5", "-2e3"], ['"x"', "NaN"]),
    ({"type": "boolean"}, ["true"], ["1"]),
    ({"type": "null"}, ["null"], ["0"]),
    ({"type": ["string", "null"]}, ['"a"', "null"], ["1"]),
    ({"type": ["string", "null"], "maxLength": 2}, ['"ab"', "null"], ['"abc"']),
    ({"const": {"a": 1}}, ['{"a": 1}'], ['{"a": 2}']),
    ({"enum": ["a", 2, None]}, ['"a"', "2", "null"], ['"b"']),
    (
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a"]},
        ['{"a": 1}', '{"a": 1, "b": "x"}'],
        ['{"b": "x"}', '{"a": "1"}', '{"a": 1, "c": 2}'],
    ),
    ({"type": "object", "additionalProperties": {"type": "integer"}}, ['{"x": 1, "y": 2}'], ['{"x": "1"}']),
    ({"type": "object", "additionalProperties": False}, ["{}"], ['{"a": 1}']),
    (
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
        ["[1]", "[1, 2]"],
        ["[]", "[1, 2, 3]", '["a"]'],
    ),
    ({"type": "array", "minItems": 2}, ['[1, "x"]'], ["[1]"]),
    (
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        ['[1, "a"]'],
        ["[1, 2]", "[1]"],
    ),
    ({"type": "string", "minLength": 2, "maxLength": 3}, ['"ab"', '"abc"'], ['"a"', '"abcd"']),
    ({"type": "string", "pattern": "^\\d{3}-[a-z]+\\.x$"}, ['"123-ab.x"'], ['"12-ab.x"', '"123-abXx"']),
    ({"type": "string", "pattern": "ab"}, ['"xxaby"'], ['"ba"']),
    ({"type": "string", "pattern": "^.+$"}, ['"any thing"'], ['"a\\"b"', '""']),
    ({"type": "string", "format": "date"}, ['"2024-05-31"'], ['"31.05.2024"']),
    ({"type": "string", "format": "time"}, ['"10:20:30Z"'], ['"10:20"']),
    ({"type": "string", "format": "date-time"}, ['"2024-05-31T10:20:30+02:00"'], ['"2024-05-31"']),
    ({"type": "string", "format": "uuid"}, ['"123e4567-e89b-12d3-a456-426614174000"'], ['"123"']),
    ({"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["x"]}]}, ["1", '"x"'], ['"y"']),
    ({"oneOf": [{"type": "integer"}, {"type": "boolean"}]}, ["1", "true"], ['"1"']),
    (
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}},
                {"properties": {"b": {"type": "string"}}},
            ]
        },
        ['{"a": 1, "b": "x"}'],
        ['{"a": "1", "b": "x"}'],
    ),
    (
        {
            "type": "object",
            "properties": {"x": {"$ref": "#/$defs/X"}},
            "required": ["x"],
            "$defs": {"X": {"type": "integer"}},
        },
        ['{"x": 1}'],
        ['{"x": "1"}'],
    ),
    (
        {"type": "object", "properties": {"data": {}}, "required": ["data"]},
        ['{"data": [1, "x"]}', '{"data": 2}'],
        ["{}"],
    ),
    ({"description": "annotations only", "title": "anything"}, ["1", '{"a": [null]}'], ["nope"]),
]


@pytest.mark.parametrize(("schema", "good", "bad"), ENFORCED, ids=[json.dumps(c[0])[:60] for c in ENFORCED])
def test_enforced_keywords_pass_the_check_and_constrain_the_grammar(schema, good, bad, accepts):
    check_schema(schema, W)
    grammar = schema_grammar(schema)
    for text in good:
        assert accepts(grammar, text), text
        assert validate(schema, json.loads(text)) == [], text
    for text in bad:
        assert not accepts(grammar, text), text


# Each: a schema using a keyword llama-cpp-python's converter does not enforce, a value breaking it
# that the converter's grammar lets through, and the words the refusal names.
UNENFORCED = [
    ({"type": "integer", "multipleOf": 2}, "3", ["'multipleOf'"]),
    (
        {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}},
        '{"tags": ["a", "a"]}',
        ["'uniqueItems'", "at properties.tags", "cannot be enforced by a grammar"],
    ),
    ({"type": "array", "items": {"type": "integer"}, "contains": {"const": 2}}, "[1]", ["'contains'"]),
    ({"type": "object", "minProperties": 1}, "{}", ["'minProperties'"]),
    ({"type": "object", "maxProperties": 1}, '{"a": 1, "b": 2}', ["'maxProperties'"]),
    ({"type": "object", "patternProperties": {"^a": {"type": "integer"}}}, '{"a": "x"}', ["'patternProperties'"]),
    ({"type": "object", "propertyNames": {"maxLength": 1}}, '{"abc": 1}', ["'propertyNames'"]),
    (
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "dependentRequired": {"a": ["b"]},
        },
        '{"a": 1}',
        ["'dependentRequired'"],
    ),
    ({"type": "string", "not": {"const": "x"}}, '"x"', ["'not'"]),
    (
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "if": {"required": ["a"]},
            "then": {"required": ["b"]},
        },
        '{"a": 1}',
        ["'if'"],
    ),
    ({"type": "string", "format": "email"}, '"not an address"', ["'format' \"email\""]),
    ({"type": "string", "pattern": "^[a-z]+$", "minLength": 3}, '"a"', ["'minLength'", "next to 'pattern'"]),
    ({"type": "object", "required": ["a"]}, "{}", ["'a'", "not in 'properties'"]),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "1", ["'oneOf'", "alternatives 0 and 1"]),
    ({"type": "integer", "anyOf": [{"type": "integer"}, {"type": "string"}]}, '"x"', ["'type' next to 'anyOf'"]),
]


@pytest.mark.parametrize(("schema", "breaking", "words"), UNENFORCED, ids=[json.dumps(c[0])[:60] for c in UNENFORCED])
def test_unenforced_keywords_are_refused_naming_keyword_and_place(schema, breaking, words, accepts):
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(json.loads(json.dumps(schema)), "x"), "")
    raw = converter.format_grammar()
    assert accepts(raw, breaking), "the converter enforces this after all: allow it in check_schema"
    assert validate(schema, json.loads(breaking)) != []
    refused(schema, *words)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "uniqueItems": False, "items": {"type": "integer"}},
        {"type": "object", "minProperties": 0},
        {"type": "string", "title": "T", "description": "D", "examples": ["x"], "default": "x", "$comment": "c"},
        {"type": "string", "deprecated": True, "readOnly": True, "writeOnly": False},
        {"type": "object", "properties": {"a": {"type": "string"}}, "x-vendor": 1, "nullable": True},
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:x", "type": "integer"},
        {
            "allOf": [{"$ref": "#/$defs/C"}],
            "description": "pydantic's described $ref",
            "$defs": {"C": {"enum": ["r", "g"]}},
        },
        {"enum": [1, 2], "minimum": 1},  # the values are the grammar, and they meet the minimum
    ],
)
def test_annotations_and_keywords_that_constrain_nothing_are_fine(schema):
    assert check_schema(schema, W) is schema
    assert grammar_parses(schema_grammar(schema))


def test_not_an_object_invalid_too_large_too_deep():
    refused([1, 2], "must be a JSON object", "an array")
    refused("{}", "must be a JSON object", "a string")
    refused({"type": "strin"}, "not a valid JSON Schema", "at type")
    refused({"type": "array", "items": [{"type": "integer"}]}, "not a valid JSON Schema")
    big = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(700)}}
    assert len(json.dumps(big)) > MAX_SCHEMA_BYTES
    refused(big, "too large", "64 KB")
    deep: dict = {"type": "array"}
    node = deep
    for _ in range(30):
        node["items"] = {"type": "array"}
        node = node["items"]
    refused(deep, "nested too deeply", "24")
    refused({"type": "array", "items": {"type": "integer"}, "maxItems": 100_000}, "'maxItems' 100000", "too large")


def test_refs_are_local_only():
    refused({"$ref": "https://example.com/s.json"}, "https://example.com/s.json", "only references inside")
    refused({"$ref": "#/$defs/Missing"}, "points to nothing")
    refused({"$ref": "#/$defs/A", "type": "object", "$defs": {"A": {"type": "object"}}}, "'type' next to '$ref'")
    refused({"$ref": "#/$defs/A", "$defs": {"A": {"type": "integer", "multipleOf": 3}}}, "'multipleOf'", "at $defs.A")


def test_enum_values_must_match_the_rest_of_their_schema():
    refused({"type": "string", "enum": ["a", 1]}, "the value 1", "not of type 'string'")


def test_patterns_a_grammar_cannot_produce_are_refused_clearly():
    refused({"type": "string", "pattern": "^(?=a)b$"}, "(?...)")
    refused({"type": "string", "pattern": "^\\bword$"}, "\\b")
    refused({"type": "string", "pattern": 'say "hi"'}, "escaped inside a JSON string")
    refused({"type": "string", "pattern": "^a{5000}$"}, "more than 1000")
    refused({"type": "object", "properties": {"p": {"type": "string", "pattern": "^a$b$"}}}, "at properties.p")


def test_other_formats_and_misplaced_lengths_are_refused():
    refused({"type": "integer", "format": "int32"}, "'format' \"int32\"", "supported formats")
    refused({"properties": {"a": {"minLength": 3}}}, "'minLength'", 'without "type": "string"', "at properties.a")
    refused(
        {"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
        "'items' next to 'prefixItems'",
    )
    refused({"type": "string", "minLength": 5, "maxLength": 2}, "minLength above maxLength")
    refused({"type": "object", "properties": {"a": False}}, "'false'", "at properties.a")


def test_validate_names_the_place_of_each_problem():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}}},
        "required": ["a"],
    }
    assert validate(schema, {"a": 1, "b": ["x"]}) == []
    assert validate(schema, {"a": "1", "b": ["x", 2]}) == [
        "a: '1' is not of type 'integer'",
        "b[1]: 2 is not of type 'string'",
    ]
    assert validate(schema, {}) == ["the top level: 'a' is a required property"]


# --- the json_schema parameter in the scheduler -----------------------------------------------------


@pytest.fixture
def fake_generator(tmp_path, loaders):
    d = tmp_path / "models"
    d.mkdir()
    (d / "a.gguf").write_bytes(b"GGUF ok")
    manager = ModelManager(d, LoadOptions(n_ctx=400), loaders=loaders)
    manager.load("a.gguf", "fake")
    return Generator(manager)


def test_a_loader_without_grammars_refuses_json_schema(fake_generator):
    with pytest.raises(UnsupportedFeatureError, match="cannot constrain the output to a JSON schema"):
        fake_generator.generate("Hi", SamplingParams(max_tokens=2, json_schema='{"type": "object"}'))
    text, _ = fake_generator.generate("Hi", SamplingParams(max_tokens=2, json_schema="  "))
    assert text


def test_json_schema_is_a_preset_field(tmp_path):
    from webui.presets import PresetStore

    store = PresetStore(tmp_path)
    store.save("Strict", SamplingParams(json_schema='{"type": "object"}'))
    assert store.load("Strict").params.json_schema == '{"type": "object"}'


# --- numeric bounds (the converter ignores them; webui.structured.numbers writes the rule) ----------

INTEGER_RANGES = [
    {"minimum": 1},
    {"minimum": 0},
    {"minimum": -5},
    {"minimum": 37},
    {"maximum": 100},
    {"maximum": -3},
    {"maximum": 0},
    {"minimum": 1, "maximum": 5},
    {"minimum": -10, "maximum": 10},
    {"minimum": 0, "maximum": 255},
    {"minimum": 100, "maximum": 999},
    {"minimum": 37, "maximum": 1234},
    {"minimum": -1234, "maximum": -37},
    {"minimum": -99, "maximum": 1000},
    {"minimum": 7, "maximum": 7},
    {"minimum": -7, "maximum": -7},
    {"minimum": 0, "maximum": 0},
    {"minimum": 123456, "maximum": 98765432101},
    {"minimum": -(2**63), "maximum": 2**63 - 1},  # int64: the grammar stops at 16 digits
    {"exclusiveMinimum": 0, "exclusiveMaximum": 10},
    {"exclusiveMinimum": -1.5, "maximum": 2.7},  # fractional bounds on integers: -1..2
    {"minimum": 3, "exclusiveMinimum": 5, "maximum": 20, "exclusiveMaximum": 15},  # the tighter of each
]


def _windows(lo: int, hi: int) -> set[int]:
    near = set()
    for end in (lo, hi):
        near |= set(range(end - 30, end + 31))
    if hi - lo < 400:
        near |= set(range(lo, hi + 1))
    edges = {10**k + d for k in range(1, 18) for d in (-1, 0, 1)}
    return near | edges | {-v for v in edges} | {0, 1, -1, 42, -42, 500, -500}


@pytest.mark.parametrize("bounds", INTEGER_RANGES, ids=[json.dumps(b) for b in INTEGER_RANGES])
def test_a_bounded_integer_grammar_accepts_exactly_the_integers_in_range(bounds, language):
    schema = {"type": "integer", **bounds}
    check_schema(schema, W)
    lo, hi = integer_bounds(schema)
    assert max(lo, -(10**16)) == lo and hi <= max(10**16 - 1, lo)  # bounded length on an open side
    accepts = language(schema_grammar(schema))
    wrong = []
    for value in sorted(_windows(lo, hi)):
        inside = lo <= value <= hi
        if accepts(str(value)) != inside:
            wrong.append(value)
        if inside:
            assert validate(schema, value) == [], value
    assert wrong == [], f"wrongly {'accepted' if lo <= wrong[0] <= hi else 'refused'}: {wrong[:10]}"
    # Only JSON spellings: no leading zeros, no plus sign, no negative zero, no fraction or exponent.
    for text in ["-0", "+1", "1.0", "1e1", "00", "-", ""] + [f"0{v}" for v in (lo, hi) if v > 0]:
        assert not accepts(text), text


def test_bounded_integer_edges_exactly(language):
    accepts = language(schema_grammar({"type": "integer", "minimum": 1, "maximum": 5}))
    assert [v for v in range(-20, 40) if accepts(str(v))] == [1, 2, 3, 4, 5]
    assert accepts("3 ")
    accepts = language(schema_grammar({"type": "integer", "maximum": -3}))
    assert accepts("-3") and accepts("-9999999999999999") and not accepts("-2") and not accepts("0")
    assert not accepts("-10000000000000000")  # 17 digits: past the converter's length too


NUMBER_CASES = [
    (
        {"maximum": 5},
        ["5", "5.0", "5.000", "4.9999", "0", "-3.25", "-9999999999999999.5"],
        ["5.1", "5.0001", "6", "50", "1e1", "-0", "-0.0"],
    ),
    (
        {"minimum": 0.25, "exclusiveMaximum": 1.5},
        ["0.25", "0.250", "0.3", "1", "1.0", "1.4999", "1.49999999"],
        ["0.2499", "0.2", "0", "1.5", "1.50", "2", "-0.3"],
    ),
    ({"exclusiveMinimum": 0}, ["0.001", "1", "12.5"], ["0", "0.0", "0.000", "-0.001", "-1"]),
    ({"minimum": -2.5, "maximum": -1}, ["-2.5", "-2.49", "-1", "-1.0", "-2"], ["-2.51", "-3", "-0.99", "0", "1"]),
    ({"minimum": -1, "maximum": 1}, ["-1", "-0.5", "0", "0.75", "1.00"], ["-1.01", "1.0001", "2", "-2"]),
    ({"minimum": 1, "maximum": 1}, ["1", "1.0"], ["1.01", "0.99"]),
    ({"minimum": 0, "maximum": 100}, ["0", "99.99", "100", "37.5"], ["100.01", "101", "-1"]),
]


@pytest.mark.parametrize(("bounds", "good", "bad"), NUMBER_CASES, ids=[json.dumps(c[0]) for c in NUMBER_CASES])
def test_a_bounded_number_grammar_accepts_the_decimals_in_range(bounds, good, bad, language):
    schema = {"type": "number", **bounds}
    check_schema(schema, W)
    accepts = language(schema_grammar(schema))
    for text in good:
        assert accepts(text), text
        assert validate(schema, json.loads(text)) == [], text
    for text in bad:
        assert not accepts(text), text


def test_bounded_numbers_match_the_bounds_over_a_grid(language):
    from decimal import Decimal

    schema = {"type": "number", "exclusiveMinimum": -1.25, "maximum": 2.5}
    accepts = language(schema_grammar(schema))
    wrong = []
    for hundredths in range(-160, 290, 3):
        value = Decimal(hundredths) / 100
        for text in {f"{value:.2f}", f"{value:.1f}", f"{value:f}"}:
            if text.startswith("-") and Decimal(text) == 0:
                continue
            if accepts(text) != (Decimal("-1.25") < Decimal(text) <= Decimal("2.5")):
                wrong.append(text)
    assert wrong == []


def test_an_accepted_decimal_also_passes_the_bound_as_a_float(language):
    # 1000 - 1e-16 is a different decimal but the same float as 1000: it must not get through.
    schema = {"type": "number", "exclusiveMaximum": 1000}
    accepts = language(schema_grammar(schema))
    assert accepts("999.99") and not accepts("999.9999999999999999")
    assert validate(schema, json.loads("999.9999999999999999")) != []


def test_bounds_are_checked_for_sense_and_placement():
    refused({"type": "integer", "minimum": 3, "maximum": 2}, "bounds that no integer meets", "at least 3 and at most 2")
    refused({"type": "integer", "minimum": 1.2, "maximum": 1.8}, "no integer meets")
    refused({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1}, "no number meets")
    refused({"properties": {"n": {"minimum": 1}}}, "'minimum'", 'without "type"', "at properties.n")
    refused({"type": "integer", "minimum": 1, "anyOf": [{"maximum": 3}]}, "'minimum' next to 'anyOf'")
    loose: list[str] = []
    check_schema({"minimum": 1}, W, strict=False, loose=loose)
    assert loose == [f"{W}: 'minimum' at the top level"]
    # On the other types a bound constrains nothing; with a type list each type keeps its own.
    check_schema({"type": "string", "minimum": 1}, W)
    check_schema({"type": ["integer", "null"], "minimum": 1, "maximum": 3}, W)


def test_a_pydantic_model_with_field_bounds_is_enforced(language):
    from pydantic import BaseModel, Field

    class Rating(BaseModel):
        stars: int = Field(ge=1, le=5)
        share: float = Field(gt=0, le=1)
        bonus: int | None = Field(default=None, ge=-5, lt=0)
        comment: str

    schema = Rating.model_json_schema()
    check_schema(schema, W)
    accepts = language(schema_grammar(schema))
    assert accepts('{"stars": 4, "share": 0.5, "comment": "ok"}')
    assert accepts('{"stars": 1, "share": 1.0, "comment": "", "bonus": -5}')
    assert accepts('{"stars": 5, "share": 1, "comment": "x", "bonus": null}')
    for bad in [
        '{"stars": 0, "share": 0.5, "comment": "ok"}',
        '{"stars": 6, "share": 0.5, "comment": "ok"}',
        '{"stars": 3, "share": 0, "comment": "ok"}',
        '{"stars": 3, "share": 1.01, "comment": "ok"}',
        '{"stars": 3, "share": 0.5, "comment": "ok", "bonus": 0}',
        '{"stars": 3, "share": 0.5, "comment": "ok", "bonus": -6}',
    ]:
        assert not accepts(bad), bad
        assert validate(schema, json.loads(bad)) != [], bad
