"""docs/first-steps.md, followed in Chromium: from ./start.sh to a chat whose system prompt survives a restart.

Each step checks what the walkthrough says the student sees. With ``WEBUI_DOC_SCREENSHOTS=1`` it
also saves the walkthrough's pictures (docs/img/first-steps-*.png, 1280x800); without it (CI)
the docs are left alone.
"""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from browserkit import bot_texts, open_chat, open_parameters, send, settle, wait_for_complete_reply, wait_text
from harness import make_dirs, start_server, stop_server
from testdata import PROJECT_DIR, SMOLLM
from webui.params import SamplingParams

pytestmark = pytest.mark.browser

DOC_IMG = PROJECT_DIR / "docs" / "img"
SYSTEM = "You are a friendly pirate. Always answer like a pirate, in two sentences at most."
LONG_REQUEST = "Write a very long story about a dragon who learns to cook. Make it at least twenty paragraphs."


def picture(page, name: str) -> None:
    """docs/img/first-steps-NAME.png when WEBUI_DOC_SCREENSHOTS=1 (what the student sees at this step)."""
    if os.environ.get("WEBUI_DOC_SCREENSHOTS") != "1":
        return
    path = DOC_IMG / f"first-steps-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size < 300_000, f"{path} is {path.stat().st_size} bytes: keep the docs light"


def open_page(browser, url: str):
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/")
    settle(page)
    return page


def start(root, model_dir, user_dir, *extra: str):
    """What ./start.sh does: server.py with the starter model as the default."""
    return start_server(root, model_dir, user_dir, "--default-model", SMOLLM, *extra)


def test_first_steps_walkthrough(browser, tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    srv = start(tmp_path / "run1", model_dir, user_dir)
    try:
        page = open_page(browser, srv.url)
        # 1. The Model tab: the starter model is loaded.
        wait_text(page, "#model-status", SMOLLM)
        assert "llama.cpp" in page.locator("#model-status").inner_text()
        picture(page, "model")

        # 2. The Parameters tab: the defaults (they keep a small model from looping) and the Default preset.
        open_parameters(page)
        defaults = SamplingParams()
        for name in ("max_tokens", "repeat_penalty"):  # (DRY is in a closed accordion)
            box = page.locator(f"#param-{name} input[type=number]")
            assert float(box.input_value()) == float(getattr(defaults, name)), name
        expect(page.locator("#preset-dropdown input")).to_have_value("Default")
        picture(page, "parameters")

        # 3. The Chat tab: a system prompt, a message, a reply.
        open_chat(page)
        page.locator("#chat-system textarea").fill(SYSTEM)
        page.locator("#chat-system textarea").blur()
        send(page, "Hello! Who are you?")
        assert len(bot_texts(page)) == 1 and bot_texts(page)[0].strip()
        picture(page, "chat")

        # 4. Stop: a long request, stopped while it streams; the partial reply stays.
        box = page.locator("#chat-input textarea")
        box.fill(LONG_REQUEST)
        box.press("Enter")
        page.wait_for_function(
            "() => { const b = document.querySelectorAll('#chat-box [data-testid=bot]');"
            " return b.length === 2 && b[1].innerText.length > 40; }",
            timeout=180_000,
        )
        stop = page.locator("#chat-stop")
        expect(stop).to_be_visible()
        picture(page, "stop")
        stop.click()
        wait_for_complete_reply(page)
        assert len(bot_texts(page)) == 2

        # 5. A reload brings the chat back with its system prompt.
        page.reload()
        settle(page)
        open_chat(page)
        wait_text(page, "#chat-box", "Hello! Who are you?")
        expect(page.locator("#chat-system textarea")).to_have_value(SYSTEM)
        page.context.close()

        # 6. A restart too (the server stopped and started again on the same folders), now with --api.
        stop_server(srv)
        srv = start(tmp_path / "run2", model_dir, user_dir, "--api")
        page = open_page(browser, srv.url)
        wait_text(page, "#model-status", SMOLLM)
        open_chat(page)
        wait_text(page, "#chat-box", "Hello! Who are you?")
        expect(page.locator("#chat-system textarea")).to_have_value(SYSTEM)
        assert len(bot_texts(page)) == 2
        picture(page, "restart")

        # 7. The API tab: the address and model name other programs use.
        page.get_by_role("tab", name="API").click()
        wait_text(page, "#api-status", f"{srv.url}/v1")
        wait_text(page, "#api-status", SMOLLM)
        picture(page, "api")
        page.context.close()
    finally:
        stop_server(srv)
