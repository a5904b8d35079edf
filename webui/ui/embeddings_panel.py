"""Model tab panel: the embedding model that answers ``POST /v1/embeddings`` (RAG clients), beside the chat model.

A thin view over ``services.embeddings``: pick a model of the models folder (a .gguf file or a
sentence-transformers folder), Load or Unload it, and read what is loaded (dimensions, kind). The
choice is remembered (``embedding_model`` in settings.yaml), so the next start loads it again.

With log-in the embedding model is the server's: Load and Unload show to admins only (on page load) and
go through the services' admin wrappers, which refuse anyone else.
"""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

from webui.services import Services
from webui.ui.common import error_toast, save_or_warn, ui_errors
from webui.ui.i18n import page_language, t, tr

#: Names that look like embedding models: picked first in the list when none is loaded or remembered.
EMBEDDING_HINT = re.compile(r"minilm|embed|bge|e5-|gte|nomic|mpnet|sentence", re.IGNORECASE)


def embeddings_status(services: Services, lang: str | None = None) -> str:
    lang = lang or page_language()
    info = services.embeddings.current
    if info is None:
        return tr("embeddings.status_none", lang)
    return tr(
        "embeddings.status_loaded",
        lang,
        name=info.name,
        kind=info.kind,
        dims=info.dims,
        n_ctx=info.n_ctx,
        pooling=info.pooling,
        seconds=f"{info.load_seconds:.1f}",
    )


def embedding_choice(services: Services, names: list[str]) -> str | None:
    """What the dropdown shows: the loaded model, else the remembered one, else the first that looks like one."""
    info = services.embeddings.current
    for name in (info.name if info else None, services.settings.embedding_model):
        if name in names:
            return name
    return next((n for n in names if EMBEDDING_HINT.search(n)), None)


def build_embeddings_panel(services: Services, open: bool = False) -> dict[str, Any]:
    """The panel (an accordion) inside the current Blocks; a page opened later shows the state of that moment."""
    names = services.models.list_models()
    admin = services.is_admin  # with log-in the page is built as nobody's: hidden until an admin's page loads
    with gr.Accordion(t("embeddings.panel"), open=open, elem_id="embeddings-panel"):
        gr.Markdown(t("embeddings.intro"))
        with gr.Row():
            model_dd = gr.Dropdown(
                choices=names,
                value=embedding_choice(services, names),
                label=t("embeddings.model"),
                info=t("embeddings.model_info"),
                elem_id="embeddings-model",
                scale=4,
            )
            refresh_btn = gr.Button(t("model.refresh"), elem_id="embeddings-refresh", scale=0, min_width=100)
        with gr.Row():
            load_btn = gr.Button(t("embeddings.load"), variant="primary", elem_id="embeddings-load", visible=admin)
            unload_btn = gr.Button(t("embeddings.unload"), elem_id="embeddings-unload", visible=admin)
        status = gr.Markdown(embeddings_status(services), elem_id="embeddings-status")

    @ui_errors
    def on_load(name: str | None) -> str:
        lang = page_language()
        if not name:
            raise error_toast(tr("embeddings.pick_first", lang), lang)
        info = services.load_embedding_model(name)
        save_or_warn(lambda: services.remember(embedding_model=info.name), lang)
        return embeddings_status(services, lang)

    @ui_errors
    def on_unload() -> str:
        lang = page_language()
        services.unload_embedding_model()
        save_or_warn(lambda: services.remember(embedding_model=None), lang)
        return embeddings_status(services, lang)

    def on_refresh(current: str | None) -> Any:
        listed = services.models.list_models()
        return gr.update(choices=listed, value=current if current in listed else embedding_choice(services, listed))

    def page_load() -> list[Any]:
        listed = services.models.list_models()
        admin = gr.update(visible=services.is_admin)
        return [
            gr.update(choices=listed, value=embedding_choice(services, listed)),
            embeddings_status(services),
            admin,
            admin,
        ]

    load_btn.click(on_load, model_dd, status, concurrency_limit=1, concurrency_id="embeddings-load")
    unload_btn.click(on_unload, None, status, concurrency_id="embeddings-load")
    refresh_btn.click(on_refresh, model_dd, model_dd, queue=False)
    outputs = [model_dd, status, load_btn, unload_btn]
    from gradio.context import Context

    if Context.root_block is not None:  # the page was built at start: a page opened later shows the state now
        Context.root_block.load(page_load, None, outputs, queue=False)
    return {"model": model_dd, "status": status, "page_load": page_load, "page_load_outputs": outputs}
