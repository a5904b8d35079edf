"""The UI's languages (English, Russian, Chinese) through Gradio's own i18n.

Catalogues live in ``webui/locales/<lang>/<area>.yaml``: flat ``key: text`` maps, one file per
area of the UI (``common.yaml``, ``chat.yaml``, ``compare.yaml``...). All files of a language are
merged; a key missing in ``ru`` or ``zh`` falls back to ``en``.

Two kinds of text:

* **Static text** (labels, buttons, info lines, Markdown): ``t("chat.send")`` gives Gradio an
  ``I18nData`` key that the browser translates, by the browser's language or the language forced
  with ``--language``.
* **Text made at run time** (errors, status lines, stats): Gradio does not translate values sent
  from the server, so handlers call ``tr("key", lang, **fields)`` with ``lang`` from
  :func:`request_language` (``--language``, else the browser's ``Accept-Language``), or
  :func:`page_language` inside an event handler that has no ``request`` parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr
from gradio.i18n import I18nData  # not exported as gr.I18nData by every Gradio version

from webui.catalogue import DEFAULT, LANGUAGES, LOCALES_DIR, catalogue, normalise, text

__all__ = [
    "DEFAULT",
    "LANGUAGES",
    "LOCALES_DIR",
    "catalogue",
    "normalise",
    "t",
    "tr",
    "accept_language",
    "request_language",
    "forced_language",
    "chosen_language",
    "page_language",
    "gradio_i18n",
    "UiI18n",
]

# Locale codes Gradio's front end may pick from the browser (its own list), plus the bare
# languages. With --language every one of them gets the chosen catalogue, so the page is in that
# language whatever the browser says.
_GRADIO_LOCALES = (
    "ar",
    "ca",
    "ckb",
    "de",
    "en",
    "es",
    "et",
    "eu",
    "fa",
    "fi",
    "fr",
    "he",
    "hi",
    "id",
    "ja",
    "ko",
    "lt",
    "nb",
    "nl",
    "pl",
    "pt-BR",
    "pt",
    "ro",
    "ru",
    "sv",
    "ta",
    "th",
    "tr",
    "uk",
    "ur",
    "uz",
    "zh-CN",
    "zh-TW",
    "zh",
)


def t(key: str) -> Any:
    """A translatable static text for a component (label, value of a Markdown, button text).

    Typed ``Any``: Gradio takes an ``I18nData`` wherever a label or value string goes, but its
    type hints say ``str``.
    """
    return I18nData(key)


def tr(key: str, lang: str | None = None, **fields: Any) -> str:
    """Text made at run time, in ``lang``; ``{name}`` fields filled from ``fields``."""
    return text(key, lang, **fields)


def accept_language(header: str | None) -> str:
    """The language of an ``Accept-Language`` header that we have, highest quality first; else English."""
    candidates: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")):
        code, _, params = part.strip().partition(";")
        base = code.strip().lower().replace("_", "-").split("-")[0]
        if base not in LANGUAGES:
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        candidates.append((-q, i, base))
    return min(candidates)[2] if candidates else DEFAULT


def request_language(request: gr.Request | None, forced: str | None) -> str:
    """The language of one page: ``--language`` when given, else the browser's."""
    if forced and forced != "auto":
        return normalise(forced)
    headers = getattr(request, "headers", None) or {}
    return accept_language(headers.get("accept-language"))


class UiI18n(gr.I18n):
    """Gradio's translations for one UI, and the language ``--language`` forces on it (None: each browser's).

    ``build_ui`` hangs it on its Blocks as ``i18n_instance`` (where Gradio keeps a mounted app's
    translations), so the forced language travels with the app that serves the page: no module
    global, and two UIs in one process (tests) keep their own.
    """

    def __init__(self, forced: str | None, chosen: Callable[[], str | None] | None = None) -> None:
        self.forced = normalise(forced) if forced and forced != "auto" else None
        #: The language the user of the page being answered chose for their pages (None or "auto": the browser's).
        self.chosen = chosen
        if self.forced:
            forced_texts = catalogue(self.forced)
            super().__init__(**{code: forced_texts for code in _GRADIO_LOCALES})
        else:
            super().__init__(**{code: catalogue(code) for code in LANGUAGES})


def gradio_i18n(forced: str | None, chosen: Callable[[], str | None] | None = None) -> UiI18n:
    """The ``gr.I18n`` handed to Gradio: every language, or only the forced one under every locale code.

    ``chosen``: the language the user of the page being answered chose (asked at each event)."""
    return UiI18n(forced, chosen)


def forced_language(blocks: gr.Blocks | None = None) -> str | None:
    """The language forced on ``blocks``; by default on the UI whose event is being handled (Gradio
    keeps it in a context variable) or, while a UI is being built, on that one."""
    if blocks is None:
        from gradio.context import Context, LocalContext

        blocks = LocalContext.blocks.get(None) or Context.root_block
    i18n = getattr(blocks, "i18n_instance", None)
    return i18n.forced if isinstance(i18n, UiI18n) else None


def chosen_language(blocks: gr.Blocks | None = None) -> str | None:
    """The language the user of the event being answered chose for their pages (None: the browser's)."""
    if blocks is None:
        from gradio.context import Context, LocalContext

        blocks = LocalContext.blocks.get(None) or Context.root_block
    chosen = getattr(getattr(blocks, "i18n_instance", None), "chosen", None)
    try:
        language = chosen() if chosen else None
    except Exception:  # (no user's settings to read: the browser's language)
        return None
    return normalise(language) if language and language != "auto" else None


def page_language(request: gr.Request | None = None) -> str:
    """The language of the page whose event is being handled (Gradio keeps its request in a context
    variable): ``--language``, else the language its user chose, else the browser's."""
    if request is None:
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
    return request_language(request, forced_language() or chosen_language())
