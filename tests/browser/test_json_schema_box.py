"""Parameters tab's "json schema" box: the Notebook's output follows the schema; a bad schema is a clear error."""

from __future__ import annotations

import json

import pytest

from browserkit import load_smollm, open_notebook, open_parameters, set_number, wait_text
from testdata import SMOLLM
from webui.structured.schema import validate

pytestmark = pytest.mark.browser

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}, "required": ["answer"]}
PROMPT = "<|im_start|>user\nIs the sky green? Reply in JSON.<|im_end|>\n<|im_start|>assistant\n"


def set_schema(page, text: str) -> None:
    open_parameters(page)
    box = page.locator("#param-json_schema textarea")
    box.fill(text)
    box.press("Tab")


def generate(page) -> None:
    open_notebook(page)
    page.locator("#notebook-text textarea").fill(PROMPT)
    page.locator("#notebook-generate").click()


def test_the_notebook_output_matches_the_schema_typed_in_the_box(page, server):
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    open_parameters(page)
    set_number(page, "param-max_tokens", "24")
    page.locator("#param-json_schema").wait_for()
    assert "JSON schema the reply must match" in page.locator("#param-json_schema").inner_text()
    set_schema(page, json.dumps(SCHEMA))
    generate(page)
    wait_text(page, "#notebook-stats", "tokens/s", timeout=180_000)
    text = page.locator("#notebook-text textarea").input_value()
    assert text.startswith(PROMPT)
    assert validate(SCHEMA, json.loads(text[len(PROMPT) :])) == []


def test_a_schema_a_grammar_cannot_enforce_is_a_clear_error(page, server):
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    bad = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}
    set_schema(page, json.dumps(bad))
    generate(page)
    toast = page.locator(".toast-body").first
    toast.wait_for()
    message = toast.inner_text()
    assert "json_schema uses 'multipleOf' at properties.n" in message and "cannot be enforced" in message
    assert page.locator("#notebook-text textarea").input_value() == PROMPT  # nothing generated

    set_schema(page, "{not json")
    generate(page)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.toast-body')].some(t => t.innerText.includes('not valid JSON'))"
    )
    set_schema(page, "")  # the module's server is shared: leave the box empty
