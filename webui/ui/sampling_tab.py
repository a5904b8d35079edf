"""The Sampling tab: the sampler playground (one forward pass, then the sampler math re-applied to the
same logits on every slider move, as bars before/after with entropy and pool) and the perplexity of a
text (each token coloured by its surprise). The HTML is made and escaped here; the shared text helpers
are the Notebook view's (``webui/ui/probabilities_ui.py``).
"""

from __future__ import annotations

import codecs
import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.errors import AttachmentError, NoModelLoadedError, WebUIError
from webui.params import SamplingParams
from webui.probabilities import (
    PerplexityResult,
    Playground,
    PlaygroundView,
    evaluate_perplexity,
    surprises,
)
from webui.services import Services
from webui.ui.common import error_line, field_component, save_note, save_note_box, save_or_warn, ui_errors, warn
from webui.ui.i18n import page_language, t, tr
from webui.ui.parameters_tab import ORDER, params_from_values
from webui.ui.probabilities_ui import (
    PLAYGROUND_FIELDS,
    SURPRISE_RED,
    _attr,
    cell_text,
    percent,
    printable,
    surprise_colour,
)

if TYPE_CHECKING:
    from webui.sampling.chain import SamplerView


def _playground_rows(view: SamplerView) -> Iterable[tuple[int, float | None, float | None, str | None]]:
    """(id, before, after, removed_by) for the 'before' candidates, then those only 'after' has."""
    after = {c.id: c.prob for c in view.after}
    seen = set()
    for c in view.before:
        seen.add(c.id)
        yield c.id, c.prob, after.get(c.id), c.removed_by
    for c in view.after:
        if c.id not in seen:
            yield c.id, None, c.prob, None


def _bar(p: float | None, cls: str) -> str:
    width = 0.0 if p is None else max(0.0, min(100.0, 100 * p))
    return f'<span class="sp-bar"><span class="{cls}" style="width:{width:.1f}%"></span></span>'


def playground_html(result: PlaygroundView, lang: str) -> str:
    """The top candidates as bars: grey the model's own probability (temperature 1), coloured what the
    samplers leave; the entropies and the pool size above them."""
    view = result.view
    stats = tr(
        "sampling.playground_stats",
        lang,
        h_before=f"{view.entropy_before:.2f}",
        h_after=f"{view.entropy_after:.2f}",
        pool=view.pool,
    )
    rows = [
        '<div class="sp-row sp-headrow">'
        f"<span>{html.escape(tr('sampling.view_token', lang))}</span>"
        f"<span>{html.escape(tr('sampling.view_before', lang))}</span><span></span>"
        f"<span>{html.escape(tr('sampling.view_after', lang))}</span><span></span></div>"
    ]
    penalised = set(view.penalised)
    removed_word = tr("sampling.view_removed_by", lang)
    for cid, before, after, removed in _playground_rows(view):
        text = cell_text(result.texts.get(cid, f"#{cid}"))
        if removed:
            after_text = f"{removed_word} {removed}"
        else:
            after_text = percent(after) if after is not None else tr("sampling.view_kept", lang)
        if cid in penalised:
            after_text += " ↓ " + tr("sampling.view_penalised", lang)
        cls = "sp-row sp-gone" if removed else "sp-row"
        rows.append(
            f'<div class="{cls}" data-id="{cid}"><span class="sp-tok">{html.escape(text)}</span>'
            f'{_bar(before, "sp-before")}<span class="sp-num">{html.escape(percent(before))}</span>'
            f'{_bar(None if removed else after, "sp-after")}<span class="sp-num">{html.escape(after_text)}</span></div>'
        )
    notes = "".join(f'<div class="sp-note">{html.escape(note)}</div>' for note in view.notes)
    return f'<div class="sp-stats">{html.escape(stats)}</div><div class="sp-rows">{"".join(rows)}</div>{notes}'


PLAYGROUND_CSS = """
.sp-stats { font-weight: 600; margin-bottom: 6px; }
.sp-rows { display: grid; grid-template-columns: minmax(6em, 12em) 1fr 4.5em 1fr minmax(5em, 11em); gap: 3px 8px;
  align-items: center; font-size: var(--text-sm); }
.sp-row { display: contents; }
.sp-headrow span { color: var(--body-text-color-subdued); }
.sp-tok { font-family: var(--font-mono); white-space: pre; overflow: hidden; text-overflow: ellipsis; }
.sp-bar { display: block; height: 14px; background: var(--background-fill-secondary); border-radius: 3px; overflow: hidden; }
.sp-bar > span { display: block; height: 100%; }
.sp-before { background: var(--neutral-400); }
.sp-after { background: var(--color-accent); }
.sp-num { text-align: right; font-variant-numeric: tabular-nums; }
.sp-gone .sp-tok, .sp-gone .sp-num { color: var(--body-text-color-subdued); }
.sp-note { color: var(--body-text-color-subdued); font-size: var(--text-sm); margin-top: 6px; }
"""


# ----- perplexity --------------------------------------------------------------------------------------
def perplexity_summary(result: PerplexityResult, lang: str) -> str:
    bits = [b for b in surprises(result) if b is not None]
    mean = sum(bits) / len(bits) if bits else 0.0
    value = f"{result.perplexity:.2f}" if math.isfinite(result.perplexity) else "∞"
    return tr("sampling.ppl_result", lang, ppl=value, n=result.scored, bits=f"{mean:.2f}", model=result.model)


def perplexity_html(result: PerplexityResult, lang: str) -> str:
    """The text, each token coloured by its surprise (bits), with its probability in a hover title."""
    spans = []
    for (text, logprob), bits in zip(result.tokens, surprises(result), strict=True):
        shown = html.escape(printable(text))
        if logprob is None or bits is None:
            spans.append(f'<span class="pp-tok" title="{_attr(tr("sampling.ppl_first", lang))}">{shown}</span>')
            continue
        title = tr("sampling.ppl_title", lang, text=cell_text(text), p=percent(math.exp(logprob)), bits=f"{bits:.1f}")
        spans.append(
            f'<span class="pp-tok" style="background-color:{surprise_colour(bits)}" '
            f'title="{_attr(title)}" data-bits="{bits:.2f}">{shown}</span>'
        )
    legend = html.escape(tr("sampling.ppl_legend", lang, bits=f"{SURPRISE_RED:.0f}"))
    return f'<div class="pp-legend">{legend}</div><div class="pp-text">{"".join(spans)}</div>'


PERPLEXITY_CSS = """
.pp-legend { font-size: var(--text-sm); color: var(--body-text-color-subdued); margin: 4px 0; }
.pp-text { white-space: pre-wrap; word-break: break-word; line-height: 1.8; padding: 8px 10px; max-height: 420px;
  overflow-y: auto; border: 1px solid var(--border-color-primary); border-radius: var(--radius-md); }
.pp-tok { border-radius: 3px; }
"""


def read_text_file(path: str, lang: str) -> str:
    """An uploaded .txt as text (UTF-8, a byte-order mark dropped; a stray byte shown as U+FFFD, with a
    warning). ``AttachmentError`` for a file with nothing in it, UTF-16/32 text or a binary file (NUL
    bytes): pasting those would fill the box with garbage, or empty it."""
    name = Path(path).name
    raw = Path(path).read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]

    def refuse(key: str) -> AttachmentError:
        return AttachmentError(tr(key, "en", name=name), key=key, name=name)

    if not raw:
        raise refuse("sampling.ppl_empty")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise refuse("sampling.ppl_utf16")
    if b"\x00" in raw:
        raise refuse("sampling.ppl_binary")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        warn(tr("sampling.ppl_not_utf8", lang, name=name), lang)
        return raw.decode("utf-8", errors="replace")


# ----- the Sampling tab --------------------------------------------------------------------------------
def playground_note(services: Services, lang: str | None = None) -> str:
    lang = lang or page_language()
    current = services.models.current
    if current is None:
        return tr("sampling.playground_no_model", lang)
    if not current.backend.capabilities.sampler_views:
        return tr("sampling.playground_none", lang, loader=current.loader)
    return tr("sampling.playground_model", lang, model=current.name, loader=current.loader)


def build_sampling_tab(services: Services) -> dict[str, Any]:
    """Lay out the tab; call the returned ``wire(param_components, notebook_text, tab)`` once the
    Parameters and Notebook tabs exist."""
    note = gr.Markdown(playground_note(services), elem_id="sampling-note")
    gr.Markdown(t("sampling.playground_md"))
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(
                lines=5, max_lines=12, label=t("sampling.prompt"), elem_id="sampling-prompt",
                placeholder=t("sampling.prompt_placeholder"),
            )  # fmt: skip
            prompt_note = save_note_box("sampling-prompt-save-note")
            with gr.Row():
                use_notebook = gr.Button(t("sampling.use_notebook"), elem_id="sampling-use-notebook")
                compute = gr.Button(t("sampling.compute"), variant="primary", elem_id="sampling-compute")
            passes = gr.Markdown("", elem_id="sampling-passes")
            sliders: list[Any] = [
                field_component(SamplingParams, name, None, i18n_prefix="param", elem_prefix="sampling-")
                for name in PLAYGROUND_FIELDS
            ]
            gr.Markdown(t("sampling.sliders_md"))
        with gr.Column(scale=3):
            bars = gr.HTML("", css_template=PLAYGROUND_CSS, js_on_load=None, elem_id="sampling-bars")
    playground = gr.State(None)

    gr.Markdown(t("sampling.ppl_md"))
    ppl_text = gr.Textbox(lines=8, max_lines=20, label=t("sampling.ppl_text"), elem_id="sampling-ppl-text")
    ppl_note = save_note_box("sampling-ppl-save-note")
    with gr.Row():
        upload = gr.UploadButton(
            t("sampling.ppl_upload"), file_types=[".txt"], type="filepath", elem_id="sampling-ppl-upload"
        )
        evaluate = gr.Button(t("sampling.ppl_evaluate"), variant="primary", elem_id="sampling-ppl-evaluate")
    ppl_result = gr.Markdown("", elem_id="sampling-ppl-result")
    ppl_view = gr.HTML("", css_template=PERPLEXITY_CSS, js_on_load=None, elem_id="sampling-ppl-view")

    def params_for(slider_values: Sequence[Any], param_values: Sequence[Any]) -> SamplingParams:
        params = params_from_values(param_values)
        update = {}
        for name, value in zip(PLAYGROUND_FIELDS, slider_values, strict=True):
            annotation = SamplingParams.model_fields[name].annotation
            update[name] = int(value) if annotation is int else float(value)
        return SamplingParams.model_validate({**params.model_dump(), **update})

    def shown(state: Playground, params: SamplingParams, lang: str) -> tuple[str, str]:
        result = state.apply(params, services.generator)
        assert state.next is not None
        return playground_html(result, lang), tr(
            "sampling.passes", lang, n=state.forward_passes, model=state.next.model
        )

    n_sliders = len(PLAYGROUND_FIELDS)

    @ui_errors
    def on_compute(state: Playground | None, text: str, *values: Any) -> tuple[Any, str, str]:
        lang = page_language()
        state = state if isinstance(state, Playground) else Playground()
        params = params_for(values[:n_sliders], values[n_sliders:])
        try:
            if services.models.current is None:
                raise NoModelLoadedError()
            state.compute(services.generator, text or "")
        except WebUIError as exc:
            # Said in place of the last bars (left standing under a pop-up, they would read as this prompt's).
            return Playground(), "", error_line(exc, lang)
        return (state, *shown(state, params, lang))

    @ui_errors
    def on_slide(state: Playground | None, *values: Any) -> tuple[Any, Any]:
        if not isinstance(state, Playground) or state.next is None:
            return gr.skip(), gr.skip()  # nothing computed yet: the sliders only set the values
        return shown(state, params_for(values[:n_sliders], values[n_sliders:]), page_language())

    @ui_errors
    def on_upload(path: str | None) -> Any:
        if not path:
            return gr.skip()
        text = read_text_file(path, page_language())
        save_or_warn(lambda: services.save_box("perplexity-text", text))
        return text

    @ui_errors
    def on_evaluate(text: str) -> tuple[str, str]:
        lang = page_language()
        try:
            if services.models.current is None:
                raise NoModelLoadedError()
            result = evaluate_perplexity(services.generator, text or "")
        except WebUIError as exc:
            # Said in place of the last result (left standing under a pop-up, it would read as this text's).
            return error_line(exc, lang), ""
        return perplexity_summary(result, lang), perplexity_html(result, lang)

    upload.upload(on_upload, upload, ppl_text, show_progress="hidden")

    # What is typed into the two boxes is kept as the Notebook's text is (a reload or a restart puts it back).
    boxes = {"sampling-prompt": (prompt, prompt_note), "perplexity-text": (ppl_text, ppl_note)}
    for box, (component, failed) in boxes.items():

        def on_edit(text: str, box: str = box) -> Any:
            return save_note(lambda: services.save_box(box, text))

        for edited in (component.input, component.blur):
            edited(on_edit, component, failed, queue=False, show_progress="hidden", trigger_mode="always_last")
    evaluate.click(on_evaluate, ppl_text, [ppl_result, ppl_view], concurrency_limit=None, show_progress="minimal")

    def wire(param_components: list[Any], notebook_text: Any, tab: Any) -> None:
        values = [*sliders, *param_components]
        compute.click(
            on_compute, [playground, prompt, *values], [playground, bars, passes], concurrency_limit=None,
            show_progress="minimal",
        )  # fmt: skip
        for slider in sliders:
            slider.change(
                on_slide, [playground, *values], [bars, passes], concurrency_limit=None, show_progress="hidden",
                trigger_mode="always_last",
            )  # fmt: skip

        def on_use_notebook(text: str) -> tuple[str, Any]:
            return text, save_note(lambda: services.save_box("sampling-prompt", text))

        use_notebook.click(on_use_notebook, notebook_text, [prompt, prompt_note], queue=False)
        picked = [param_components[ORDER.index(name)] for name in PLAYGROUND_FIELDS]
        # The sliders start from the Parameters tab's values each time the tab opens.
        tab.select(lambda *v: [*v, playground_note(services)], picked, [*sliders, note], queue=False)

    return {
        "note": note,
        "wire": wire,
        "note_text": lambda: playground_note(services),
        "page_load": lambda: [services.load_box(box) for box in boxes],
        "page_load_outputs": [component for component, _ in boxes.values()],
    }
