"""Helpers shared by the tabs: error conversion and components built from pydantic fields."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import time
import typing
from collections.abc import Callable
from typing import Any

import gradio as gr
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from webui.errors import SaveError, WebUIError
from webui.ui.i18n import DEFAULT, catalogue, normalise, page_language, t, tr
from webui.ui.session import keep_request

log = logging.getLogger(__name__)


def error_text(exc: WebUIError, lang: str | None) -> str:
    """An error's message in ``lang``.

    English is the message itself. Errors with a catalogue key are translated whole; the others
    (rarer, often quoting a library or a server) get a translated headline for their kind
    before the English details.
    """
    lang = normalise(lang)
    if lang == DEFAULT:
        return exc.message
    if exc.key:
        return " ".join([tr(exc.key, lang, **exc.fields), *(tr(key, lang, **fields) for key, fields in exc.notes)])
    kind = f"error.kind.{exc.code}"
    headline = tr(kind if kind in catalogue(lang) else "error.kind.webui_error", lang)
    return f"{headline}: {exc.message}"


def toast_text(message: str) -> str:
    """``message`` for a pop-up, which Gradio shows as HTML: a ``<name>`` in it (a file name, a parser's
    ``<stream end>``, a model's ``<|im_end|>``) would be dropped as a tag, and the sentence cut."""
    return html.escape(message, quote=False)


def error_toast(message: str, lang: str | None = None) -> gr.Error:
    """A ``gr.Error`` (raise it) whose pop-up title is in the page's language too, not only its text."""
    return gr.Error(toast_text(message), title=tr("toast.error", lang or page_language()))


def warn(message: str, lang: str | None = None) -> None:
    """A warning pop-up, titled in the page's language."""
    gr.Warning(toast_text(message), title=tr("toast.warning", lang or page_language()))


def inform(message: str, lang: str | None = None) -> None:
    """An information pop-up, titled in the page's language."""
    gr.Info(toast_text(message), title=tr("toast.info", lang or page_language()))


def error_line(exc: WebUIError, lang: str | None = None) -> str:
    """A failed action's reason for the place its result goes ("⚠ ..."), also shown as a pop-up: the pop-up
    goes after 10 s, and the last result, left standing under it, would read as this action's."""
    reason = error_text(exc, lang or page_language())
    warn(reason, lang)
    return f"⚠ {reason}"


def _as_gr_error(exc: Exception) -> gr.Error:
    lang = page_language()
    if isinstance(exc, WebUIError):
        return error_toast(error_text(exc, lang), lang)
    log.exception("Unexpected error in a UI handler")
    return error_toast(tr("error.unexpected", lang, kind=type(exc).__name__, detail=str(exc)), lang)


def save_or_warn(save: Callable[[], object], lang: str | None = None) -> bool:
    """Run ``save``; a :class:`SaveError` is shown as a warning and the action it belongs to
    still counts (a ``gr.Error`` would end the handler, and a running generation, over a file
    that could not be written). False if it failed."""
    try:
        save()
    except SaveError as exc:
        lang = lang or page_language()
        warn(error_text(exc, lang), lang)
        return False
    return True


def save_note_box(elem_id: str) -> gr.Markdown:
    """The line under a box that says its text could not be saved (hidden while saves work): see
    :func:`save_note`."""
    return gr.Markdown("", visible=False, elem_id=elem_id, elem_classes=["save-note"])


def save_note(save: Callable[[], object], lang: str | None = None) -> Any:
    """Run ``save`` for a box saved as it is typed into, and give the update of its :func:`save_note_box`:
    the error while saving fails, nothing once it works again.

    Those saves run in unqueued events (they must land in the order typed), and Gradio 6.31 drops the
    pop-ups of an unqueued event: a warning there would only reach the log, so the failure is written
    next to the box instead.
    """
    try:
        save()
    except SaveError as exc:
        log.warning("%s", exc.message)
        return gr.update(value="⚠ " + error_text(exc, lang or page_language()), visible=True)
    return gr.update(value="", visible=False)


def ui_errors(fn: Callable) -> Callable:
    """Turn our typed errors into ``gr.Error`` popups, for plain and generator handlers.

    The pop-up reaches the page only from a queued event: Gradio 6.31 drops the error of a ``queue=False``
    one without a word (tests/unit/test_errors_reach_the_page.py keeps such handlers queued).
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from keep_request(fn(*args, **kwargs))
            except gr.Error:
                raise
            except Exception as exc:
                raise _as_gr_error(exc) from exc

        gen_wrapper.shows_errors = True  # type: ignore[attr-defined]
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _as_gr_error(exc) from exc

    wrapper.shows_errors = True  # type: ignore[attr-defined]
    return wrapper


#: Page JS (run once): a pick in a dropdown - a press on one of its options, or Enter in it - marks the
#: dropdown (each ancestor with an id) as having a pick to send; on_pick's handlers send only then.
PICK_JS = """
() => {
  const mark = (el) => { for (let n = el; n; n = n.parentElement) if (n.id) n.dataset.webuiPick = '1'; };
  document.addEventListener('mousedown', (e) => {
    const option = e.target.closest && e.target.closest('[role=option]');
    if (option) mark(option);
  }, true);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') mark(e.target);
  }, true);
}
"""

_ONCE_JS = """(...args) => {{
  const el = document.getElementById({id});
  if (el && el.dataset.webuiPick) delete el.dataset.webuiPick; else args[0] = null;
  return args;
}}"""


def on_pick(dropdown: gr.Dropdown, fn: Callable, inputs: list[Any], outputs: Any, **kwargs: Any) -> Any:
    """Run ``fn`` once for each pick a person makes in ``dropdown`` (which must be ``inputs[0]``).

    Gradio 6.31's dropdown sends ``.input`` twice for a pick with the mouse (on the pick, and again as
    it loses focus), once whenever it only loses focus (clicked open and closed, or tabbed through),
    and ``.select`` not at all for a pick with the keyboard. A repeat is not harmless: a preset loaded
    again resets the values typed since, a model picked again its load options. So the page marks a
    real pick (PICK_JS: a press on an option, or Enter) and sends ``fn`` the value once per mark; any
    other ``.input`` reaches the server as None and ``fn`` is not called. Picking the value already
    shown still acts (it reloads a preset, opens a character just saved). Returns the event.
    """
    if inputs[0] is not dropdown or not dropdown.elem_id or inspect.isgeneratorfunction(fn):
        raise ValueError("on_pick: a plain function, with the dropdown (with an elem_id) as its first input")
    many = isinstance(outputs, (list, tuple))

    @functools.wraps(fn)
    def once(*args: Any, **kw: Any) -> Any:
        if args and args[0] is None:
            if outputs is None:
                return None
            return [gr.update() for _ in outputs] if many else gr.update()
        return fn(*args, **kw)

    return dropdown.input(once, inputs, outputs, js=_ONCE_JS.format(id=f'"{dropdown.elem_id}"'), **kwargs)


class Frames:
    """Paces streamed UI updates to a frame rate (settings ``ui_updates_per_second``, 10 by default).

    Each update costs the server a postprocess and a diff of the whole value (about 7 ms for a
    500-message chat) and the browser 25-55 ms of CPU for Gradio's page code and the redraw
    (bench/ui.py, 2 cores, headless Chromium): CPU that llama.cpp would use on the same laptop. Ten
    updates a second still read as live text and halve that cost against twenty. Handlers send an update
    only when a frame is due; the final value is always sent after the loop.
    """

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._last = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in info.metadata:
        lo = getattr(m, "ge", lo)
        hi = getattr(m, "le", hi)
    return lo, hi


def field_bounds(model: type[BaseModel], name: str) -> tuple[float | None, float | None]:
    """The ``ge``/``le`` range of a pydantic field (the one place a range is written down)."""
    return _bounds(model.model_fields[name])


def field_component(
    model: type[BaseModel], name: str, value: Any = None, *, i18n_prefix: str, elem_prefix: str = "", **kwargs: Any
) -> gr.components.Component:
    """A component for one pydantic field: its range and default come from the model.

    Label and info are the catalogue's ``<i18n_prefix>.<name>.label`` and ``.info`` (in English: the
    field's name and description; ``tests/unit/test_i18n.py`` keeps them equal).
    """
    info = model.model_fields[name]
    value = info.default if value is None else value
    common = {
        "label": t(f"{i18n_prefix}.{name}.label"),
        "info": t(f"{i18n_prefix}.{name}.info"),
        "elem_id": f"{elem_prefix}{name}" if elem_prefix else None,
        **kwargs,
    }
    annotation = info.annotation
    if annotation is bool:
        return gr.Checkbox(value=value, **common)
    if typing.get_origin(annotation) is typing.Literal:
        return gr.Dropdown(choices=list(typing.get_args(annotation)), value=value, **common)
    if annotation in (int, float):
        lo, hi = _bounds(info)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        hi = extra.get("ui_max", hi)  # type: ignore[assignment]
        step = float(extra["ui_step"]) if "ui_step" in extra else None  # type: ignore[arg-type]
        if lo is not None and hi is not None and hi - lo <= 100_000:
            return gr.Slider(
                minimum=lo, maximum=hi, value=value, step=step or (1 if annotation is int else 0.01), **common
            )
        return gr.Number(value=value, precision=0 if annotation is int else None, minimum=lo, maximum=hi, **common)
    return gr.Textbox(value="" if value is None else str(value), **common)
