"""A pick in a dropdown acts once, and only a pick acts, in real Chromium against the real server.py.

Gradio 6.31's dropdown sends its ``.input`` event twice for a pick with the mouse and once more
whenever it merely loses focus; it sends no ``.select`` for a pick with the keyboard. Before
``on_pick`` (webui/ui/common.py) the second sending of a preset pick, answered late on a busy
machine, reset a number typed just after it (CI saw it), and clicking the preset list open and
closed reset every edited parameter to the preset's values; a character picked with the keyboard
did not open.

What the page sends is read from its requests: each pick sends the handler its value at most once;
a repeat reaches the server as ``null``, which changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from browserkit import choose, open_chat, open_parameters, set_number, wait_text

pytestmark = pytest.mark.browser


class Sent:
    """The one-value inputs (``data: [x]``) the page sends to the server's event handlers."""

    def __init__(self, page: Any) -> None:
        self.values: list[Any] = []
        page.on("request", self._seen)
        page.evaluate("() => 0")  # Playwright subscribes without waiting; this round trip does

    def _seen(self, request: Any) -> None:
        if "/gradio_api/" not in request.url or request.method != "POST":
            return
        try:
            data = json.loads(request.post_data or "{}").get("data")
        except ValueError:
            return
        if isinstance(data, list) and data and isinstance(data[0], (str, type(None))):
            self.values.append(data[0])

    def count(self, value: Any) -> int:
        return self.values.count(value)


def test_a_preset_picked_with_the_mouse_is_loaded_once_and_a_number_typed_after_it_stays(page):
    open_parameters(page)
    sent = Sent(page)
    choose(page, "preset-dropdown", "Creative")
    page.wait_for_function("() => document.querySelector('#preset-name textarea').value === 'Creative'")
    page.wait_for_function("() => true")  # let the page send the repeat it makes on losing focus
    set_number(page, "param-max_tokens", "77")
    page.wait_for_timeout(1500)  # time for a late answer to a repeated load to land (it must not come)
    assert sent.count("Creative") == 1, sent.values
    assert None in sent.values, f"the dropdown no longer repeats its pick: {sent.values} (on_pick may go)"
    assert float(page.locator("#param-max_tokens input[type=number]").input_value()) == 77


def test_opening_and_closing_the_preset_list_keeps_edited_values(page):
    open_parameters(page)
    choose(page, "preset-dropdown", "Deterministic")
    page.wait_for_function("() => document.querySelector('#preset-name textarea').value === 'Deterministic'")
    set_number(page, "param-max_tokens", "55")
    sent = Sent(page)
    page.locator("#preset-dropdown input").click()  # open the list to look, then leave it without a pick
    page.locator("#preset-dropdown [role=listbox]").wait_for(state="attached")
    page.locator("#preset-name textarea").click()
    page.wait_for_function("() => !document.querySelector('#preset-dropdown [role=listbox]')")
    page.wait_for_timeout(1500)
    assert "Deterministic" not in sent.values, f"leaving the list reloaded the preset: {sent.values}"
    assert float(page.locator("#param-max_tokens input[type=number]").input_value()) == 55


def test_a_character_picked_with_the_keyboard_opens(page):
    open_chat(page)
    box = page.locator("#chat-character input")
    box.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("Tutor")  # the list narrows to it, highlighted
    page.keyboard.press("Enter")
    wait_text(page, "#chat-box", "What would you like to learn about today?")  # its greeting opens its chat
    assert box.input_value() == "Tutor"
