"""The text catalogues of the UI (``webui/locales/<lang>/<area>.yaml``), without Gradio.

``webui/ui/i18n.py`` hands them to Gradio and picks the page's language; modules outside the UI
(the comparison's status lines and table headings) read their English text here.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
LANGUAGES: dict[str, str] = {"en": "English", "ru": "Русский", "zh": "中文"}
DEFAULT = "en"


@functools.cache
def catalogue(lang: str) -> dict[str, str]:
    """Every key of ``lang``, with English filling the gaps."""
    merged: dict[str, str] = {}
    for code in dict.fromkeys((DEFAULT, lang)):
        folder = LOCALES_DIR / code
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{path}: a catalogue must be a mapping of key: text")
            merged.update({str(k): str(v) for k, v in data.items()})
    return merged


def normalise(lang: str | None) -> str:
    """``ru-RU`` -> ``ru``, ``zh-Hans`` -> ``zh``; anything we do not have -> ``en``."""
    code = (lang or "").strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else DEFAULT


def text(key: str, lang: str | None = None, **fields: Any) -> str:
    """The text of ``key`` in ``lang`` with its ``{name}`` fields filled; the key itself when unknown."""
    found = catalogue(normalise(lang)).get(key)
    if found is None:
        log.warning("missing translation key %r", key)
        return key
    try:
        return found.format(**fields) if fields else found
    except (KeyError, IndexError, ValueError):
        log.warning("translation %r (%s) does not fit its fields %s", key, lang, sorted(fields))
        return found


class Keyed(str):
    """English text that also carries its catalogue key and fields, so the UI can show it translated.

    Domain code returns these where it makes a sentence for people (a template note, a truncation
    note); everything else (the API, logs, tests) keeps using it as the plain English string.
    """

    key: str
    fields: dict[str, Any]

    def __new__(cls, english: str, key: str, **fields: Any) -> Keyed:
        obj = super().__new__(cls, english)
        obj.key, obj.fields = key, fields
        return obj


def in_language(value: str, lang: str | None) -> str:
    """``value`` in ``lang`` when it is :class:`Keyed`, else as it is."""
    if isinstance(value, Keyed):
        return text(
            value.key, lang, **{k: in_language(v, lang) if isinstance(v, Keyed) else v for k, v in value.fields.items()}
        )
    return str(value)
