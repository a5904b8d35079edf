"""Small things a student notices in the first minutes: the info table, cramped options, mixed languages,
untranslated and badly placed pop-ups, and a stale "Saved" line under an error."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browserkit import choose, open_parameters, settle, wait_text
from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.browser

BROKEN = "Unfinished-download.gguf"  # listed after the real models: not the first one shown
#: What a failed download often leaves behind: the hub's error page saved under the model's name.
BROKEN_BYTES = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>\n"
#: English words of the messages about that file (none may show on a Russian page).
ENGLISH = re.compile(r"is not a GGUF|It may be|does not start|Download it again|Error")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("polish")
    model_dir, user_dir = make_dirs(root)
    (model_dir / BROKEN).write_bytes(BROKEN_BYTES)
    srv = start_server(root, model_dir, user_dir)
    yield srv
    stop_server(srv)


@pytest.fixture
def ru_page(browser, server):
    context = browser.new_context(locale="ru-RU", viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url + "/")
    settle(page)
    yield page
    context.close()


def overlaps(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def error_toast(page):
    toast = page.locator(".toast-body").last
    toast.wait_for()
    return toast


def assert_toast_clear_of(page, *button_ids: str) -> None:
    error_toast(page)
    for toast in page.locator(".toast-body").all():
        box = toast.bounding_box()
        for button in button_ids:
            assert not overlaps(box, page.locator(f"#{button}").bounding_box()), f"a pop-up covers #{button}"


def test_the_info_table_has_a_header_that_says_something(page):
    choose(page, "model-dropdown", SMOLLM)
    wait_text(page, "#model-info", "Q4_1")
    headers = [h.strip() for h in page.locator("#model-info th").all_inner_texts()]
    assert headers and all(headers), f"empty header cells: {headers}"
    assert SMOLLM in " ".join(headers)


def test_loader_options_have_room(page):
    choose(page, "model-dropdown", SMOLLM)
    wait_text(page, "#model-info", "Q4_1")
    page.screenshot(path="/tmp/polish-model-tab.png", full_page=True)
    for option in ("opt-n_ctx", "opt-threads", "opt-n_gpu_layers", "opt-n_batch"):
        width = page.locator(f"#{option}").bounding_box()["width"]
        assert width >= 340, f"#{option} is only {width:.0f} px wide"


def test_a_russian_page_shows_the_info_table_in_russian_at_first_open(ru_page):
    info = ru_page.locator("#model-info")
    expect(info).to_contain_text("Архитектура")
    text = info.inner_text()
    assert "Architecture" not in text and "Size on disk" not in text, text


def test_a_broken_file_is_explained_in_one_language(ru_page):
    choose(ru_page, "model-dropdown", BROKEN)
    wait_text(ru_page, "#model-info", BROKEN)
    info = ru_page.locator("#model-info").inner_text()
    assert "не файл модели GGUF" in info and not ENGLISH.search(info), info
    ru_page.locator("#model-load").click()
    toast = error_toast(ru_page)
    text = toast.inner_text()
    assert "не файл модели GGUF" in text and not ENGLISH.search(text), text
    ru_page.screenshot(path="/tmp/polish-broken-ru.png", full_page=True)


def test_pop_up_titles_are_translated(ru_page):
    ru_page.get_by_role("tab", name="Параметры").click()
    ru_page.locator("#preset-name input, #preset-name textarea").first.fill("")
    ru_page.locator("#preset-save").click()
    toast = error_toast(ru_page)
    title = toast.locator(".toast-title").inner_text().strip()
    assert title == "Ошибка", title


def test_error_pop_ups_leave_the_buttons_free(page):
    open_parameters(page)
    page.locator("#preset-name input, #preset-name textarea").first.fill("")
    page.locator("#preset-save").click()
    assert_toast_clear_of(page, "preset-save", "preset-delete", "preset-restore")
    page.screenshot(path="/tmp/polish-toast-parameters.png")

    page.get_by_role("tab", name="Model").click()
    choose(page, "model-dropdown", BROKEN)
    wait_text(page, "#model-info", BROKEN)
    page.locator("#model-load").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.toast-body')].some(t => t.innerText.includes('GGUF'))"
    )
    assert_toast_clear_of(page, "model-load", "model-unload", "model-save-settings", "model-delete")
    page.screenshot(path="/tmp/polish-toast-model.png")


def test_a_saved_line_does_not_stay_under_a_later_error(page):
    open_parameters(page)
    name = page.locator("#preset-name input, #preset-name textarea").first
    name.fill("Mine")
    page.locator("#preset-save").click()
    wait_text(page, "#preset-message", "Mine")
    name.fill("")
    page.locator("#preset-save").click()
    error_toast(page)
    expect(page.locator("#preset-message")).not_to_contain_text("Mine")
