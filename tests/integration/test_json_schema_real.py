"""The ``json_schema`` sampling parameter constrains what SmolLM2 really writes (through the Generator)."""

import json

import pytest

from harness import smollm_generator
from webui.errors import SchemaError
from webui.params import SamplingParams
from webui.structured.schema import validate

pytestmark = pytest.mark.integration

ASK = "<|im_start|>user\nIs the sky green? Reply in JSON.<|im_end|>\n<|im_start|>assistant\n"
YES_NO = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}, "required": ["answer"]}


@pytest.fixture(scope="module")
def gen(smollm_path, tmp_path_factory):
    yield from smollm_generator(smollm_path, tmp_path_factory, n_ctx=512)


def test_free_text_is_not_json_but_the_schema_makes_it_so(gen):
    free, _ = gen.generate(ASK, SamplingParams(do_sample=False, max_tokens=24))
    with pytest.raises(ValueError):
        json.loads(free)
    text, stats = gen.generate(ASK, SamplingParams(do_sample=False, max_tokens=24, json_schema=json.dumps(YES_NO)))
    assert stats.finish_reason == "stop"
    assert validate(YES_NO, json.loads(text)) == []


def test_a_richer_schema_with_sampling_on(gen):
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "pattern": "^[A-Z][a-z]{1,12}$"},
            "year": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "minItems": 1, "maxItems": 2},
        },
        "required": ["city", "year", "tags"],
    }
    prompt = "<|im_start|>user\nName a city, a year and a tag as JSON.<|im_end|>\n<|im_start|>assistant\n"
    for seed in (1, 2):
        text, stats = gen.generate(prompt, SamplingParams(seed=seed, max_tokens=80, json_schema=json.dumps(schema)))
        assert stats.finish_reason == "stop", text
        assert validate(schema, json.loads(text)) == [], text


def test_a_schema_the_grammar_cannot_enforce_or_bad_json_is_refused(gen):
    bad = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}
    with pytest.raises(SchemaError, match=r"json_schema uses 'multipleOf' at properties\.n"):
        gen.generate(ASK, SamplingParams(max_tokens=4, json_schema=json.dumps(bad)))
    with pytest.raises(SchemaError, match="json_schema is not valid JSON"):
        gen.generate(ASK, SamplingParams(max_tokens=4, json_schema="{type: object}"))


def test_an_explicit_grammar_from_the_caller_wins_over_the_parameter(gen):
    # The API's tool/response_format grammar (Prepared.grammar) is the request's own: json_schema yields.
    from webui.generation.scheduler import Prepared

    def prepare(loaded, params):
        return Prepared(prompt=ASK, grammar='root ::= "ok"')

    job = gen.submit(prepare=prepare, params=SamplingParams(max_tokens=8, json_schema=json.dumps(YES_NO)))
    assert job.result() == "ok"
