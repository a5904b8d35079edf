"""The UI in English, Russian and Chinese: by the browser's language, or forced with --language."""

from __future__ import annotations

import pytest

from browserkit import choose, press_load, settle, wait_text
from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.browser

# (tab title, Load button, temperature label, words of the first-run guide, status line without a model)
EXPECTED = {
    "en-US": ("Parameters", "Load", "temperature", "What is a GGUF file?", "No model loaded."),
    "ru-RU": ("Параметры", "Загрузить", "температура", "Что такое файл GGUF?", "Модель не загружена."),
    "zh-CN": ("参数", "加载", "温度", "什么是 GGUF 文件？", "尚未加载模型。"),
}


def open_in(browser, url: str, locale: str):
    context = browser.new_context(locale=locale, viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/")
    settle(page)
    return page


def label_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


@pytest.mark.parametrize("locale", list(EXPECTED))
def test_the_ui_follows_the_browsers_language(browser, server, locale):
    tab, load, temperature, guide, status = EXPECTED[locale]
    page = open_in(browser, server.url, locale)
    try:
        assert page.locator("#model-load").inner_text().strip() == load
        assert status in page.locator("#model-status").inner_text()  # made at run time, by Accept-Language
        expect_guide = page.locator("#first-run-guide")
        assert expect_guide.is_visible() and guide in expect_guide.inner_text()
        assert "download-model.py --starter" in expect_guide.inner_text()
        page.get_by_role("tab", name=tab).click()
        page.locator("#param-temperature").wait_for()
        assert temperature in label_of(page, "param-temperature")
    finally:
        page.context.close()


def test_a_russian_browser_gets_russian_errors(browser, server):
    page = open_in(browser, server.url, "ru-RU")
    try:
        page.get_by_role("tab", name="Блокнот").click()
        page.locator("#notebook-text textarea").fill("Жили-были")
        page.locator("#notebook-generate").click()
        toast = page.locator(".toast-body").first
        toast.wait_for()
        assert "Модель не загружена" in toast.inner_text()
        assert "No model" not in toast.inner_text()
    finally:
        page.context.close()


def test_the_guide_hides_while_a_model_is_loaded(browser, server):
    page = open_in(browser, server.url, "en-US")
    try:
        guide = page.locator("#first-run-guide")
        assert guide.is_visible()
        choose(page, "model-dropdown", SMOLLM)
        press_load(page)
        guide.wait_for(state="hidden")
        page.reload()
        settle(page)
        assert not page.locator("#first-run-guide").is_visible()
        page.locator("#model-unload").click()
        wait_text(page, "#model-status", "No model loaded")
        page.locator("#first-run-guide").wait_for(state="visible")
    finally:
        page.context.close()


def test_language_flag_wins_over_the_browser(browser, tmp_path):
    srv = start_server(tmp_path, *make_dirs(tmp_path), "--language", "ru", "--model", SMOLLM)
    try:
        page = open_in(browser, srv.url, "en-US")
        try:
            page.get_by_role("tab", name="Модель").wait_for()
            assert page.locator("#model-load").inner_text().strip() == "Загрузить"
            assert "Загружена" in page.locator("#model-status").inner_text()
            # a model is loaded from the start: no first-run guide
            assert not page.locator("#first-run-guide").is_visible()
            page.get_by_role("tab", name="Параметры").click()
            page.locator("#param-temperature").wait_for()
            assert "температура" in label_of(page, "param-temperature")
        finally:
            page.context.close()
    finally:
        stop_server(srv)
