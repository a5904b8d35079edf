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
    ({"type": "integer", "minimum": 5}, "3", ["'minimum'"]),
    ({"type": "integer", "maximum": 5}, "30", ["'maximum'"]),
    ({"type": "number", "exclusiveMinimum": 0}, "0", ["'exclusiveMinimum'"]),
    ({"type": "number", "exclusiveMaximum": 0}, "0", ["'exclusiveMaximum'"]),
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
    refused({"$ref": "#/$defs/A", "$defs": {"A": {"type": "integer", "maximum": 3}}}, "'maximum'", "at $defs.A")


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
