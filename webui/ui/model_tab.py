"""Model tab: pick a model, see what it is, choose a loader and its options, load/unload.

Also: per-model settings ("Save settings"), import from anywhere on disk, delete,
and downloads from the Hugging Face Hub (``download_panel``). A llama.cpp vision model
gets a "Vision projector" dropdown (the ``mmproj`` load option) and a Vision row in its facts.

With log-in, the model is the server's: only an admin unloads, deletes, imports, downloads and saves a
model's settings (each through the services' admin wrappers, which refuse anyone else even when the
Gradio API is called directly). A page shows those controls only to admins (:func:`role_updates`);
others see the models they may use (the loaded one, and --user-models) and a note saying why.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from webui.agents.formats import FORMAT_NAMES
from webui.errors import WebUIError
from webui.loaders.remote import list_remote_models
from webui.models.facts import ModelFacts
from webui.models.model_settings import ModelSettings
from webui.params import LoadOptions
from webui.services import Services
from webui.ui.common import error_text, error_toast, field_component, on_pick, save_or_warn, ui_errors
from webui.ui.download_panel import build_download_panel
from webui.ui.embeddings_panel import build_embeddings_panel
from webui.ui.i18n import DEFAULT, page_language, t, tr
from webui.ui.loaded_models_panel import build_loaded_models_panel
from webui.ui.model_vision import (
    AUTO_PROJECTOR,
    NO_PROJECTOR,
    option_projector,
    projector_choices,
    projector_names,
    ui_projector,
    vision_fact,
)
from webui.ui.queue_panel import build_queue_panel
from webui.units import human_size

MODEL_TEMPLATE = "(the model's own)"
KEEP_PRESET = "(keep the current preset)"
#: The tool-call format dropdown's "read it from the chat template" value (saved as no format).
AUTO_FORMAT = "(auto)"

OPTION_NAMES = tuple(LoadOptions.model_fields)
#: Loader options wrap to about three a row (each slider keeps room for its label, info line and number box).
OPTION_MIN_WIDTH = 360


def status_text(services: Services, lang: str | None = None) -> str:
    lang = lang or page_language()
    current = services.models.current
    if current is None:
        return tr("model.status_none", lang)
    # A server's model says which of its APIs answers (the remote loader's /v1/chat/completions or /v1/completions).
    api = current.backend.metadata.get("remote.api")
    text = tr(
        "model.status_loaded",
        lang,
        name=current.name,
        loader=f"{current.loader} ({api})" if api else current.loader,
        n_ctx=current.backend.n_ctx,
        seconds=f"{current.load_seconds:.1f}",
    )
    backend = current.backend
    # A local file without a chat template is a base model (a server applies its own template).
    slots = backend.capabilities.parallel_sequences
    if slots > 1:
        text += "\n\n" + tr("model.status_parallel", lang, n=slots, n_ctx=backend.n_ctx)
    elif backend.parallel() is None:
        text += "\n\n" + tr("model.status_sequential", lang)
    draft = backend.metadata.get("draft_model")
    if draft:
        text += "\n\n" + tr("model.status_draft", lang, name=draft, n=current.options.draft_max)
    if backend.capabilities.local_files and not backend.chat_template:
        text += "\n\n⚠ " + tr("model.status_base", lang)
    return text


def guide_visible(services: Services) -> Any:
    """The first-run guide shows only while no model is loaded."""
    return gr.update(visible=services.models.current is None)


def facts_markdown(
    facts: ModelFacts, n_ctx: int | None, lang: str, vision: str | None = None, projector_size: int = 0
) -> str:
    """The model's facts as a Markdown table, in the page's language (``vision``: the Vision row's text,
    None for no row; ``projector_size``: the projector's bytes, loaded besides the model)."""
    unknown = tr("model.fact_unknown", lang)
    ctx = n_ctx or facts.context_length
    params = facts.parameters
    count = unknown if not params else f"{params / 1e9:.1f} B" if params >= 1e9 else f"{params / 1e6:.0f} M"
    rows = [
        ("model.fact_format", facts.format),
        ("model.fact_architecture", facts.architecture or unknown),
        ("model.fact_parameters", count),
        ("model.fact_quantisation", facts.quantization or unknown),
        (
            "model.fact_trained_context",
            tr("model.fact_tokens", lang, n=f"{facts.context_length:,}") if facts.context_length else unknown,
        ),
        (
            "model.fact_template",
            tr("model.fact_template_yes" if facts.has_chat_template else "model.fact_template_no", lang),
        ),
        ("model.fact_size", human_size(facts.file_size)),
    ]
    if vision is not None:
        rows.append(("model.fact_vision", vision))
    lines = [f"| {tr('model.fact_model', lang)} | **{facts.name}** |", "|---|---|"]
    lines += [f"| {tr(key, lang)} | {value} |" for key, value in rows]
    ram = tr("model.fact_ram_at", lang, n=f"{ctx:,}") if ctx else tr("model.fact_ram", lang)
    need = human_size(facts.ram_estimate(n_ctx) + projector_size)
    lines.append(f"| {ram} | {tr('model.fact_about', lang, size=need)} |")
    return "\n".join(lines)


def _option_fields(services: Services, loader: str | None, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The load options ``loader`` reads (its own declaration; ``default`` for no or an unknown loader)."""
    registry = services.models.loaders
    return registry.get(loader).option_fields if loader is not None and loader in registry else default


def _option_visibility(services: Services, loader: str | None) -> list[Any]:
    fields = _option_fields(services, loader)
    return [gr.update(visible=name in fields) for name in OPTION_NAMES]


def info_text(services: Services, name: str | None, n_ctx: Any = None, mmproj: str | None = None) -> str:
    """The selected model's facts (read from its header, not loaded), or why they cannot be read.

    ``mmproj``: the Vision projector dropdown's value (None: auto)."""
    if not name:
        return ""
    lang = page_language()
    try:
        facts = services.models.facts(name)
    except WebUIError as exc:
        return f"⚠ {error_text(exc, lang)}"
    vision, projector_size = vision_fact(services, name, facts, mmproj, lang)
    return facts_markdown(facts, int(n_ctx) if n_ctx else None, lang, vision, projector_size)


def tool_format_choices(services: Services, name: str | None, lang: str) -> list[tuple[str, str]]:
    """Auto (naming the format read from the template when ``name`` is the loaded model), then every format."""
    detected = services.detected_tool_format(name)
    auto = (
        tr("model.tool_format_auto_detected", lang, name=detected) if detected else tr("model.tool_format_auto", lang)
    )
    return [(auto, AUTO_FORMAT), *((fmt, fmt) for fmt in FORMAT_NAMES)]


def tool_format_state(services: Services, name: str | None, saved: ModelSettings, lang: str) -> tuple[Any, str]:
    """The tool-call format dropdown for ``name`` showing its saved choice, and a warning line when the saved
    name is no format (a hand-edited file): that one shows as Auto, as requests then use the template's."""
    value, note = AUTO_FORMAT, ""
    if saved.tool_format in FORMAT_NAMES:
        value = saved.tool_format
    elif saved.tool_format:
        note = "⚠ " + tr("model.tool_format_unknown", lang, name=saved.tool_format, names=", ".join(FORMAT_NAMES))
    return gr.update(choices=tool_format_choices(services, name, lang), value=value), note


def may_pick_models(services: Services) -> bool:
    """Whether this page's user gets a Load button: an admin, or anyone when --user-models lists models."""
    return services.is_admin or bool(services.root.settings.user_model_names)


def role_updates(services: Services, admin_only: int) -> list[Any]:
    """What this page's user sees: the Load button, the non-admin note, then ``admin_only`` controls
    shown to admins only. Without log-in everyone is the admin: every control shows, as before accounts."""
    admin = services.is_admin
    return [
        gr.update(visible=may_pick_models(services)),
        gr.update(visible=not admin),
        *(gr.update(visible=admin) for _ in range(admin_only)),
    ]


def _joined(*notes: str) -> str:
    return "\n\n".join(note for note in notes if note)


def build_model_tab(services: Services) -> dict[str, Any]:
    models = services.models
    current = models.current
    names = services.models_for_user()
    initial = current.name if current else (names[0] if names else None)
    initial_loader = current.loader if current else None
    if initial_loader is None and initial:
        try:
            initial_loader = models.infer_loader(initial)
        except Exception:
            initial_loader = None
    options = current.options if current else models.default_options

    with gr.Row():
        # the frontend translates the first part; the folder follows as it is
        model_dd = gr.Dropdown(
            choices=names,
            value=initial,
            label=t("model.model"),
            elem_id="model-dropdown",
            info=t("model.model_info") + f" {models.model_dir}",
            scale=4,
        )
        refresh = gr.Button(t("model.refresh"), elem_id="model-refresh", scale=0, min_width=100)
        loader_dd = gr.Dropdown(
            choices=services.models.loaders.names(),
            value=initial_loader,
            label=t("model.loader"),
            elem_id="loader-dropdown",
            info=t("model.loader_info"),
            scale=2,
        )
    # Built as the server-wide page (no log-in: the admin's); with log-in as nobody's, so the admin's controls
    # start hidden and each user's page load shows what that user may use (role_updates).
    admin = services.is_admin
    with gr.Row():
        load_btn = gr.Button(
            t("model.load"), variant="primary", elem_id="model-load", visible=may_pick_models(services)
        )
        unload_btn = gr.Button(t("model.unload"), elem_id="model-unload", visible=admin)
    role_note = gr.Markdown(t("roles.model_note"), elem_id="model-role-note", visible=not admin)

    # A settings file broken by hand did not stop the start: what was set aside or left out, and how to fix it
    # (the details name files and the YAML parser's words, in English)
    # (and, with log-in, the user's own settings file: their notes are filled in as their page opens)
    def start_notes_text() -> str:
        notes = [*services.root.settings.notices, *services.own_notices]
        return "\n\n".join(f"⚠ {html.escape(note)}" for note in notes)

    with gr.Group(visible=bool(start_notes_text()), elem_id="start-notes") as start_group:
        gr.Markdown(t("app.start_notes"))
        start_notes = gr.Markdown(start_notes_text(), elem_classes=["save-note"])
    status = gr.Markdown(status_text(services), elem_id="model-status")
    guide = gr.Markdown(t("model.guide"), elem_id="first-run-guide", visible=current is None)
    info = gr.Markdown(info_text(services, initial, options.n_ctx, ui_projector(options.mmproj)), elem_id="model-info")
    with gr.Accordion(t("model.loader_options"), open=True):
        visible = _option_fields(services, initial_loader)
        option_components: list[Any] = []
        with gr.Row():
            for name in OPTION_NAMES:
                if name == "remote_model":
                    # typed, or picked from the server's /v1/models (listed when the URL or key is entered)
                    value = getattr(options, name)
                    comp: Any = gr.Dropdown(
                        choices=[value] if value else [],
                        value=value or None,
                        allow_custom_value=True,
                        label=t("opt.remote_model.label"),
                        elem_id="opt-remote_model",
                        visible=name in visible,
                        info=t("opt.remote_model.info"),
                        min_width=OPTION_MIN_WIDTH,
                    )
                elif name == "mmproj":
                    # auto / none / a projector next to the model; page_state and on_select fill in the
                    # selected model's projectors and the page's language
                    value = ui_projector(options.mmproj)
                    comp = gr.Dropdown(
                        choices=[
                            (t("model.projector_auto"), AUTO_PROJECTOR),
                            (t("model.projector_none"), NO_PROJECTOR),
                            *((n, n) for n in projector_names(services, initial, value)),
                        ],
                        value=value,
                        label=t("model.vision_projector"),
                        elem_id="opt-mmproj",
                        visible=name in visible,
                        info=t("model.vision_projector_info"),
                        min_width=OPTION_MIN_WIDTH,
                    )
                else:
                    extra: dict[str, Any] = {"type": "password"} if name == "remote_key" else {}
                    if LoadOptions.model_fields[name].annotation is bool:
                        extra["elem_classes"] = ["option-switch"]
                    comp = field_component(
                        LoadOptions,
                        name,
                        getattr(options, name),
                        i18n_prefix="opt",
                        elem_prefix="opt-",
                        visible=name in visible,
                        min_width=OPTION_MIN_WIDTH,
                        **extra,
                    )
                option_components.append(comp)

    saved = _saved_settings(services, initial)
    with gr.Accordion(t("model.settings"), open=True):
        with gr.Row():
            template_dd = gr.Dropdown(
                choices=[(t("model.template_own"), MODEL_TEMPLATE), *services.instruction_templates.names()],
                value=saved.instruction_template or MODEL_TEMPLATE,
                label=t("model.template"),
                elem_id="model-template",
                scale=2,
                info=t("model.template_info"),
            )
            preset_dd = gr.Dropdown(
                choices=[(t("model.keep_preset"), KEEP_PRESET), *services.presets.names()],
                value=saved.preset or KEEP_PRESET,
                label=t("model.preset"),
                elem_id="model-preset",
                scale=2,
                info=t("model.preset_info"),
            )
            tool_format_dd = gr.Dropdown(
                choices=[(t("model.tool_format_auto"), AUTO_FORMAT), *((fmt, fmt) for fmt in FORMAT_NAMES)],
                value=saved.tool_format if saved.tool_format in FORMAT_NAMES else AUTO_FORMAT,
                label=t("model.tool_format"),
                elem_id="model-tool-format",
                scale=2,
                info=t("model.tool_format_info"),
            )
            save_btn = gr.Button(t("model.save_settings"), elem_id="model-save-settings", scale=1, visible=admin)
            delete_btn = gr.Button(t("model.delete"), variant="stop", elem_id="model-delete", scale=1, visible=admin)
        settings_msg = gr.Markdown("", elem_id="model-settings-message")
        with gr.Row(visible=False) as confirm_row:
            confirm_text = gr.Markdown("")
            confirm_btn = gr.Button(t("model.delete_confirm"), variant="stop", elem_id="model-delete-confirm")
            cancel_btn = gr.Button(t("common.cancel"), elem_id="model-delete-cancel")

    def page_state() -> list[Any]:
        """What a newly opened page shows (the page itself was built at start, with that moment's state):
        the models on disk now, the loaded one selected with the loader and options it runs with (else the
        last one used), its facts in the page's language and the settings saved for it."""
        lang = page_language()
        names = services.models_for_user()
        loaded = models.current
        if loaded is not None:
            selected = loaded.name if loaded.name in names else None  # a server's model is not a file here
            loader: str | None = loaded.loader
            opts = loaded.options
            note = ""
        else:
            last = services.settings.model
            selected = last if last in names else (names[0] if names else None)
            loader, opts, note = None, models.default_options, ""
            if selected:
                try:
                    loader, opts = models.options_for(selected, models.default_options)
                except WebUIError as exc:
                    note = f"⚠ {error_text(exc, lang)} {tr('model.using_defaults', lang)}"
                try:
                    loader = loader if loader in models.loaders else models.infer_loader(selected)
                except WebUIError:
                    loader = None
        fields = _option_fields(services, loader)
        option_updates: list[Any] = []
        for n in OPTION_NAMES:
            value = getattr(opts, n)
            if n == "remote_model":  # a dropdown: its value must be one of its choices
                option_updates.append(
                    gr.update(choices=[value] if value else [], value=value or None, visible=n in fields)
                )
            elif n == "mmproj":
                shown = ui_projector(value)
                option_updates.append(
                    gr.update(
                        choices=projector_choices(services, selected, shown, lang), value=shown, visible=n in fields
                    )
                )
            else:
                option_updates.append(gr.update(value=value, visible=n in fields))
        saved = _saved_settings(services, selected)
        tool_format, tool_note = tool_format_state(services, selected, saved, lang)
        return [
            gr.update(choices=names, value=selected),
            gr.update(value=loader),
            *option_updates,
            info_text(services, selected, opts.n_ctx, ui_projector(opts.mmproj)),
            gr.update(value=saved.instruction_template or MODEL_TEMPLATE),
            gr.update(value=saved.preset or KEEP_PRESET),
            tool_format,
            _joined(note, tool_note),
            *role_updates(services, len(admin_only)),
            queue_panel["page_load"](),
            gr.update(visible=bool(start_notes_text())),
            start_notes_text(),
        ]

    def on_refresh(selected: str | None) -> Any:
        names = services.models_for_user()
        return gr.update(choices=names, value=selected if selected in names else (names[0] if names else None))

    @ui_errors
    def on_select(name: str | None, n_ctx: Any) -> list[Any]:
        """Picking a model shows what it is and applies the settings saved for it."""
        if not name:
            return [gr.update(), *[gr.update() for _ in OPTION_NAMES], "", gr.update(), gr.update(), gr.update(), ""]
        lang = page_language()
        try:
            saved = models.model_settings(name)
            note = ""
        except WebUIError as exc:
            saved, note = ModelSettings(), f"⚠ {error_text(exc, lang)} {tr('model.using_defaults', lang)}"
        try:
            loader = saved.loader if saved.loader in models.loaders else models.infer_loader(name)
        except WebUIError:
            loader = None
        fields = _option_fields(services, loader)
        updates = [
            gr.update(visible=n in fields, **({"value": saved.options[n]} if n in saved.options else {}))
            for n in OPTION_NAMES
        ]
        # A projector belongs to one model: another model starts on its own saved choice, else auto.
        projector = ui_projector(saved.options.get("mmproj"))
        updates[OPTION_NAMES.index("mmproj")] = gr.update(
            visible="mmproj" in fields, choices=projector_choices(services, name, projector, lang), value=projector
        )
        if saved.to_entry() and not note:
            note = tr("model.applied_settings", lang, name=name)
        ctx = saved.options.get("n_ctx", n_ctx)
        tool_format, tool_note = tool_format_state(services, name, saved, lang)
        return [
            gr.update(value=loader),
            *updates,
            info_text(services, name, ctx, projector),
            gr.update(value=saved.instruction_template or MODEL_TEMPLATE),
            gr.update(value=saved.preset or KEEP_PRESET),
            tool_format,
            _joined(note, tool_note),
        ]

    @ui_errors
    def on_save_settings(
        name: str | None,
        loader: str | None,
        template: str | None,
        preset: str | None,
        tool_format: str | None,
        *values: Any,
    ) -> str:
        services.require_admin("save a model's settings")
        lang = page_language()
        if not name:
            raise error_toast(tr("model.pick_first", lang))
        fields = _option_fields(services, loader)
        chosen = {k: _typed(k, v) for k, v in zip(OPTION_NAMES, values, strict=True) if k in fields}
        LoadOptions.model_validate({**models.default_options.model_dump(), **chosen})
        entry = ModelSettings(
            loader=loader,
            options=chosen,
            instruction_template=None if template in (None, MODEL_TEMPLATE) else template,
            preset=None if preset in (None, KEEP_PRESET) else preset,
            tool_format=tool_format if tool_format in FORMAT_NAMES else None,
        )
        path = models.save_model_settings(name, entry)
        return tr("model.saved_settings", lang, name=name, path=path)

    def ask_delete(name: str | None) -> list[Any]:
        lang = page_language()
        if not name:
            return [gr.update(visible=False), "", tr("model.pick_to_delete", lang)]
        path = models.model_dir / name
        key = "model.delete_ask_link" if path.is_symlink() else "model.delete_ask_files"
        return [gr.update(visible=True), tr(key, lang, name=name), ""]

    @ui_errors
    def do_delete(name: str | None) -> list[Any]:
        if not name:
            return [gr.update(visible=False), gr.update(), "", status_text(services)]
        path = models.model_dir / name
        kind = "link" if path.is_symlink() else "file" if path.is_file() else "folder"
        services.delete_model(name)
        names = services.models_for_user()
        return [
            gr.update(visible=False),
            gr.update(choices=names, value=names[0] if names else None),
            tr(f"model.deleted_{kind}", page_language(), name=name),
            status_text(services),
        ]

    @ui_errors
    def on_load(name: str | None, loader: str | None, progress: gr.Progress = gr.Progress(), *values: Any) -> str:
        local = loader is None or loader not in models.loaders or models.loaders.get(loader).capabilities.local_files
        if not name and local:
            raise error_toast(tr("model.pick_first_load", page_language()))
        fields = _option_fields(services, loader, OPTION_NAMES)
        chosen = {k: _typed(k, v) for k, v in zip(OPTION_NAMES, values, strict=True) if k in fields}
        opts = LoadOptions.model_validate({**models.default_options.model_dump(), **chosen})
        lang = page_language()
        loaded = services.load_model(
            name or "",
            loader or None,
            opts,
            progress=lambda f, text: progress(
                f, desc=text if lang == DEFAULT else tr("model.loading", lang, name=name or loader)
            ),
            waiting=lambda ahead, seconds: progress(
                0.0, desc=tr("model.waiting", lang, n=ahead, s=max(1, round(seconds)), name=name or loader)
            ),
        )
        if services.is_admin:  # the model the next start loads is the server's setting, the admin's to choose
            save_or_warn(lambda: services.remember(model=loaded.name, loader=loaded.loader, load=loaded.options), lang)
        return status_text(services)

    @ui_errors
    def on_unload() -> str:
        # The main model (the one this tab shows); with several loaded the next most recently used takes its place.
        current = services.models.current
        services.unload_model(current.name if current is not None else None)
        return status_text(services)

    by_name: dict[str, Any] = dict(zip(OPTION_NAMES, option_components, strict=True))

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
        trigger(
            on_remote_address,
            [by_name["remote_url"], by_name["remote_key"], by_name["remote_model"]],
            by_name["remote_model"],
            show_progress="hidden",
        )
    info_inputs = [model_dd, by_name["n_ctx"], by_name["mmproj"]]

    def info_text_of(name: str | None, n_ctx: Any, mmproj: str | None) -> str:
        return info_text(services, name, n_ctx, mmproj)

    refresh.click(on_refresh, model_dd, model_dd, queue=False)
    select_outputs = [loader_dd, *option_components, info, template_dd, preset_dd, tool_format_dd, settings_msg]
    # Queued one at a time: picking two models quickly must end showing the second one's facts
    # (reading a big header takes longer, so unqueued answers could arrive out of order).
    # (always_last: a pick made while the previous one is still being answered is never dropped)
    on_pick(
        model_dd,
        on_select,
        [model_dd, by_name["n_ctx"]],
        select_outputs,
        concurrency_limit=1,
        concurrency_id="model-select",
        show_progress="hidden",
        trigger_mode="always_last",
    )
    # the RAM estimate follows the context; the Vision row (and the RAM) the projector
    for changed in (by_name["n_ctx"], by_name["mmproj"]):
        changed.input(
            info_text_of,
            info_inputs,
            info,
            concurrency_limit=1,
            concurrency_id="model-select",
            show_progress="hidden",
            trigger_mode="always_last",
        )
    saved_event = save_btn.click(
        on_save_settings,
        [model_dd, loader_dd, template_dd, preset_dd, tool_format_dd, *option_components],
        settings_msg,
        show_progress="hidden",  # queued: its errors are pop-ups
    )
    delete_btn.click(ask_delete, model_dd, [confirm_row, confirm_text, settings_msg], queue=False)
    cancel_btn.click(lambda: gr.update(visible=False), None, confirm_row, queue=False)
    deleted = confirm_btn.click(
        do_delete, model_dd, [confirm_row, model_dd, settings_msg, status], concurrency_id="model-load"
    )
    deleted.then(info_text_of, info_inputs, info, queue=False)
    # A failed action clears the message line: an old "Saved the settings ..." must not stand under its error.
    for event in (saved_event, deleted):
        event.failure(lambda: "", None, settings_msg, queue=False, show_progress="hidden")
    downloads = build_download_panel(services, model_dd)
    loaded_panel = build_loaded_models_panel(services, status, lambda: status_text(services))  # follows status
    build_embeddings_panel(services)  # shows its own Load/Unload by role: it is also served on its own
    queue_panel = build_queue_panel(services)
    # what page_state shows to admins only (role_updates)
    admin_only = [unload_btn, save_btn, delete_btn, *downloads["admin_only"]]
    on_pick(loader_dd, lambda loader: _option_visibility(services, loader), [loader_dd], option_components, queue=False)
    loaded = load_btn.click(
        on_load, [model_dd, loader_dd, *option_components], status, concurrency_limit=1, concurrency_id="model-load"
    )
    unloaded = unload_btn.click(on_unload, None, status, concurrency_id="model-load")
    # After a failed load the previous model may be back (or none): always -> not only on success.
    for event in (loaded, unloaded, deleted):
        event.then(lambda: guide_visible(services), None, guide, queue=False, show_progress="hidden")
    # The Vision row of a loaded model says what its backend can do, not what the files suggest.
    for event in (loaded, unloaded):
        event.then(info_text_of, info_inputs, info, queue=False, show_progress="hidden")

    def auto_label(name: str | None, value: str | None) -> Any:
        """The Auto choice names the format read from the template the loaded model now uses."""
        choices = tool_format_choices(services, name, page_language())
        return gr.update(choices=choices, value=value if value in FORMAT_NAMES else AUTO_FORMAT)

    # loading, unloading or saving (another instruction template) can change what Auto reads
    for event in (loaded, unloaded, saved_event):
        event.then(auto_label, [model_dd, tool_format_dd], tool_format_dd, queue=False, show_progress="hidden")
    return {
        "page_load": page_state,
        "page_load_outputs": [
            model_dd,
            *select_outputs,
            load_btn,
            role_note,
            *admin_only,
            queue_panel["view"],
            start_group,
            start_notes,
        ],
        "status": status,
        "guide": guide,
        "model": model_dd,
        "loaded": loaded,
        "unloaded": unloaded,
        #: A model unloaded in the loaded-models panel (it may have been the main one).
        "panel_unloaded": loaded_panel["unloaded"],
        "info": info,
        "info_inputs": info_inputs,
    }


def _typed(key: str, value: Any) -> Any:
    """Sliders send floats; integer options are stored as integers. The projector dropdown's auto is ""."""
    if key == "mmproj":
        return option_projector(value)
    if isinstance(value, float) and LoadOptions.model_fields[key].annotation is int:
        return int(value)
    return value


def _saved_settings(services: Services, name: str | None) -> ModelSettings:
    if not name:
        return ModelSettings()
    try:
        return services.models.model_settings(name)
    except WebUIError:
        return ModelSettings()
