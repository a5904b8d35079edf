"""The Gradio UI. The only package that imports gradio; each tab is a thin layer over the services."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from webui.accounts.ratelimit import LoginLimiter
from webui.services import Services
from webui.ui.api_panel import build_api_tab
from webui.ui.chat_tab import build_chat_tab
from webui.ui.common import PICK_JS, error_toast, on_pick, save_or_warn, ui_errors
from webui.ui.compare_tab import build_compare_tab
from webui.ui.i18n import LANGUAGES, forced_language, gradio_i18n, page_language, t, tr
from webui.ui.login import LoginAddress, login_check
from webui.ui.model_tab import build_model_tab, guide_visible, status_text
from webui.ui.notebook_tab import build_notebook_tab, token_count_text
from webui.ui.parameters_tab import build_parameters_tab, interactivity, loader_note
from webui.ui.progress import narrow_progress_targets
from webui.ui.sampling_tab import build_sampling_tab
from webui.ui.session import page_services, request_user

TITLE = "Local LLM Web UI"

# Pop-up messages (errors, warnings) at the bottom right: Gradio puts them at the top right, over the
# Save/Delete buttons of the Model and Parameters tabs, so the button to fix the error was hidden by it.
CSS = """
.toast-wrap { top: auto !important; bottom: var(--size-4) !important; }
/* Gradio gives a checkbox no minimum width: in a row of options its description became a column one word wide */
.option-switch { min-width: min(260px, 100%) !important; }
/* a box whose text could not be saved says so under it (save_note) */
.save-note, .save-note * { color: var(--error-text-color) !important; }
/* the log-out button beside the language menu keeps a button's height */
#log-out { align-self: center; flex-grow: 0; }
"""

KEYBOARD_JS = """
() => {
  document.addEventListener('keydown', (e) => {
    const inNotebook = e.target && e.target.closest && e.target.closest('#notebook-text');
    if (inNotebook && e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      document.querySelector('#notebook-generate')?.click();
    } else if (e.key === 'Escape') {
      // Stop only stops this page's own generation (chat, notebook or comparison), never another user's.
      document.querySelector('#notebook-stop')?.click();
      document.querySelector('#chat-stop')?.click();
      document.querySelector('#compare-stop')?.click();
    }
  });
}
"""

#: The language menu at the top: each language in its own words.
LANGUAGE_CHOICES = [("Auto · Авто · 自动", "auto"), ("English", "en"), ("Русский", "ru"), ("中文", "zh")]

#: Switch the page's static texts to a language (auto: the browser's) through Gradio's own i18n, live.
#: Gradio 6.31 exports ``changeLocale`` from its core module, which the page has already loaded.
APPLY_LANGUAGE_JS = """
async (lang) => {
  const code = !lang || lang === 'auto' ? (navigator.languages || [navigator.language])[0] || 'en' : lang;
  const url = performance.getEntriesByType('resource').map((e) => e.name)
    .find((n) => /\\/assets\\/core-[^/]*\\.js$/.test(n));
  if (url) {
    const core = await import(url);
    if (core.changeLocale) {
      await core.changeLocale(code);
      // The page's language switches once its texts have come (a first load after a restart can take
      // longer than the next event's round trip): wait for it, at most 5 s, so what follows sees it.
      const want = code.toLowerCase().split('-')[0];
      const shown = () => (document.documentElement.lang || '').toLowerCase().split('-')[0];
      for (let i = 0; i < 100 && shown() !== want; i++) await new Promise((r) => setTimeout(r, 50));
    }
  }
  return [];
}
"""
#: The page's own signal that a language is on screen, tab names included (the browser tests wait for it).
LANGUAGE_SHOWN_JS = "() => { document.body.dataset.webuiLanguage = document.documentElement.lang; }"

#: Pop-up kinds whose title the page translates (``toast.<kind>`` in the catalogues).
TOAST_KINDS = ("error", "warning", "info")


def toast_titles_js(forced: str | None) -> str:
    """JS that shows pop-up titles ("Error", "Warning", "Info") in the page's language.

    Gradio 6.31 takes ``title=`` on ``gr.Error``/``gr.Warning`` (our helpers pass the translated one)
    but its pop-up shows the kind's English name instead; this puts the translation in its place, in
    the language the page shows (``--language``, else the one its user chose, else the browser's).
    """
    titles = {lang: {kind: tr(f"toast.{kind}", lang) for kind in TOAST_KINDS} for lang in LANGUAGES}
    return f"""
() => {{
  const titles = {json.dumps(titles, ensure_ascii=False)};
  const forced = {json.dumps(forced)};
  const wanted = (navigator.languages || [navigator.language]).map((l) => (l || '').toLowerCase().split('-')[0]);
  const own = () => {{
    const shown = (document.documentElement.lang || '').toLowerCase().split('-')[0];
    return titles[forced || (shown in titles && shown) || wanted.find((l) => l in titles) || 'en'];
  }};
  const translate = () => {{
    const texts = own();
    for (const el of document.querySelectorAll('.toast-title')) {{
      const kind = Object.keys(texts).find((k) => el.classList.contains(k));
      const node = el.firstChild;
      if (kind && node && node.nodeType === Node.TEXT_NODE && node.data.trim() !== texts[kind]) node.data = texts[kind] + ' ';
    }}
  }};
  new MutationObserver(translate).observe(document.body, {{ childList: true, subtree: true }});
}}
"""


def page_js(forced: str | None) -> str:
    """The page's own JS: keyboard shortcuts, translated pop-up titles, and marking dropdown picks (on_pick)."""
    scripts = (KEYBOARD_JS, toast_titles_js(forced), PICK_JS)
    return "() => { " + " ".join(f"({js.strip()})();" for js in scripts) + " }"


def mark_when_answered(events: list[Any], key: str) -> None:
    """Each time all of ``events`` have answered, count one more in ``<body data-KEY>`` (camelCase key).

    The page's own signal that what those events fill in is on screen, e.g. ``data-webui-ready="1"``
    once the page-load events have filled in the saved values: whatever drives the page (the browser
    tests) waits for it before typing, instead of guessing from a quiet network. The events answer in
    any order (they run side by side); ``.then`` also follows a failed one.
    """
    js = (
        f"() => {{ const d = document.body.dataset, n = (+d.{key}Answers || 0) + 1; d.{key}Answers = n;"
        f" if (n % {len(events)} === 0) d.{key} = n / {len(events)}; }}"
    )
    for event in events:
        event.then(None, None, None, js=js, queue=False, show_progress="hidden")


def mount_ui(app: Any, services: Services) -> Any:
    """Build the UI and mount it at the root of the FastAPI ``app`` (Gradio stays inside webui/ui)."""
    demo = build_ui(services)
    demo.queue(default_concurrency_limit=1)
    settings = services.settings
    # Log-in (the users file, --gradio-auth, --gradio-auth-path) guards the page, Gradio's API and its file
    # route alike; each user then has their own data (webui/ui/session.py).
    auth: Any = None
    if services.accounts is not None:
        limiter = LoginLimiter()
        app.add_middleware(LoginAddress, limiter=limiter)
        auth = login_check(services, limiter)
    return gr.mount_gradio_app(
        app,
        demo,
        path="",
        server_name=settings.host,
        server_port=settings.listen_port,
        js=page_js(forced_language(demo)),
        css=CSS,
        footer_links=["gradio", "settings"],
        auth=auth,
        max_file_size=int(settings.max_upload_mb * 1024 * 1024),
        i18n=demo.i18n_instance,
    )


def build_ui(services: Services) -> gr.Blocks:
    services = page_services(services)  # each handler sees the data of the user whose page it answers
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        # First: the tabs' build-time text and every event handler read --language (or, without it, the
        # language the page's user chose) from here (page_language).
        demo.i18n_instance = gradio_i18n(services.settings.language, lambda: services.settings.ui_language)
        forced = forced_language(demo)
        with gr.Row(equal_height=True):
            gr.Markdown(t("app.title_md"))
            language = gr.Dropdown(
                choices=LANGUAGE_CHOICES,
                value=services.settings.ui_language,
                label=t("app.language"),
                elem_id="ui-language",
                scale=0,
                min_width=170,
                visible=forced is None,  # --language: every page's, nothing to choose
            )
            # With log-in: whose page this is, and Gradio's /logout (a shared lab machine needs one).
            log_out = gr.Button(
                t("app.log_out"), link="/logout", elem_id="log-out", visible=False, scale=0, min_width=140, size="sm"
            )
        with gr.Tabs():
            with gr.Tab(t("tab.model"), id="model") as model_tab:
                model = build_model_tab(services)
            with gr.Tab(t("tab.chat"), id="chat") as chat_tab:
                chat = build_chat_tab(services)
            with gr.Tab(t("tab.notebook"), id="notebook") as notebook_tab:
                notebook = build_notebook_tab(services)
            with gr.Tab(t("tab.parameters"), id="parameters") as parameters_tab:
                params = build_parameters_tab(services)
            with gr.Tab(t("tab.sampling"), id="sampling") as sampling_tab:
                sampling = build_sampling_tab(services)
            with gr.Tab(t("tab.compare"), id="compare") as compare_tab:
                compare = build_compare_tab(services)
            with gr.Tab(t("tab.api"), id="api") as api_tab:
                api = build_api_tab(services)
        notebook["wire"](params["components"])
        sampling["wire"](params["components"], notebook["text"], sampling_tab)
        # What the loaded model can show of its probabilities (a remote server: nothing, or only "before").
        probability_notes = [notebook["probs_note"], sampling["note"]]

        def probability_note_texts() -> list[str]:
            return [notebook["probs_note_text"](), sampling["note_text"]()]

        # After a Modelfile import the Parameters tab shows the preset its PARAMETER lines became.
        chat["wire"](params["components"], (params["current_state"], params["state_outputs"]))
        # Parameters the loaded model's loader cannot use are greyed out, after every load and on page load.
        loader_outputs = [params["note"], *params["components"]]

        def after_model_change(event: Any) -> list[Any]:
            return [
                event.then(
                    lambda: [loader_note(services), *interactivity(services)], None, loader_outputs, queue=False
                ),
                event.then(chat["model_changed"], None, chat["model_changed_outputs"], queue=False),
                event.then(api["page_load"], None, api["page_load_outputs"], queue=False),
                event.then(probability_note_texts, None, probability_notes, queue=False),
            ]

        # A model's saved settings may switch the preset: show the values now in use.
        mark_when_answered(
            [
                *after_model_change(model["loaded"]),
                model["loaded"].then(params["current_state"], None, params["state_outputs"], queue=False),
            ],
            "webuiModelLoads",
        )
        after_model_change(model["unloaded"])
        after_model_change(model["panel_unloaded"])

        # A page opened after a load (or after --model at start) shows the real state.
        def on_page_load() -> list:
            saved = services.load_notebook()
            return [
                status_text(services),
                guide_visible(services),
                saved,
                token_count_text(services, saved),
                loader_note(services),
                *interactivity(services),
            ]

        @ui_errors
        def on_language(choice: str) -> None:
            if choice not in {code for _, code in LANGUAGE_CHOICES}:  # (Gradio's API takes any string)
                raise error_toast(tr("app.language_unknown", page_language(), language=choice))
            save_or_warn(lambda: services.remember(ui_language=choice))

        # This user's language: kept in their settings, and the page switches to it at once (no reload).
        # Gradio translates a tab's name only as the tab is drawn: the names are sent again after a switch.
        tabs = [model_tab, chat_tab, notebook_tab, parameters_tab, sampling_tab, compare_tab, api_tab]
        tab_keys = ["tab.model", "tab.chat", "tab.notebook", "tab.parameters", "tab.sampling", "tab.compare", "tab.api"]

        # (and after a switch, the status lines the server wrote stay behind unless written again)
        notes = [model["status"], params["note"], *probability_notes]

        def tab_names() -> list[Any]:
            return [gr.update(label=t(key)) for key in tab_keys]

        def tab_names_and_notes() -> list[Any]:
            return [*tab_names(), status_text(services), loader_note(services), *probability_note_texts()]

        def log_out_button() -> Any:
            user = request_user(services)
            if user is None:
                return gr.update(visible=False)
            return gr.update(value=tr("app.log_out_as", page_language(), name=user.name), visible=True)

        picked = on_pick(language, on_language, [language], None, queue=False)
        picked.then(None, language, None, js=APPLY_LANGUAGE_JS, queue=False).then(
            tab_names_and_notes, None, [*tabs, *notes], queue=False, show_progress="hidden"
        ).then(None, js=LANGUAGE_SHOWN_JS, queue=False)
        picked.then(log_out_button, None, log_out, queue=False, show_progress="hidden")
        # (with --language the menu is hidden and the page keeps Gradio's choice: every code shows that language)
        loaded = demo.load(
            lambda: services.settings.ui_language if forced is None else "auto", None, language, queue=False
        )
        loaded.then(None, language, None, js=APPLY_LANGUAGE_JS, queue=False).then(
            tab_names, None, tabs, queue=False, show_progress="hidden"
        ).then(None, js=LANGUAGE_SHOWN_JS, queue=False)

        mark_when_answered(
            [
                demo.load(log_out_button, None, log_out, queue=False),
                demo.load(
                    on_page_load,
                    None,
                    [model["status"], model["guide"], notebook["text"], notebook["tokens"], *loader_outputs],
                    queue=False,
                ),
                demo.load(params["current_state"], None, params["state_outputs"], queue=False),
                demo.load(chat["page_load"], None, chat["page_load_outputs"], queue=False),
                demo.load(compare["page_load"], None, compare["page_load_outputs"], queue=False),
                demo.load(sampling["page_load"], None, sampling["page_load_outputs"], queue=False),
                demo.load(compare["page_load_results"], None, compare["page_load_results_outputs"], queue=False),
                # the models on disk now and the one loaded now (the page was built at start), in the page's language
                demo.load(model["page_load"], None, model["page_load_outputs"], queue=False),
                demo.load(api["page_load"], None, api["page_load_outputs"], queue=False),
                demo.load(probability_note_texts, None, probability_notes, queue=False),
            ],
            "webuiReady",
        )
        chat["after_build"](demo)  # last: it follows every event that writes the chat box
        narrow_progress_targets(demo)  # the page visits every progress target on every streamed update
    return demo
