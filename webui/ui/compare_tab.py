"""Compare tab: one prompt, several configurations (models, presets or a parameter sweep), answers side by side.

A thin layer over :class:`webui.compare.Comparison`: it turns the rows of dropdowns into
``RunConfig``s, streams the comparison's events into the answer columns and the status line,
and writes the Markdown and CSV files the download buttons hand out.

What the user set up (prompt, system prompt, mode, seed, reply length, the rows, the sweep) is
remembered as it changes (settings.yaml ``compare``) and put back on every page load, so a reload
or a restart does not cost the comparison being prepared. The last comparison's answers, table and
downloads are kept too (``logs/compare/last.json``) and shown again on the next page load.
"""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import Any

import gradio as gr
from pydantic import ValidationError

from webui.compare import (
    COLUMN_KEYS,
    COLUMNS,
    COMPARE_MAX_TOKENS,
    DEFAULT_SEED,
    MAX_RUNS,
    SWEEPABLE,
    Comparison,
    LastComparison,
    RunConfig,
    RunResult,
    parse_values,
    read_last,
    save_last,
    sweep_configs,
    table_rows,
    write_exports,
)
from webui.errors import CompareError
from webui.params import SamplingParams
from webui.services import Services
from webui.ui.common import Frames, field_bounds, save_or_warn, ui_errors
from webui.ui.i18n import page_language, t, tr

#: Configuration rows (model + preset) shown in the tab.
ROWS = 4
UNUSED = ""
#: Characters of an answer shown in the table (the columns above and the downloads have it all).
TABLE_EXCERPT = 60


def configs_from(
    mode: str,
    models: list[str],
    presets: list[str],
    seed: float | None,
    max_tokens: float | None,
    sweep_param: str,
    sweep_values: str,
    lang: str,
) -> list[RunConfig]:
    """The rows of the tab as configurations: every used row, or row 1 swept over one parameter."""
    seed_value = DEFAULT_SEED if seed is None else int(seed)
    common = {"params": {"max_tokens": int(max_tokens or COMPARE_MAX_TOKENS)}, "seed": seed_value}
    try:
        if mode == "models":
            configs = [
                RunConfig(model=m, preset=p or None, **common) for m, p in zip(models, presets, strict=True) if m
            ]
        else:
            if not models[0]:
                raise CompareError(tr("compare.pick_model", lang, n=1))
            if mode == "presets":
                configs = [RunConfig(model=models[0], preset=p, **common) for p in presets if p]
            else:
                base = RunConfig(model=models[0], preset=presets[0] or None, **common)
                return sweep_configs(base, sweep_param, parse_values(sweep_values))
    except ValidationError as exc:
        raise CompareError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    if not configs:
        raise CompareError(tr("compare.no_rows", lang))
    return configs


def stats_text(result: RunResult, lang: str) -> str:
    """The line under an answer: tokens, speed, first token, seed; the model and what was changed."""
    if result.error:
        return tr("compare.error", lang, error=result.error)
    ttft = f"{result.ttft_seconds:.2f} s" if result.ttft_seconds is not None else "-"
    finish = (
        tr(f"compare.finish.{result.finish_reason}", lang)
        if result.finish_reason in ("stop", "length", "cancelled")
        else result.finish_reason
    )
    lines = [
        tr(
            "compare.stats",
            lang,
            tokens=result.completion_tokens,
            tps=f"{result.tokens_per_second:.1f}",
            ttft=ttft,
            prompt=result.prompt_tokens,
            finish=finish,
            seed=result.seed,
        ),
        tr(
            "compare.stats_model",
            lang,
            model=result.model,
            loader=result.loader,
            n_ctx=result.n_ctx,
            params=result.changed_text(),
        ),
    ]
    if result.load_seconds is not None:
        lines.append(tr("compare.stats_load", lang, seconds=f"{result.load_seconds:.1f}"))
    return "  \n".join(f"<sub>{line}</sub>" for line in lines)


def table_value(results: list[RunResult], lang: str) -> dict[str, Any]:
    rows = [
        [*row[:-1], row[-1] if len(row[-1]) <= TABLE_EXCERPT else row[-1][:TABLE_EXCERPT] + "…"]
        for row in table_rows(results)
    ]
    return {"headers": [tr(k, lang) for k in COLUMN_KEYS], "data": rows}


def last_path(services: Services) -> Path:
    """Where this view's user's last comparison is kept."""
    return services.data_dir / "logs" / "compare" / "last.json"


def _defaults(services: Services) -> tuple[list[str], list[str]]:
    """Rows to start with: the loaded model (else the first) and another model; the chosen preset."""
    names = services.models.text_models()
    loaded = services.models.current
    first = loaded.name if loaded and loaded.name in names else (names[0] if names else UNUSED)
    second = next((n for n in names if n != first), UNUSED)
    preset = services.settings.preset if services.settings.preset in services.presets.names() else UNUSED
    return [first, second] + [UNUSED] * (ROWS - 2), [preset, preset] + [UNUSED] * (ROWS - 2)


def saved_setup(
    prompt: str | None,
    system: str | None,
    mode: str | None,
    seed: float | None,
    max_tokens: float | None,
    sweep_param: str | None,
    sweep_values: str | None,
    *row_values: str | None,
) -> dict[str, Any]:
    """The tab's inputs as remembered in settings.yaml (``compare``)."""
    return {
        "prompt": prompt or "",
        "system": system or "",
        "mode": mode or "models",
        "seed": None if seed is None else int(seed),
        "max_tokens": None if max_tokens is None else int(max_tokens),
        "sweep_param": sweep_param or "",
        "sweep_values": sweep_values or "",
        "models": [v or UNUSED for v in row_values[:ROWS]],
        "presets": [v or UNUSED for v in row_values[ROWS:]],
    }


def restored_setup(saved: Any, start_models: list[str], start_presets: list[str]) -> dict[str, Any]:
    """The remembered inputs (a hand-edited file may hold anything: what does not fit gets the start value)."""
    saved = saved if isinstance(saved, dict) else {}

    def text(key: str, default: str) -> str:
        value = saved.get(key)
        return value if isinstance(value, str) else default

    def number(key: str, default: int) -> int:
        value = saved.get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default

    def rows(key: str, default: list[str]) -> list[str]:
        value = saved.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return default
        return (value + [UNUSED] * ROWS)[:ROWS]

    mode = text("mode", "models")
    param = text("sweep_param", "temperature")
    return {
        "prompt": text("prompt", ""),
        "system": text("system", ""),
        "mode": mode if mode in ("models", "presets", "sweep") else "models",
        "seed": number("seed", DEFAULT_SEED),
        "max_tokens": number("max_tokens", COMPARE_MAX_TOKENS),
        "sweep_param": param if param in SWEEPABLE else "temperature",
        "sweep_values": text("sweep_values", "0.2, 0.7, 1.2"),
        "models": rows("models", start_models),
        "presets": rows("presets", start_presets),
    }


def build_compare_tab(services: Services) -> dict[str, Any]:
    comparison = Comparison(services)
    start_models, start_presets = _defaults(services)

    def model_choices() -> list[tuple[str, str]]:
        return [("—", UNUSED), *((n, n) for n in services.models.text_models())]

    def preset_choices() -> list[tuple[str, str]]:
        return [("—", UNUSED), *((n, n) for n in services.presets.names())]

    gr.Markdown(t("compare.intro_md"))
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(
                label=t("compare.prompt"),
                lines=4,
                max_lines=20,
                elem_id="compare-prompt",
                placeholder=t("compare.prompt_placeholder"),
            )
            system = gr.Textbox(label=t("compare.system_prompt"), lines=2, max_lines=10, elem_id="compare-system")
        with gr.Column(scale=2):
            mode = gr.Radio(
                [
                    (t("compare.mode.models"), "models"),
                    (t("compare.mode.presets"), "presets"),
                    (t("compare.mode.sweep"), "sweep"),
                ],
                value="models",
                label=t("compare.mode"),
                elem_id="compare-mode",
            )
            with gr.Row():
                seed_lo, seed_hi = field_bounds(SamplingParams, "seed")
                seed = gr.Number(
                    value=DEFAULT_SEED,
                    precision=0,
                    minimum=seed_lo,
                    maximum=seed_hi,
                    label=t("compare.seed"),
                    info=t("compare.seed_info"),
                    elem_id="compare-seed",
                )
                tokens_lo, tokens_hi = field_bounds(SamplingParams, "max_tokens")
                max_tokens = gr.Number(
                    value=COMPARE_MAX_TOKENS,
                    precision=0,
                    minimum=tokens_lo,
                    maximum=tokens_hi,
                    label=t("compare.max_tokens"),
                    elem_id="compare-max-tokens",
                )
    with gr.Row():
        gr.Markdown(t("compare.configs_md"))
        refresh = gr.Button(t("compare.refresh"), size="sm", elem_id="compare-refresh", scale=0, min_width=120)
    model_dds, preset_dds, rows = [], [], []
    for i in range(ROWS):
        with gr.Row(visible=True) as row:
            model_dds.append(
                gr.Dropdown(
                    choices=model_choices(),
                    value=start_models[i],
                    label=t("compare.model"),
                    elem_id=f"compare-model-{i}",
                    scale=3,
                )
            )
            preset_dds.append(
                gr.Dropdown(
                    choices=preset_choices(),
                    value=start_presets[i],
                    label=t("compare.preset"),
                    elem_id=f"compare-preset-{i}",
                    scale=2,
                )
            )
        rows.append(row)
    with gr.Row(visible=False) as sweep_row:
        sweep_param = gr.Dropdown(
            choices=list(SWEEPABLE), value="temperature", label=t("compare.sweep_param"), elem_id="compare-sweep-param"
        )
        sweep_values = gr.Textbox(
            value="0.2, 0.7, 1.2",
            label=t("compare.sweep_values"),
            info=t("compare.sweep_info"),
            elem_id="compare-sweep-values",
            max_lines=1,
        )
    with gr.Row():
        run = gr.Button(t("compare.run"), variant="primary", elem_id="compare-run")
        stop = gr.Button(t("compare.stop"), variant="stop", elem_id="compare-stop")
    status = gr.Markdown("", elem_id="compare-status")
    gr.Markdown(t("compare.results_md"))
    columns, answers, stats = [], [], []
    with gr.Row(equal_height=False):
        for i in range(MAX_RUNS):
            with gr.Column(visible=False, min_width=220) as column:
                answers.append(
                    gr.Textbox(
                        label=t("compare.answer"),
                        lines=8,
                        max_lines=30,
                        interactive=False,
                        buttons=["copy"],
                        elem_id=f"compare-answer-{i}",
                    )
                )
                stats.append(gr.Markdown("", elem_id=f"compare-stats-{i}"))
            columns.append(column)
    table = gr.Dataframe(
        label=t("compare.table"),
        elem_id="compare-table",
        interactive=False,
        wrap=True,
        headers=list(COLUMNS),
        max_height=400,
        column_widths=["3%", "16%", "7%", "7%", "13%", "7%", "6%", "6%", "6%", "6%", "6%", "17%"],
    )
    with gr.Row():
        download_md = gr.DownloadButton(
            t("compare.download_md"), elem_id="compare-download-md", size="sm", interactive=False
        )
        download_csv = gr.DownloadButton(
            t("compare.download_csv"), elem_id="compare-download-csv", size="sm", interactive=False
        )

    outputs = [status, *columns, *answers, *stats, table, download_md, download_csv]

    @ui_errors
    def on_run(
        request: gr.Request,
        prompt_v: str,
        system_v: str,
        mode_v: str,
        seed_v: float | None,
        max_tokens_v: float | None,
        param_v: str,
        values_v: str,
        *row_values: str,
    ) -> Any:
        lang = page_language(request)
        configs = configs_from(
            mode_v, list(row_values[:ROWS]), list(row_values[ROWS:]), seed_v, max_tokens_v, param_v, values_v, lang
        )
        titles = [tr("compare.run_title", lang, n=i + 1, title=c.title()) for i, c in enumerate(configs)]
        texts = [""] * len(configs)
        lines = [""] * len(configs)
        results: list[RunResult] = []
        line = tr("compare.status.starting", lang, total=len(configs))

        def view(files: tuple[Any, Any] = (gr.update(), gr.update())) -> list[Any]:
            shown = range(MAX_RUNS)
            return [
                line,
                *(gr.update(visible=i < len(configs)) for i in shown),
                *(
                    gr.update(value=texts[i], label=titles[i]) if i < len(configs) else gr.update(value="")
                    for i in shown
                ),
                *(lines[i] if i < len(configs) else "" for i in shown),
                table_value(results, lang),
                *files,
            ]

        session = request.session_hash or "anonymous"
        cancel = services.cancels.start(session)
        try:
            yield view((gr.update(value=None, interactive=False), gr.update(value=None, interactive=False)))
            frames = Frames(services.settings.ui_updates_per_second)
            with closing(comparison.run(prompt_v, system_v, configs, cancel=cancel)) as events:
                for event in events:
                    if event.kind == "partial" and event.index is not None:
                        texts[event.index] = event.text
                        if not frames.due():
                            continue
                    elif event.kind == "result" and event.result is not None:
                        result = event.result
                        results.append(result)
                        texts[result.index], lines[result.index] = result.text, stats_text(result, lang)
                    else:
                        line = tr(event.key, lang, **event.fields)
                    yield view()
        finally:
            services.cancels.end(session, cancel)
        md, csv = write_exports(
            results, services.export_dir, prompt_v, system_v, tuple(tr(k, lang) for k in COLUMN_KEYS)
        )
        last = LastComparison(
            finished_at=time.strftime("%Y-%m-%d %H:%M"),
            prompt=prompt_v or "",
            system_prompt=system_v or "",
            results=results,
            markdown=str(md),
            csv=str(csv),
        )
        save_or_warn(lambda: save_last(last_path(services), last), lang)
        yield view((gr.update(value=str(md), interactive=True), gr.update(value=str(csv), interactive=True)))

    def on_page_results(request: gr.Request) -> list[Any]:
        """The last comparison's answers, stats, table and downloads, as it left them (nothing when there is none)."""
        last = read_last(last_path(services))
        if last is None or not last.results:
            return [gr.update() for _ in outputs]
        lang = page_language(request)
        shown = sorted(last.results, key=lambda r: r.index)[:MAX_RUNS]
        used = range(len(shown))
        files = [
            gr.update(value=f, interactive=True) if f and Path(f).is_file() else gr.update()
            for f in (last.markdown, last.csv)
        ]
        return [
            tr("compare.status.last", lang, when=last.finished_at, n=len(shown)),
            *(gr.update(visible=i in used) for i in range(MAX_RUNS)),
            *(
                gr.update(
                    value=shown[i].text,
                    label=tr("compare.run_title", lang, n=shown[i].index + 1, title=shown[i].config.title()),
                )
                if i in used
                else gr.update(value="")
                for i in range(MAX_RUNS)
            ),
            *(stats_text(shown[i], lang) if i in used else "" for i in range(MAX_RUNS)),
            table_value(shown, lang),
            *files,
        ]

    def on_stop(request: gr.Request) -> None:
        services.cancels.stop(request.session_hash or "anonymous")

    inputs: list[Any] = [prompt, system, mode, seed, max_tokens, sweep_param, sweep_values, *model_dds, *preset_dds]

    def on_change(*values: Any) -> None:
        """Remember the inputs (a reload or a restart puts them back)."""
        setup = saved_setup(*values)
        if setup != services.settings.compare:
            save_or_warn(lambda: services.remember(compare=setup))

    # A text or number box also on blur: a paste or an autofill may change it without an input event.
    typed: list[Any] = [prompt, system, seed, max_tokens, sweep_values]
    for trigger in [*(c.input for c in inputs), *(c.blur for c in typed)]:
        trigger(on_change, inputs, None, queue=False, show_progress="hidden", trigger_mode="always_last")
    run.click(on_change, inputs, None, queue=False, show_progress="hidden")
    run.click(on_run, inputs, outputs, concurrency_limit=None, show_progress="hidden")
    stop.click(on_stop, None, None, queue=False)

    def on_page_load() -> list[Any]:
        """The inputs as they were left, with fresh model and preset lists (a choice that is gone is left out)."""
        start_m, start_p = _defaults(services)
        setup = restored_setup(services.settings.compare, start_m, start_p)
        known_m, known_p = {v for _, v in model_choices()}, {v for _, v in preset_choices()}
        return [
            setup["prompt"],
            setup["system"],
            setup["mode"],
            setup["seed"],
            setup["max_tokens"],
            setup["sweep_param"],
            setup["sweep_values"],
            *(gr.update(choices=model_choices(), value=m if m in known_m else UNUSED) for m in setup["models"]),
            *(gr.update(choices=preset_choices(), value=p if p in known_p else UNUSED) for p in setup["presets"]),
        ]

    def on_mode(mode_v: str) -> list[Any]:
        """Models: every row. Presets: row 1's model, a preset per row. Sweep: row 1 and the values."""
        return [
            *(gr.update(visible=mode_v != "sweep" or i == 0) for i in range(ROWS)),
            *(gr.update(visible=mode_v == "models" or i == 0) for i in range(ROWS)),
            gr.update(visible=mode_v == "sweep"),
        ]

    mode.change(on_mode, mode, [*rows, *model_dds, sweep_row], queue=False, show_progress="hidden")

    def on_refresh(*row_values: str) -> list[Any]:
        """Fresh model and preset lists; a choice that is gone is left out, an empty row 1 gets the loaded model."""
        start_m, _ = _defaults(services)
        models, presets = row_values[:ROWS], row_values[ROWS:]
        known_m, known_p = {v for _, v in model_choices()}, {v for _, v in preset_choices()}
        kept_m = [m if m in known_m else UNUSED for m in models]
        kept_m[0] = kept_m[0] or start_m[0]
        return [
            *(gr.update(choices=model_choices(), value=m) for m in kept_m),
            *(gr.update(choices=preset_choices(), value=p if p in known_p else UNUSED) for p in presets),
        ]

    refresh.click(on_refresh, [*model_dds, *preset_dds], [*model_dds, *preset_dds], queue=False)
    # Opening the tab refreshes the lists too (a model downloaded or loaded since the page opened).
    tab = gr.context.get_render_context()
    if isinstance(tab, gr.Tab):
        tab.select(on_refresh, [*model_dds, *preset_dds], [*model_dds, *preset_dds], queue=False)

        def on_open_table(current: Any, request: gr.Request) -> Any:
            """An empty table gets its column names in the page's language (Gradio does not translate them)."""
            if current is not None and len(current) > 0:
                return gr.update()
            return table_value([], page_language(request))

        tab.select(on_open_table, table, table, queue=False)
    return {
        "run": run,
        "stop": stop,
        "status": status,
        "page_load": on_page_load,
        "page_load_outputs": inputs,
        "page_load_results": on_page_results,
        "page_load_results_outputs": outputs,
    }
