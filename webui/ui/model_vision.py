"""The Model tab's vision projector (mmproj) parts: the "Vision projector" dropdown and the Vision row of
a model's facts.

Which projector a model loads with is the llama.cpp loader's decision (``webui.loaders.mtmd``); these
show that decision before a load (from the files) and after it (from the backend's capabilities).
"""

from __future__ import annotations

from webui.errors import WebUIError
from webui.loaders.mtmd import find_projectors, resolve_projector
from webui.models.facts import ModelFacts, model_gguf
from webui.services import Services
from webui.storage import safe_name
from webui.ui.common import error_text
from webui.ui.i18n import DEFAULT, tr

#: The dropdown's values for the ``mmproj`` option's "" (the one next to the model) and "none"; every
#: other value is a projector's file name (which ends in .gguf, so never one of these).
AUTO_PROJECTOR = "auto"
NO_PROJECTOR = "none"


def vision_fact(
    services: Services, name: str, facts: ModelFacts, mmproj: str | None, lang: str
) -> tuple[str | None, int]:
    """The Vision row for ``name`` (None: no row) and the bytes of the projector it would load.

    The loaded model answers from what its backend can do (``capabilities.images``); a GGUF not loaded
    yet from the projector the llama.cpp loader would load with it for the ``mmproj`` choice (auto: the
    one next to the model that belongs to it).
    """
    models = services.models
    current = models.current
    if current is not None and current.name == name:
        backend = current.backend
        if not backend.capabilities.images:
            off = current.options.mmproj.strip().lower() == NO_PROJECTOR
            return tr("model.fact_vision_off" if off else "model.fact_vision_no", lang), 0
        projector = backend.metadata.get("vision.projector")  # its file name, set by the llama.cpp loader
        if not isinstance(projector, str) or not projector:  # sees images without a projector file
            return tr("model.fact_vision_available", lang), 0
        beside = current.path.parent / projector if current.path is not None else None
        size = beside.stat().st_size if beside is not None and beside.is_file() else 0
        return tr("model.fact_vision_yes", lang, name=projector), size
    model = model_gguf(models.model_dir / name) if facts.format == "GGUF" else None
    if model is None:
        return None, 0
    choice = option_projector(mmproj)
    try:
        path, note = resolve_projector(model, choice)
    except WebUIError as exc:
        return f"⚠ {error_text(exc, lang)}", 0
    if path is None:
        if choice == NO_PROJECTOR:
            return tr("model.fact_vision_off", lang), 0
        # auto found projectors but none that is clearly this model's (a folder shared by several models)
        return tr("model.fact_vision_unsure" if note else "model.fact_vision_no", lang), 0
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return tr("model.fact_vision_yes", lang, name=path.name), size


def projector_choices(services: Services, name: str | None, value: str | None, lang: str) -> list[tuple[str, str]]:
    """Auto, none, then the projectors next to ``name`` (and ``value``, a saved name that is no longer
    there: shown as it is, so the user sees it; loading with it says it is missing)."""
    found: list[str] = []
    try:
        model = model_gguf(services.models.model_dir / safe_name(name, what="model name")) if name else None
    except WebUIError:
        model = None
    if model is not None:
        found = [p.name for p in find_projectors(model)]
    if value and value not in (AUTO_PROJECTOR, NO_PROJECTOR) and value not in found:
        found.append(value)
    return [
        (tr("model.projector_auto", lang), AUTO_PROJECTOR),
        (tr("model.projector_none", lang), NO_PROJECTOR),
        *((n, n) for n in found),
    ]


def ui_projector(option: str | None) -> str:
    """The dropdown value of an ``mmproj`` option value ("" is auto; "none" in any case is none)."""
    option = (option or "").strip()
    if not option:
        return AUTO_PROJECTOR
    return NO_PROJECTOR if option.lower() == NO_PROJECTOR else option


def option_projector(value: str | None) -> str:
    """The ``mmproj`` option value of a dropdown value (the inverse of ``ui_projector``)."""
    value = (value or "").strip()
    return "" if value in ("", AUTO_PROJECTOR) else NO_PROJECTOR if value.lower() == NO_PROJECTOR else value


def projector_names(services: Services, name: str | None, value: str) -> list[str]:
    """The file names among ``projector_choices`` (for the dropdown built before a page has a language)."""
    return [v for _, v in projector_choices(services, name, value, DEFAULT)[2:]]
