"""Model tab: pick a model from the models folder, choose a loader and its options, load/unload."""
from __future__ import annotations

from typing import Any

import gradio as gr

from ..loaders import LOADERS, LoadOptions
from ..errors import WebUIError
from ..loaders.remote import list_remote_models
from ..services import Services
from .common import field_component, ui_errors

OPTION_NAMES = tuple(LoadOptions.model_fields)


def status_text(services: Services) -> str:
    current = services.models.current
    if current is None:
        return "**No model loaded.** Pick a model above and press **Load**."
    return f"**Loaded:** {current.describe()}"


def _option_visibility(loader: str | None) -> list[Any]:
    fields = LOADERS[loader].option_fields if loader in LOADERS else ()
    return [gr.update(visible=name in fields) for name in OPTION_NAMES]


def build_model_tab(services: Services) -> dict[str, Any]:
    models = services.models
    current = models.current
    names = models.list_models()
    initial = current.name if current else (names[0] if names else None)
    initial_loader = current.loader if current else None
    if initial_loader is None and initial:
        try:
            initial_loader = models.infer_loader(initial)
        except Exception:
            initial_loader = None
    options = current.options if current else models.default_options

    with gr.Row():
        model_dd = gr.Dropdown(choices=names, value=initial, label="Model", elem_id="model-dropdown",
                               info=f"Files and folders in {models.model_dir}", scale=4)
        refresh = gr.Button("↻ Refresh", elem_id="model-refresh", scale=0, min_width=100)
        loader_dd = gr.Dropdown(choices=list(LOADERS), value=initial_loader, label="Loader", elem_id="loader-dropdown",
                                info="Chosen from the file type; change it if you know better.", scale=2)
    with gr.Row():
        load_btn = gr.Button("Load", variant="primary", elem_id="model-load")
        unload_btn = gr.Button("Unload", elem_id="model-unload")
    status = gr.Markdown(status_text(services), elem_id="model-status")
    with gr.Accordion("Loader options", open=True):
        visible = LOADERS[initial_loader].option_fields if initial_loader in LOADERS else ()
        option_components = []
        with gr.Row():
            for name in OPTION_NAMES:
                if name == "remote_model":
                    # typed, or picked from the server's /v1/models (listed when the URL or key is entered)
                    value = getattr(options, name)
                    comp = gr.Dropdown(choices=[value] if value else [], value=value or None, allow_custom_value=True,
                                       label="remote model", elem_id="opt-remote_model", visible=name in visible,
                                       info=LoadOptions.model_fields[name].description)
                else:
                    extra = {"type": "password"} if name == "remote_key" else {}
                    comp = field_component(LoadOptions, name, getattr(options, name), elem_prefix="opt-",
                                           visible=name in visible,
                                           slider_max=131072 if name == "n_ctx" else None, **extra)
                option_components.append(comp)

    def on_refresh(selected: str | None) -> Any:
        names = models.list_models()
        return gr.update(choices=names, value=selected if selected in names else (names[0] if names else None))

    @ui_errors
    def on_select(name: str | None) -> list[Any]:
        if not name:
            return [gr.update(), *[gr.update() for _ in OPTION_NAMES]]
        loader = models.infer_loader(name)
        return [gr.update(value=loader), *_option_visibility(loader)]

    @ui_errors
    def on_load(name: str | None, loader: str | None, progress: gr.Progress = gr.Progress(), *values: Any) -> str:
        if not name and loader != "remote":
            raise gr.Error("Pick a model first. Put .gguf files or model folders in the models folder and "
                           "press Refresh.")
        fields = LOADERS[loader].option_fields if loader in LOADERS else OPTION_NAMES
        chosen = {k: v for k, v in zip(OPTION_NAMES, values) if k in fields}
        for key, val in chosen.items():
            if isinstance(val, float) and LoadOptions.model_fields[key].annotation is int:
                chosen[key] = int(val)
        opts = LoadOptions.model_validate({**models.default_options.model_dump(), **chosen})
        loaded = models.load(name or "", loader or None, opts, progress=lambda f, text: progress(f, desc=text))
        services.remember(model=loaded.name, loader=loaded.loader, load=loaded.options)
        return status_text(services)

    def on_unload() -> str:
        models.unload()
        return status_text(services)

    by_name = dict(zip(OPTION_NAMES, option_components))

    def on_remote_address(url: str, key: str, current: str | None) -> Any:
        """Offer the server's models as soon as its address (and key) are typed; Load reports errors."""
        if not url.startswith(("http://", "https://")):
            return gr.update()
        try:
            names = list_remote_models(url, key)
        except WebUIError:
            return gr.update()
        return gr.update(choices=names, value=current if current in names else (names[0] if names else current))

    for trigger in (by_name["remote_url"].blur, by_name["remote_url"].submit, by_name["remote_key"].blur):
        trigger(on_remote_address, [by_name["remote_url"], by_name["remote_key"], by_name["remote_model"]],
                by_name["remote_model"], show_progress="hidden")
    refresh.click(on_refresh, model_dd, model_dd, queue=False)
    model_dd.input(on_select, model_dd, [loader_dd, *option_components], queue=False)
    loader_dd.input(lambda loader: _option_visibility(loader), loader_dd, option_components, queue=False)
    loaded = load_btn.click(on_load, [model_dd, loader_dd, *option_components], status, concurrency_limit=1,
                            concurrency_id="model-load")
    unloaded = unload_btn.click(on_unload, None, status, concurrency_id="model-load")
    return {"status": status, "model": model_dd, "loaded": loaded, "unloaded": unloaded}
