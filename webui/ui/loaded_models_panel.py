"""Model tab panel: the models loaded side by side, what each takes, and Unload for one of them.

With a memory budget (``--models-budget-mb``) several models stay loaded; the Model tab's status
shows only the main one. This panel lists them all (memory, idle time, requests served) so the user
sees what is using the RAM and what ``--model-ttl`` will unload next, and lets an admin free one
model without unloading the others.

Models come and go without this page doing anything (an API request with ``--load-on-demand``, the
idle time-to-live), so the table is refreshed on page load, whenever the Model tab's status changes
(its Load, Unload and Delete) and every few seconds. With log-in the dropdown and Unload show to
admins only (on page load), and unloading goes through the services' admin wrapper, which refuses
anyone else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from webui.models.manager import LoadedModel, ModelManager
from webui.services import Services
from webui.ui.common import error_toast, ui_errors, warn
from webui.ui.i18n import page_language, t, tr
from webui.units import human_size

#: Seconds between refreshes while a page is open: idle times grow, and models are loaded (on demand)
#: and unloaded (time-to-live) by requests this page knows nothing of.
REFRESH_SECONDS = 5.0


def idle_text(seconds: float, lang: str) -> str:
    """How long a model has gone without a request, in whole seconds, minutes or hours."""
    whole = max(0, int(seconds))
    if whole < 60:
        return tr("model.loaded_idle_seconds", lang, n=whole)
    if whole < 3600:
        return tr("model.loaded_idle_minutes", lang, n=whole // 60)
    return tr("model.loaded_idle_hours", lang, n=whole // 3600)


def memory_text(loaded: LoadedModel, lang: str) -> str:
    """The RAM a model takes here; a server's model (the remote loader) takes none on this machine."""
    return tr("model.loaded_on_server", lang) if loaded.path is None else human_size(loaded.memory_bytes)


def policy_text(models: ModelManager, loaded: list[LoadedModel], lang: str) -> str:
    """The line above the table: how much of the memory budget is used (or that one model fits at a time),
    and when models other than the main one are unloaded."""
    if models.budget_bytes > 0:
        used = sum(m.memory_bytes for m in loaded)
        text = tr("model.loaded_budget", lang, used=human_size(used), budget=human_size(models.budget_bytes))
    else:
        text = tr("model.loaded_one_at_a_time", lang)
    if models.ttl_seconds > 0:
        text += " " + tr("model.loaded_ttl", lang, n=f"{models.ttl_seconds:g}")
    return text


def _name_cell(name: str) -> str:
    """A model name as code in a table cell: a ``|`` would end the cell, a backtick the code span."""
    return "`" + name.replace("`", "'").replace("|", "\\|") + "`"


def _row(loaded: LoadedModel, main: str | None, lang: str, now: float) -> str:
    name = _name_cell(loaded.name)
    if loaded.name == main:
        name += f" **({tr('model.loaded_main', lang)})**"
    cells = [name, loaded.loader, memory_text(loaded, lang), idle_text(now - loaded.last_used, lang), loaded.requests]
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def loaded_models_text(models: ModelManager, lang: str | None = None, now: float | None = None) -> str:
    """The panel's Markdown: the budget line, then a table of the loaded models, the main one first and marked."""
    lang = lang or page_language()
    now = time.time() if now is None else now
    loaded = models.loaded_models()
    policy = policy_text(models, loaded, lang)
    if not loaded:
        return f"{policy}\n\n{tr('model.loaded_none', lang)}"
    main = models.current.name if models.current is not None else None
    columns = ("model", "loader", "memory", "idle", "requests")
    header = "| " + " | ".join(tr(f"model.loaded_col_{c}", lang) for c in columns) + " |"
    lines = [policy, "", header, "|---|---|---:|---:|---:|", *(_row(m, main, lang, now) for m in loaded)]
    return "\n".join(lines)


def loaded_names(models: ModelManager) -> list[str]:
    return [m.name for m in models.loaded_models()]


def default_pick(names: list[str], picked: str | None) -> str | None:
    """The dropdown keeps its model while it is loaded; else the last listed (a model other than the main one,
    the one more likely to be unloaded, when there are several)."""
    if picked in names:
        return picked
    return names[-1] if names else None


def build_loaded_models_panel(
    services: Services, watch: gr.Markdown | None = None, status_of: Callable[[], str] | None = None
) -> dict[str, Any]:
    """The panel (an accordion) inside the current Blocks.

    ``watch``: a component whose changes mean the loaded models changed (the Model tab's status, which
    its Load, Unload and Delete rewrite); ``status_of`` makes that component's text again after this
    panel unloads a model (the main one may be the one gone).
    """
    models = services.models
    names = loaded_names(models)
    admin = services.is_admin  # with log-in the page is built as nobody's: hidden until an admin's page loads
    with gr.Accordion(t("model.loaded_panel"), open=True, elem_id="loaded-models-panel"):
        table = gr.Markdown(loaded_models_text(models), elem_id="loaded-models")
        with gr.Row(visible=admin) as admin_row:
            pick = gr.Dropdown(
                choices=names,
                value=default_pick(names, None),
                label=t("model.loaded_pick"),
                info=t("model.loaded_pick_info"),
                elem_id="loaded-models-pick",
                scale=4,
            )
            unload_btn = gr.Button(t("model.loaded_unload"), elem_id="loaded-models-unload", scale=1)
    shown = gr.State(names)  # the names the dropdown lists, so a refresh leaves an unchanged dropdown alone
    timer = gr.Timer(REFRESH_SECONDS)

    def refresh(picked: str | None, listed: list[str] | None) -> list[Any]:
        names_now = loaded_names(models)
        if names_now == listed:
            return [loaded_models_text(models), gr.skip(), gr.skip()]
        return [
            loaded_models_text(models),
            gr.update(choices=names_now, value=default_pick(names_now, picked)),
            names_now,
        ]

    @ui_errors
    def on_unload(picked: str | None, listed: list[str] | None) -> list[Any]:
        lang = page_language()
        if not picked:
            raise error_toast(tr("model.loaded_pick_first", lang), lang)
        if picked in loaded_names(models):
            services.unload_model(picked)
        else:  # unloaded meanwhile (its time-to-live, another admin): say so, and show what is loaded now
            warn(tr("model.loaded_gone", lang, name=picked), lang)
        return refresh(picked, listed)

    def page_load() -> list[Any]:
        names_now = loaded_names(models)
        dropdown = gr.update(choices=names_now, value=default_pick(names_now, None))
        return [loaded_models_text(models), dropdown, names_now, gr.update(visible=services.is_admin)]

    outputs = [table, pick, shown]
    hidden: dict[str, Any] = {"queue": False, "show_progress": "hidden"}
    timer.tick(refresh, [pick, shown], outputs, **hidden)
    if watch is not None:
        watch.change(refresh, [pick, shown], outputs, **hidden)
    unloaded = unload_btn.click(on_unload, [pick, shown], outputs, concurrency_id="model-load")
    if watch is not None and status_of is not None:
        unloaded.then(status_of, None, watch, **hidden)
    from gradio.context import Context

    page_outputs = [*outputs, admin_row]
    if Context.root_block is not None:  # the page was built at start: a page opened later shows the state now
        Context.root_block.load(page_load, None, page_outputs, queue=False)
    return {
        "table": table,
        "pick": pick,
        "unloaded": unloaded,
        "refresh": refresh,
        "refresh_inputs": [pick, shown],
        "refresh_outputs": outputs,
        "page_load": page_load,
        "page_load_outputs": page_outputs,
    }
