"""The Model tab's Queue: who is generating and who waits, with the expected wait.

One model answers one request at a time and the server takes turns between users; this is where a
user sees their place (and an admin everyone's: names of others only for admins).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui.services import Services
from webui.ui.i18n import page_language, t, tr


def queue_markdown(services: Services, lang: str | None = None) -> str:
    """The queue as this page's user may see it, as a Markdown table (or a line saying it is empty)."""
    viewer = services.user.name if services.user else None
    entries = services.generator.queue_view(viewer, services.is_admin)
    if not entries:
        return tr("queue.empty", lang)
    rows = [tr("queue.header", lang), "| --- | --- | --- | --- | --- |"]
    for entry in entries:
        if entry["kind"] == "model load":
            whose = tr("queue.model_load", lang)
        elif entry["mine"]:
            whose = tr("queue.you", lang)
        elif entry["user"] in (None, "another user"):
            whose = tr("queue.someone", lang)
        else:
            whose = str(entry["user"])
        state = tr(f"queue.{entry['state']}", lang)
        starts = "—" if entry["state"] == "running" else f"~{entry['estimated_wait_seconds']:g} s"
        rows.append(f"| {entry['position']} | {whose} | {state} | {entry['waited_seconds']:g} s | {starts} |")
    return "\n".join(rows)


def place_of(services: Services, job: Any) -> tuple[int, float]:
    """How many requests run before ``job`` and about how many seconds until it starts ((0, 0): it runs)."""
    ahead = services.generator.ahead_of(job)
    position = services.generator.position(job)
    if not ahead or not position:
        return 0, 0.0
    viewer = services.user.name if services.user else None
    for entry in services.generator.queue_view(viewer, services.is_admin):
        if entry["position"] == position and entry["state"] == "waiting":
            return ahead, float(entry["estimated_wait_seconds"])
    return ahead, 0.0


def build_queue_panel(services: Services) -> dict[str, Any]:
    with gr.Accordion(t("queue.panel"), open=False, elem_id="queue-panel"):
        view = gr.Markdown(tr("queue.empty"), elem_id="queue-view")
        refresh = gr.Button(t("queue.refresh"), elem_id="queue-refresh", size="sm")
    refresh.click(lambda: queue_markdown(services, page_language()), None, view, queue=False, show_progress="hidden")
    return {"view": view, "page_load": lambda: queue_markdown(services, page_language())}
