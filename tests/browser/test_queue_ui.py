"""Taking turns, as two logged-in people see it: while Alice's long generation runs, Bob's Send says how
many requests run before his and about how long; the Queue panel shows each their place (Bob his own,
"another user" for Alice's; Alice, the admin, Bob's name); Stop frees the model and Bob's reply comes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browserkit import open_chat, open_notebook, open_parameters, set_number
from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM
from userkit import ALICE, BOB, close_page, lab_users, log_in_page

pytestmark = pytest.mark.browser


def queue_table(page) -> str:
    """The Queue panel's table after a Refresh (both people's requests are in it: one runs, one waits)."""
    page.locator("#queue-panel").get_by_text("Queue").first.click()
    page.locator("#queue-refresh").click()
    view = page.locator("#queue-view")
    expect(view).to_contain_text("waiting", timeout=30_000)
    return view.inner_text()


def test_a_waiting_user_sees_their_place_and_the_queue(browser, tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    lab_users(user_dir)
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM, "--parallel", "1")  # one slot: a queue forms
    try:
        alice = log_in_page(browser, srv.url, *ALICE)
        bob = log_in_page(browser, srv.url, *BOB)
        # Alice: a generation that runs until she stops it
        open_parameters(alice)
        set_number(alice, "param-max_tokens", "4000")
        alice.locator("#param-ban_eos_token input[type=checkbox]").check()
        open_notebook(alice)
        alice.locator("#notebook-text textarea").fill("Once upon a time")
        alice.locator("#notebook-generate").click()
        alice.wait_for_function(
            "() => document.querySelector('#notebook-text textarea').value.length > 'Once upon a time'.length"
        )

        open_parameters(bob)
        set_number(bob, "param-max_tokens", "8")
        open_chat(bob)
        box = bob.locator("#chat-input textarea")
        box.fill("Hello")
        box.press("Enter")
        expect(bob.locator("#chat-send")).to_have_text(
            re.compile(r"Waiting: 1 request\(s\) before yours, about \d+ s"), timeout=30_000
        )

        bob.get_by_role("tab", name="Model").click()
        mine = queue_table(bob)
        assert re.search(r"another user\s+generating", mine), mine
        assert re.search(r"you\s+waiting", mine), mine
        assert "alice" not in mine  # others' names are the admin's to see
        alice.get_by_role("tab", name="Model").click()
        everyone = queue_table(alice)
        assert re.search(r"you\s+generating", everyone) and re.search(r"bob\s+waiting", everyone), everyone

        alice.get_by_role("tab", name="Notebook").click()
        alice.locator("#notebook-stop").click()
        bob.get_by_role("tab", name="Chat").click()
        bob.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length === 1")
        expect(bob.locator("#chat-send")).not_to_have_text(re.compile("Waiting"), timeout=60_000)
        close_page(alice)
        close_page(bob)
    finally:
        stop_server(srv)
