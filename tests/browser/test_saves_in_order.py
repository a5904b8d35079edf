"""What is typed is on disk as typed, to the last character, in real Chromium against server.py.

The Notebook text and the chat's system prompt are saved as they are typed. Two ways to lose the end:
- the page's last "input" event for characters typed without a key (an IME's or a paste's inserted
  text, here Playwright's insertText for "你好") can be lost when the box is left at once for another
  tab: seen in CI and 2-5 times in 15 here on a loaded machine, with a notebook saved without its
  last words. Leaving the box (blur) saves it too, as the chat's set-up boxes already did.
- saves run side by side could finish newest first and leave an older text. The server here is
  ``tests/slow_saves.py``: server.py whose first saves of notebook.txt and settings.yaml are slow,
  the earliest slowest (the first one 3 s, still running when the box is left), so a page or server
  that let them overlap leaves a shorter text. It did for the chat's set-up, whose keystroke and blur
  saves ran side by side with nothing ordering them: "You are" on disk, in CI once and here every
  time with the 3 s first write, until the saves of a file kept the order their requests came in
  (``webui.storage.in_order``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browserkit import open_chat, open_notebook, settle
from harness import make_dirs, wait_until
from server_process import start_webui
from webui.services import SAVED_BOXES
from webui.storage import read_yaml

pytestmark = pytest.mark.browser

SLOW_SAVES = Path(__file__).resolve().parent.parent / "slow_saves.py"
NOTES = "Lab 3 notes: top_p 0.9 kept the answers on topic. ÄÖ 你好"
SYSTEM = "You are a patient tutor. 你好"
LAST_SLOW_WRITE = 3.0  # tests/slow_saves.py's FIRST_WRITE: no save waits longer than this


def system_prompt_saved(settings: Path) -> str:
    if not settings.is_file():
        return ""
    return str((read_yaml(settings).get("chat_setup") or {}).get("system_prompt", ""))


def test_the_last_keystroke_is_the_text_on_disk(browser, tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    srv = start_webui(tmp_path, "--model-dir", str(model_dir), "--user-data-dir", str(user_dir), script=SLOW_SAVES)
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    try:
        page = context.new_page()
        page.goto(srv.url + "/")
        settle(page)
        open_notebook(page)
        page.locator("#notebook-text textarea").click()
        page.keyboard.type(NOTES)
        open_chat(page)  # at once: the box is left as the last characters go in
        page.locator("#chat-system textarea").click()
        page.keyboard.type(SYSTEM)
        open_notebook(page)

        notebook = user_dir / "logs" / "notebook.txt"
        settings = user_dir / "settings.yaml"
        wait_until(lambda: notebook.is_file() and notebook.read_text(encoding="utf-8") == NOTES, "saving the notes", 60)
        wait_until(lambda: system_prompt_saved(settings) == SYSTEM, "saving the system prompt", 60)
        # and no older save lands afterwards
        time.sleep(LAST_SLOW_WRITE * 2)
        assert notebook.read_text(encoding="utf-8") == NOTES
        assert system_prompt_saved(settings) == SYSTEM

        page.reload()
        settle(page)
        open_chat(page)
        assert page.locator("#chat-system textarea").input_value() == SYSTEM
        open_notebook(page)
        assert page.locator("#notebook-text textarea").input_value() == NOTES
    finally:
        context.close()
        srv.stop()


def test_a_box_whose_text_cannot_be_saved_says_so_under_it_and_keeps_the_text(browser, tmp_path):
    """Saves as you type run in unqueued events, whose pop-ups Gradio drops: a full disk or an unwritable folder
    used to leave only a line in the server's log while the student typed on, believing the text kept. Here each
    file is a folder (a write fails as on a full disk); the note under each box says so, the text stays, and
    the note goes once saving works again."""
    model_dir, user_dir = make_dirs(tmp_path)
    srv = start_webui(tmp_path, "--model-dir", str(model_dir), "--user-data-dir", str(user_dir))
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    notebook = user_dir / "logs" / "notebook.txt"
    settings = user_dir / "settings.yaml"
    blocked = [notebook, settings, *(user_dir / "logs" / "boxes" / f"{box}.txt" for box in SAVED_BOXES)]
    try:
        page = context.new_page()
        page.goto(srv.url + "/")
        settle(page)
        for path in blocked:
            path.unlink(missing_ok=True)
            path.mkdir(parents=True)

        open_notebook(page)
        page.locator("#notebook-text textarea").click()
        page.keyboard.type("Lab notes")
        expect(page.locator("#notebook-save-note")).to_contain_text("Could not save the notebook")
        open_chat(page)
        page.locator("#chat-input textarea").click()
        page.keyboard.type("A question")
        expect(page.locator("#chat-save-note")).to_contain_text("Could not save the text")
        page.locator("#chat-system textarea").click()
        page.keyboard.type("Be brief.")
        expect(page.locator("#chat-setup-save-note")).to_contain_text("Could not save your settings")
        page.locator("#chat-tools .label-wrap").first.click()  # the Tools panel saves as it is ticked, too
        calculate = page.locator("#chat-tools-list label", has_text="calculate").locator("input")
        calculate.check()
        expect(page.locator("#chat-tools-save-note")).to_contain_text("Could not save your settings")
        page.get_by_role("tab", name="Sampling").click()
        page.locator("#sampling-prompt textarea").click()
        page.keyboard.type("The sky is")
        expect(page.locator("#sampling-prompt-save-note")).to_contain_text("Could not save the text")

        for path in blocked:  # room on the disk again: the next keystroke saves, and the note goes
            path.rmdir()
        page.keyboard.type(" blue")
        expect(page.locator("#sampling-prompt-save-note")).to_be_hidden()
        wait_until(lambda: (user_dir / "logs" / "boxes" / "sampling-prompt.txt").is_file(), "saving the prompt")
        open_notebook(page)
        expect(page.locator("#notebook-text textarea")).to_have_value("Lab notes")  # nothing typed was lost
        page.locator("#notebook-text textarea").press("End")
        page.keyboard.type(".")
        expect(page.locator("#notebook-save-note")).to_be_hidden()
        wait_until(lambda: notebook.is_file() and notebook.read_text(encoding="utf-8") == "Lab notes.", "saving")
        open_chat(page)
        expect(page.locator("#chat-input textarea")).to_have_value("A question")
        expect(page.locator("#chat-system textarea")).to_have_value("Be brief.")
        page.locator("#chat-system textarea").press("End")
        page.keyboard.type(" ")
        expect(page.locator("#chat-setup-save-note")).to_be_hidden()
        wait_until(lambda: system_prompt_saved(settings) == "Be brief. ", "saving the system prompt")
        expect(calculate).to_be_checked()
        page.locator("#chat-tools-rounds input[type=number]").fill("5")
        page.locator("#chat-tools-rounds input[type=number]").press("Tab")
        expect(page.locator("#chat-tools-save-note")).to_be_hidden()
        wait_until(lambda: "calculate" in settings.read_text(encoding="utf-8"), "saving the ticked tool")
    finally:
        context.close()
        srv.stop()
