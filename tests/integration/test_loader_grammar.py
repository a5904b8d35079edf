"""Grammars on both local loaders, on the real SmolLM2 weights: GBNF, JSON, and lazy grammars.

A lazy grammar lets the model write freely until a trigger regex matches, then holds the rest
to the grammar. SmolLM2 answers the Paris question with "The capital of France is Paris."
when free, so "Paris" is a trigger it surely writes.
"""

from __future__ import annotations

import json
import re
import threading

import pytest

from testdata import PARIS_PROMPT
from webui.errors import GrammarError
from webui.loaders.base import StreamExtras
from webui.loaders.llamacpp import LlamaCppBackend
from webui.loaders.transformers import TransformersBackend
from webui.params import LoadOptions, SamplingParams

pytestmark = pytest.mark.integration

YES_NO = 'root ::= "yes" | "no"'
JSONISH = r"""root ::= "{" ws "\"city\"" ws ":" ws string ws "," ws "\"people\"" ws ":" ws [0-9]+ ws "}"
string ::= "\"" [A-Za-z ]+ "\""
ws ::= [ ]?
"""
#: After the trigger only letters, then "!" (the model never writes that freely).
AFTER_PARIS = 'root ::= "Paris" [a-z]+ "!"'
TOOL_CALL = 'root ::= "<tool_call>" [a-z]+ "</tool_call>"'
CATS = "<|im_start|>user\nWrite a sentence about cats.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module", params=["llama.cpp", "transformers"])
def backend(request, smollm_path):
    if request.param == "llama.cpp":
        loaded = LlamaCppBackend.load(smollm_path, LoadOptions(n_ctx=1024))
    else:
        loaded = TransformersBackend.load(request.getfixturevalue("hf_checkpoint"), LoadOptions(n_ctx=1024))
    yield loaded
    loaded.close()


def generate(backend, prompt: str, grammar: str = "", triggers: tuple[str, ...] = (), max_tokens: int = 24) -> str:
    params = SamplingParams(do_sample=False, max_tokens=max_tokens, grammar_string=grammar)
    chunks = backend.stream(prompt, params, threading.Event(), StreamExtras(grammar_triggers=triggers))
    return "".join(c.text for c in chunks)


def test_capabilities(backend):
    assert backend.capabilities.grammar and backend.capabilities.lazy_grammar and backend.capabilities.logprobs
    assert "grammar_string" in backend.supported_params


def test_yes_no_grammar(backend):
    assert generate(backend, PARIS_PROMPT, YES_NO) in ("yes", "no")


def test_json_grammar_gives_parseable_json(backend):
    text = generate(backend, PARIS_PROMPT, JSONISH, max_tokens=40)
    value = json.loads(text)
    assert set(value) == {"city", "people"} and isinstance(value["people"], int)


def test_lazy_grammar_is_free_before_the_trigger_and_bound_after(backend):
    free = generate(backend, PARIS_PROMPT)
    assert "Paris" in free
    text = generate(backend, PARIS_PROMPT, AFTER_PARIS, triggers=("Paris",))
    before, _, after = text.partition("Paris")
    assert before == free[: free.index("Paris")]  # the free part is what the model writes anyway
    assert re.fullmatch(r"[a-z]*!?", after), text
    assert after  # the grammar went on: "." after "Paris" would have been free text


def test_lazy_grammar_never_triggered_leaves_the_text_free(backend):
    assert generate(backend, CATS, TOOL_CALL, triggers=("<tool_call>",)) == generate(backend, CATS)


def test_non_lazy_grammar_constrains_from_the_start(backend):
    text = generate(backend, CATS, TOOL_CALL)
    assert text.startswith("<tool_call>") and re.fullmatch(r"<tool_call>[a-z]*(</tool_call>)?", text[:80])


def test_text_at_the_trigger_that_does_not_fit_is_an_error_not_a_crash(backend):
    with pytest.raises(GrammarError, match="does not fit"):
        generate(backend, PARIS_PROMPT, TOOL_CALL, triggers=("Paris",))
    assert "Paris" in generate(backend, PARIS_PROMPT)  # the model still works afterwards


@pytest.mark.parametrize(
    ("grammar", "triggers"),
    [("root ::= undefined_rule", ()), (YES_NO, ("(",)), (YES_NO, ("a*",))],
)
def test_bad_grammar_or_trigger(backend, grammar, triggers):
    with pytest.raises(GrammarError):
        generate(backend, PARIS_PROMPT, grammar, triggers=triggers)


def test_json_schema_on_transformers(backend):
    if not isinstance(backend, TransformersBackend):
        pytest.skip("the llama.cpp loader gets the schema as a GBNF grammar from the scheduler")
    schema = {"type": "object", "properties": {"yes": {"type": "boolean"}}, "required": ["yes"]}
    params = SamplingParams(do_sample=False, max_tokens=30, json_schema=json.dumps(schema))
    text = "".join(c.text for c in backend.stream(PARIS_PROMPT, params, threading.Event()))
    assert isinstance(json.loads(text)["yes"], bool)
