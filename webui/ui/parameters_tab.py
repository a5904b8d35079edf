"""Parameters tab: every sampling parameter (built from ``SamplingParams``) and the presets."""

from __future__ import annotations

import json
import typing
from typing import Any

import gradio as gr
from pydantic import ValidationError

from webui.errors import WebUIError
from webui.params import SAMPLING_FIELDS, SamplingParams
from webui.services import Services
from webui.ui.common import error_line, error_toast, field_component, on_pick, save_or_warn, ui_errors
from webui.ui.i18n import page_language, t, tr

#: How the fields are laid out; every ``SamplingParams`` field appears exactly once.
#: (Group titles are catalogue keys ``params.group.<title>``.)
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Sampling", ("max_tokens", "temperature", "top_p", "top_k", "min_p", "typical_p", "do_sample", "seed")),
    ("Repetition", ("repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty")),
    ("DRY", ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers")),
    ("XTC", ("xtc_probability", "xtc_threshold")),
    ("Mirostat", ("mirostat_mode", "mirostat_tau", "mirostat_eta")),
    ("Speed", ("prompt_lookup",)),
    ("Output", ("stop", "ban_eos_token", "skip_special_tokens", "truncation_length", "grammar_string", "json_schema")),
)
ORDER: tuple[str, ...] = tuple(name for _, names in GROUPS for name in names)
assert sorted(ORDER) == sorted(SAMPLING_FIELDS), "every sampling field needs a place in GROUPS"


def _is_list(name: str) -> bool:
    return typing.get_origin(SamplingParams.model_fields[name].annotation) is list


def to_component_value(name: str, value: Any) -> Any:
    """A SamplingParams value as its component shows it (lists as quoted, comma-separated strings)."""
    if _is_list(name):
        return ", ".join(json.dumps(v, ensure_ascii=False) for v in value)
    return value


def params_from_values(values: typing.Sequence[Any]) -> SamplingParams:
    """Build ``SamplingParams`` from the components' values, in ``ORDER``."""
    data: dict[str, Any] = {}
    for name, value in zip(ORDER, values, strict=True):
        if SamplingParams.model_fields[name].annotation is int and isinstance(value, float):
            value = int(value)
        data[name] = value
    try:
        return SamplingParams.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise error_toast(tr("params.invalid", page_language(), problems=problems)) from exc


def values_of(params: SamplingParams) -> list[Any]:
    return [to_component_value(name, getattr(params, name)) for name in ORDER]


def interactivity(services: Services) -> list[Any]:
    """Disable the parameters the loaded model's loader cannot honour (never silently ignore them)."""
    current = services.models.current
    if current is None:
        return [gr.update(interactive=True) for _ in ORDER]
    supported = current.backend.supported_params
    return [gr.update(interactive=name in supported) for name in ORDER]


def loader_note(services: Services, lang: str | None = None) -> str:
    lang = lang or page_language()
    current = services.models.current
    if current is None:
        return tr("params.note_none", lang)
    unsupported = [n for n in ORDER if n not in current.backend.supported_params]
    if not unsupported:
        return tr("params.note_all", lang, loader=current.loader)
    return tr("params.note_some", lang, loader=current.loader, names=", ".join(unsupported))


def is_shared(store: Any, name: str) -> bool:
    """Whether ``name`` is a shared library item this user has no copy of (with log-in, for a user who is
    not the admin); an admin's (or no log-in's) store is the library itself."""
    shared = getattr(store, "is_shared", None)
    return bool(shared is not None and name in store.names() and shared(name))


def build_parameters_tab(services: Services) -> dict[str, Any]:
    store = services.presets  # the page's first values only: handlers ask for the user's own (services.presets)
    start = services.initial_params()
    start_preset = services.settings.preset if services.settings.preset in store.names() else None
    with gr.Row():
        preset_dd = gr.Dropdown(
            choices=store.names(),
            value=start_preset,
            label=t("params.preset"),
            elem_id="preset-dropdown",
            info=t("params.preset_info"),
            scale=3,
        )
        restore = gr.Button(t("params.restore"), elem_id="preset-restore", scale=0, min_width=130)
        name_box = gr.Textbox(
            value=start_preset or "",
            label=t("params.preset_name"),
            elem_id="preset-name",
            scale=2,
            info=t("params.preset_name_info"),
        )
        save = gr.Button(t("common.save"), variant="primary", elem_id="preset-save", scale=0, min_width=120)
        delete = gr.Button(t("common.delete"), variant="stop", elem_id="preset-delete", scale=0, min_width=110)
    with gr.Row(visible=False) as confirm_row:
        confirm_text = gr.Markdown("")
        confirm = gr.Button(t("params.delete_confirm"), variant="stop", elem_id="preset-delete-confirm")
        cancel = gr.Button(t("common.cancel"), elem_id="preset-delete-cancel")
    message = gr.Markdown("", elem_id="preset-message")
    note = gr.Markdown(loader_note(services), elem_id="params-loader-note")
    unknown_state = gr.State({})

    components: dict[str, gr.components.Component] = {}
    with gr.Row():
        for title, names in GROUPS:
            if title in ("Sampling", "Repetition"):
                column = gr.Column()
            with column:
                with gr.Accordion(t(f"params.group.{title}"), open=title in ("Sampling", "Repetition", "Output")):
                    for name in names:
                        value = to_component_value(name, getattr(start, name))
                        if name == "grammar_string":
                            # the frontend translates the first part; the folder follows as it is
                            grammar_file = gr.Dropdown(
                                choices=services.grammar_names(),
                                value=None,
                                label=t("params.grammar_file"),
                                elem_id="param-grammar-file",
                                info=t("params.grammar_file_info") + f" {services.grammars_dir}",
                            )
                            comp: Any = gr.Textbox(
                                value=value,
                                lines=4,
                                label=t(f"param.{name}.label"),
                                elem_id="param-grammar_string",
                                info=t(f"param.{name}.info"),
                            )
                        elif name == "json_schema":
                            comp = gr.Textbox(
                                value=value,
                                lines=4,
                                label=t(f"param.{name}.label"),
                                elem_id="param-json_schema",
                                info=t(f"param.{name}.info"),
                            )
                        elif _is_list(name):
                            comp = gr.Textbox(
                                value=value,
                                label=t(f"param.{name}.label"),
                                elem_id=f"param-{name}",
                                info=t(f"param.{name}.info"),
                            )
                        else:
                            comp = field_component(
                                SamplingParams, name, value, i18n_prefix="param", elem_prefix="param-"
                            )
                        components[name] = comp
            if title == "Repetition":
                column = gr.Column()
    param_list: list[Any] = [components[name] for name in ORDER]

    def remember_values(*values: Any) -> None:
        try:
            params = params_from_values(values)
        except gr.Error:
            return  # half-typed value; it is saved once it is valid
        save_or_warn(lambda: services.remember(params=params.non_default()))

    @ui_errors
    def load_preset(name: str | None) -> list[Any]:
        if not name:
            return [gr.update() for _ in ORDER] + [gr.update(), "", {}, gr.update()]
        lang = page_language()
        try:
            preset = services.presets.load(name)  # this page's user's (with log-in: their own copies too)
        except WebUIError as exc:
            # A broken file: the values stay as they were, and so does the dropdown (left on the broken
            # name it would say that preset is in use); the reason stays on the message line.
            reason = error_line(exc, lang)
            before = services.settings.preset if services.settings.preset in services.presets.names() else None
            kept = tr("params.kept", lang, name=before) if before else tr("params.kept_values", lang)
            unchanged = [gr.update() for _ in ORDER]
            stop = "" if reason.endswith((".", "。", "!", "?")) else "."
            return [*unchanged, gr.update(), f"{reason}{stop} {kept}", gr.update(), gr.update(value=before)]
        save_or_warn(lambda: services.remember(preset=name, params=preset.params.non_default()))
        warning = f"⚠ {preset.warning}" if preset.warning else tr("params.loaded", lang, name=name)
        return [*values_of(preset.params), name, warning, preset.unknown, gr.update()]

    @ui_errors
    def save_preset(name: str, current: str | None, unknown: dict, *values: Any) -> list[Any]:
        name = (name or "").strip()
        if not name:
            raise error_toast(tr("params.name_first", page_language()))
        params = params_from_values(values)
        presets = services.presets  # this page's user's: with log-in, the shared library plus their own
        copy = is_shared(presets, name)  # saved into their own folder; the shared one stays as it is
        presets.save(name, params, unknown if name == current else None)
        save_or_warn(lambda: services.remember(preset=name, params=params.non_default()))
        message = tr("roles.saved_own_preset" if copy else "params.saved", page_language(), name=name)
        return [gr.update(choices=presets.names(), value=name), message]

    def ask_delete(name: str | None) -> list[Any]:
        lang = page_language()
        if not name:
            return [gr.update(visible=False), "", tr("params.pick_to_delete", lang)]
        return [gr.update(visible=True), tr("params.delete_ask", lang, name=name), ""]

    @ui_errors
    def do_delete(name: str | None) -> list[Any]:
        presets = services.presets  # a user who is not the admin may delete only their own presets
        if name:
            presets.delete(name)
        names = presets.names()
        fallback = "Default" if "Default" in names else None
        save_or_warn(lambda: services.remember(preset=fallback))
        return [
            gr.update(visible=False),
            gr.update(choices=names, value=fallback),
            tr("params.deleted", page_language(), name=name),
        ]

    @ui_errors
    def pick_grammar(file: str | None) -> Any:
        return services.read_grammar(file) if file else gr.update()

    def current_state() -> list[Any]:
        """What a newly opened page shows: the last chosen preset and values."""
        names = services.presets.names()
        preset = services.settings.preset if services.settings.preset in names else None
        return [gr.update(choices=names, value=preset), preset or "", *values_of(services.initial_params())]

    outputs = [*param_list, name_box, message, unknown_state, preset_dd]
    # Queued (not queue=False) so that errors show as a pop-up message.
    # A failed action clears the message line: an old "Saved preset ..." must not stand under its error.
    actions = [
        on_pick(preset_dd, load_preset, [preset_dd], outputs, show_progress="hidden"),
        restore.click(load_preset, preset_dd, outputs, show_progress="hidden"),
        save.click(
            save_preset, [name_box, preset_dd, unknown_state, *param_list], [preset_dd, message], show_progress="hidden"
        ),
        confirm.click(do_delete, preset_dd, [confirm_row, preset_dd, message], show_progress="hidden"),
    ]
    for event in actions:
        event.failure(lambda: "", None, message, queue=False, show_progress="hidden")
    delete.click(ask_delete, preset_dd, [confirm_row, confirm_text, message], queue=False)
    cancel.click(lambda: gr.update(visible=False), None, confirm_row, queue=False)
    on_pick(grammar_file, pick_grammar, [grammar_file], components["grammar_string"], show_progress="hidden")
    for component in param_list:
        component.input(
            remember_values, param_list, None, queue=False, show_progress="hidden", trigger_mode="always_last"
        )
    return {
        "components": param_list,
        "note": note,
        "preset": preset_dd,
        "current_state": current_state,
        "state_outputs": [preset_dd, name_box, *param_list],
    }
