"""The UI's languages: catalogue parity, language choice, and every key the code uses existing."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
from gradio.i18n import I18nData

import webui.catalogue
from webui.errors import DownloadError, ModelLoadError, NoModelLoadedError, PromptTooLongError, WebUIError
from webui.params import LoadOptions, SamplingParams
from webui.ui import i18n
from webui.ui.common import error_text
from webui.ui.i18n import (
    LANGUAGES,
    LOCALES_DIR,
    accept_language,
    catalogue,
    gradio_i18n,
    normalise,
    request_language,
    t,
    tr,
)
from webui.ui.parameters_tab import GROUPS

WEBUI = Path(i18n.__file__).resolve().parents[1]
# {name} fields filled by tr(); {{char}} (shown as it is) is not one
FIELD = re.compile(r"(?<!\{)\{(\w*)\}(?!\})")
LIST_HINT = ' Write them quoted and comma-separated: "\\n", "User:"'


def own_keys(lang: str) -> dict[str, str]:
    """The keys written in ``lang``'s own files (``catalogue`` fills gaps from English)."""
    import yaml

    merged: dict[str, str] = {}
    for path in sorted((LOCALES_DIR / lang).glob("*.yaml")):
        merged.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return merged


def test_every_language_has_every_english_key_and_no_other():
    english = set(own_keys("en"))
    assert len(english) > 300
    for lang in LANGUAGES:
        keys = set(own_keys(lang))
        assert not english - keys, f"{lang} lacks {sorted(english - keys)}"
        assert not keys - english, f"{lang} has keys English does not: {sorted(keys - english)}"


def test_placeholders_match_across_languages():
    english = own_keys("en")
    for lang in ("ru", "zh"):
        for key, text in own_keys(lang).items():
            assert sorted(FIELD.findall(text)) == sorted(FIELD.findall(english[key])), (lang, key, text)


def test_translations_are_translated():
    """A copied English text is a forgotten translation (short names excepted, and sampler labels,
    which keep llama.cpp's names: "dry multiplier", "xtc threshold")."""
    english = own_keys("en")
    for lang in ("ru", "zh"):
        same = [
            k
            for k, v in own_keys(lang).items()
            if v == english[k]
            and len(v) > 12
            and not re.fullmatch(r"(param|opt)\.\w+\.label", k)
            and re.search(r"[A-Za-z]", re.sub(r"\{\w+\}", "", v))
        ]  # "{quant} · {size}": nothing to translate
        assert same == [], f"{lang}: still English: {same}"


def test_parameter_and_option_texts_are_the_fields_own_in_english():
    english = catalogue("en")
    for model, prefix in ((SamplingParams, "param"), (LoadOptions, "opt")):
        for name, field in model.model_fields.items():
            info = field.description + (LIST_HINT if typing.get_origin(field.annotation) is list else "")
            assert english[f"{prefix}.{name}.info"] == info, name
            label = "grammar" if name == "grammar_string" else name.replace("_", " ")
            assert english[f"{prefix}.{name}.label"] == label
    for title, _ in GROUPS:
        assert english[f"params.group.{title}"] == title


def _keys_used_in(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    keys = set(re.findall(r"\b(?:t|tr)\(\s*\"([a-z]+\.[\w.]+)\"", text))
    keys |= set(re.findall(r"\bkey=\"([a-z]+\.[\w.]+)\"", text))
    for line in re.findall(r"\bkey = .*", text):  # key = "a" if ... else "b"
        keys |= set(re.findall(r"\"([a-z]+\.[\w.]+)\"", line))
    return keys


def test_every_key_the_code_uses_is_in_the_english_catalogue():
    english = catalogue("en")
    used: set[str] = set()
    for path in sorted(WEBUI.rglob("*.py")):
        used |= _keys_used_in(path)
    assert {"tab.model", "model.guide", "chat.send", "error.no_model", "error.download_offline"} <= used
    missing = sorted(k for k in used if k not in english)
    assert missing == []
    # keys made with an f-string
    for kind in ("link", "file", "folder"):
        assert f"model.deleted_{kind}" in english
    for reason in ("stop", "length", "cancelled"):
        assert f"notebook.reason_{reason}" in english


def test_every_error_code_has_a_headline():
    import importlib
    import pkgutil

    import webui

    # the subclasses are defined on import of their modules: import every module of the app
    for module in pkgutil.walk_packages(webui.__path__, "webui."):
        importlib.import_module(module.name)

    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for c in cls.__subclasses__() for s in subclasses(c))]

    english = catalogue("en")
    for cls in subclasses(WebUIError):
        assert f"error.kind.{cls.code}" in english, cls


def test_normalise_and_accept_language():
    assert normalise("ru-RU") == "ru"
    assert normalise("zh_CN") == "zh"
    assert normalise("zh-Hans") == "zh"
    assert normalise("fr") == "en"
    assert normalise(None) == "en"
    assert accept_language("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7") == "ru"
    assert accept_language("de-DE,de;q=0.9,zh-CN;q=0.8,en;q=0.5") == "zh"
    assert accept_language("en;q=0.5,ru;q=0.6") == "ru"
    assert accept_language("fr-FR,de") == "en"
    assert accept_language("ru;q=bogus,zh") == "zh"
    assert accept_language("") == "en"
    assert accept_language(None) == "en"


def test_request_language_prefers_the_forced_one():
    ru_browser = SimpleNamespace(headers={"accept-language": "ru-RU,ru;q=0.9"})
    assert request_language(ru_browser, None) == "ru"
    assert request_language(ru_browser, "auto") == "ru"
    assert request_language(ru_browser, "zh") == "zh"
    assert request_language(SimpleNamespace(headers={}), "auto") == "en"
    assert request_language(None, None) == "en"


def test_page_language_reads_gradios_request():
    from gradio.context import LocalContext

    token = LocalContext.request.set(SimpleNamespace(headers={"accept-language": "zh-CN"}))
    try:
        assert i18n.page_language() == "zh"
    finally:
        LocalContext.request.reset(token)


def test_forced_language_travels_with_the_ui_not_a_global():
    """--language is state of the UI being served (its Blocks' i18n), so two UIs keep their own."""
    import gradio as gr
    from gradio.context import LocalContext

    assert not hasattr(i18n, "_forced") and not hasattr(i18n, "force_language")
    with gr.Blocks() as ru_ui:
        ru_ui.i18n_instance = gradio_i18n("ru")
        assert i18n.page_language() == "ru"  # while the tabs are built (their build-time text)
    with gr.Blocks() as auto_ui:
        auto_ui.i18n_instance = gradio_i18n("auto")
    assert i18n.forced_language(ru_ui) == "ru" and i18n.forced_language(auto_ui) is None
    zh_browser = SimpleNamespace(headers={"accept-language": "zh-CN"})
    request_token = LocalContext.request.set(zh_browser)
    try:
        for ui, expected in ((ru_ui, "ru"), (auto_ui, "zh"), (None, "zh")):
            token = LocalContext.blocks.set(ui)
            try:
                assert i18n.page_language() == expected  # in an event handler of that UI
            finally:
                LocalContext.blocks.reset(token)
    finally:
        LocalContext.request.reset(request_token)


def test_gradio_i18n_all_languages_or_the_forced_one():
    auto = gradio_i18n("auto").translations_dict
    assert set(auto) == set(LANGUAGES)
    assert auto["ru"]["tab.model"] == "Модель"
    assert auto["zh"]["tab.model"] == "模型"
    forced = gradio_i18n("ru").translations_dict
    # every locale the browser may report gets Russian, English included
    assert {"en", "ru", "zh-CN", "de", "pt-BR"} <= set(forced)
    assert forced["en"]["chat.send"] == "Отправить"
    assert forced["zh-CN"]["tab.model"] == "Модель"


def test_t_is_gradio_i18n_data():
    data = t("chat.send")
    assert isinstance(data, I18nData)
    assert data.key == "chat.send"


def test_tr_fills_fields_and_falls_back():
    assert tr("notebook.tokens", "ru", n=5, n_ctx=2048) == "Токены: 5 / 2048 контекста"
    assert tr("notebook.tokens", "en", n=5, n_ctx=2048) == "Tokens: 5 / 2048 context"
    assert tr("notebook.tokens", "fr", n=5, n_ctx=2048) == "Tokens: 5 / 2048 context"  # unknown language
    assert tr("no.such.key", "ru") == "no.such.key"
    assert "{n}" in tr("notebook.tokens", "zh", n=5)  # a missing field: the text, not a crash


def test_missing_key_in_a_language_falls_back_to_english(monkeypatch, tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "ru").mkdir()
    (tmp_path / "en" / "a.yaml").write_text('x.one: "One"\nx.two: "Two"\n', encoding="utf-8")
    (tmp_path / "ru" / "a.yaml").write_text('x.one: "Один"\n', encoding="utf-8")
    monkeypatch.setattr(webui.catalogue, "LOCALES_DIR", tmp_path)
    catalogue.cache_clear()
    try:
        assert tr("x.one", "ru") == "Один"
        assert tr("x.two", "ru") == "Two"
    finally:
        catalogue.cache_clear()


def test_errors_in_the_pages_language():
    exc = NoModelLoadedError()
    assert error_text(exc, "en") == "No model is loaded. Pick one in the Model tab and press Load."
    assert error_text(exc, "ru").startswith("Модель не загружена")
    assert error_text(exc, "zh").startswith("尚未加载模型")
    too_long = PromptTooLongError(5000, 2048)
    assert "5000" in error_text(too_long, "zh") and "2048" in error_text(too_long, "zh")
    # a message with notes added after it: English unchanged, the notes translated too
    failed = ModelLoadError(
        "Loading a.gguf failed: ValueError: boom", key="error.load_failed", name="a.gguf", detail="ValueError: boom"
    )
    failed.add_sentence("b.gguf is loaded again.", "error.note_restored", name="b.gguf")
    assert error_text(failed, "en") == "Loading a.gguf failed: ValueError: boom b.gguf is loaded again."
    assert error_text(failed, "ru") == "Не удалось загрузить a.gguf: ValueError: boom b.gguf снова загружена."
    # an error without its own translation: a translated headline, then the English details
    plain = DownloadError("x.gguf is already in the models folder.")
    assert error_text(plain, "ru") == "Ошибка скачивания: x.gguf is already in the models folder."
    assert error_text(plain, "en") == "x.gguf is already in the models folder."


@pytest.mark.parametrize("lang", ["en", "ru", "zh"])
def test_first_run_guide_names_the_starter_command(lang):
    guide = catalogue(lang)["model.guide"]
    assert "download-model.py --starter" in guide
    assert "Q4_K_M" in guide and "Q8_0" in guide
    assert "16" in guide and "8" in guide and "4" in guide


def test_template_and_truncation_notes_are_english_strings_that_translate(tmp_path):
    from testdata import PROJECT_DIR
    from webui.catalogue import Keyed, in_language
    from webui.chat.prompt import Prompt
    from webui.templates.chat_template import InstructionTemplateStore, choose_template

    store = InstructionTemplateStore(PROJECT_DIR / "instruction-templates")
    _, note = choose_template(None, None, store)
    assert note.startswith("Base model: not trained to chat")  # API/tests see English
    assert note.endswith("Using instruction template ChatML.")
    assert isinstance(note, Keyed) and in_language(note, "ru").startswith("Базовая модель")
    _, own = choose_template("{{ messages[0]['content'] }}", None, store)
    assert in_language(own, "zh") == "正在使用模型自带的聊天模板。"
    _, bad = choose_template("{{ ''.__class__.__mro__ }}", None, store)
    assert "ChatML" in in_language(bad, "ru") and "небезопасен" in in_language(bad, "ru")
    dropped = Prompt(text="", stop=[], tokens=1, dropped=4).note
    assert dropped.startswith("4 oldest") and "(4)" in in_language(dropped, "ru")
    assert in_language("plain text", "ru") == "plain text"


def test_download_labels_translate_with_the_ram_hint_inside():
    from webui.catalogue import Keyed, in_language
    from webui.downloads.hub import ram_hint

    fits, too_big = ram_hint(100_000_000, 16 * 10**9), ram_hint(10 * 10**9, 8 * 10**9)
    assert fits == "RAM ≈ 410.0 MB (fits)" and in_language(fits, "ru") == "ОЗУ ≈ 410.0 MB (поместится)"
    assert "超过本机" in in_language(too_big, "zh")
    label = Keyed(
        f"Q4_K_M · m.gguf · 100 MB · {fits}",
        "download.choice_gguf",
        quant="Q4_K_M",
        name="m.gguf",
        size="100 MB",
        ram=fits,
    )
    assert in_language(label, "ru") == "Q4_K_M · m.gguf · 100 MB · ОЗУ ≈ 410.0 MB (поместится)"


def test_build_ui_hands_the_settings_language_to_its_blocks(user_dir):
    from webui.services import Services
    from webui.settings import Settings
    from webui.ui import build_ui

    demo = build_ui(Services.build(Settings(user_data_dir=user_dir, language="ru")))
    assert i18n.forced_language(demo) == "ru"
    assert demo.i18n_instance.translations_dict["en"]["tab.model"] == "Модель"
    assert i18n.forced_language(build_ui(Services.build(Settings(user_data_dir=user_dir)))) is None


def test_a_served_event_reads_the_language_of_its_own_ui():
    """Through Gradio's real routes (queued and not): --language of the UI that serves the event wins."""
    import fastapi
    import gradio as gr
    from fastapi.testclient import TestClient

    def served_language(forced: str) -> list[str]:
        with gr.Blocks() as demo:
            demo.i18n_instance = gradio_i18n(forced)
            out, button = gr.Textbox(), gr.Button()
            # no request parameter: the handlers of the tabs call page_language() just so
            button.click(lambda: i18n.page_language(), None, out, api_name="queued")
            button.click(lambda: i18n.page_language(), None, out, api_name="direct", queue=False)
        app = gr.mount_gradio_app(fastapi.FastAPI(), demo, path="", i18n=demo.i18n_instance)
        answers = []
        with TestClient(app) as client:
            for name in ("queued", "direct"):
                event = client.post(
                    f"/gradio_api/call/{name}", json={"data": []}, headers={"accept-language": "zh-CN"}
                ).json()["event_id"]
                answers.append(client.get(f"/gradio_api/call/{name}/{event}").text.strip().splitlines()[-1])
        return answers

    assert served_language("ru") == ['data: ["ru"]'] * 2
    assert served_language("auto") == ['data: ["zh"]'] * 2


def test_the_language_a_user_chose_comes_before_the_browsers_and_after_the_forced_one():
    """A page's run-time texts follow its user's own choice (the language menu), else the browser's;
    --language wins over both. A failing lookup (no user's settings) falls back to the browser's."""
    import gradio as gr
    from gradio.context import LocalContext

    choice = {"lang": "ru"}

    def chosen():
        if choice["lang"] == "broken":
            raise RuntimeError("no settings")
        return choice["lang"]

    with gr.Blocks() as ui:
        ui.i18n_instance = gradio_i18n("auto", chosen)
    with gr.Blocks() as forced_ui:
        forced_ui.i18n_instance = gradio_i18n("zh", chosen)
    request_token = LocalContext.request.set(SimpleNamespace(headers={"accept-language": "en-US"}))
    try:
        for lang, expected in (("ru", "ru"), ("zh", "zh"), ("auto", "en"), (None, "en"), ("broken", "en")):
            choice["lang"] = lang
            token = LocalContext.blocks.set(ui)
            try:
                assert i18n.page_language() == expected, lang
            finally:
                LocalContext.blocks.reset(token)
        choice["lang"] = "ru"
        token = LocalContext.blocks.set(forced_ui)
        try:
            assert i18n.page_language() == "zh"
        finally:
            LocalContext.blocks.reset(token)
    finally:
        LocalContext.request.reset(request_token)
