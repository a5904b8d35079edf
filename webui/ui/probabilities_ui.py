"""What the samplers do, on the page: the Notebook's token probabilities and the Sampling tab.

* Notebook (:class:`NotebookProbabilities`): with "Show probabilities" on, each generated token is a
  span coloured by the probability it was drawn with (after the sampler chain); hovering a token shows
  its candidates before the samplers (the model at temperature 1) and after them (what the chain left,
  and the stage that removed the others), clicking pins it, and clicking a candidate branches: the text
  up to that token plus the candidate, and the generation goes on from there.
* The Sampling tab (playground and perplexity) is ``webui/ui/sampling_tab.py``; it shares the text helpers here.

The HTML is made and escaped here (token texts are model output: ``<``, ``&``, control characters).
The candidate tables are built in the browser from plain data with ``textContent`` (``VIEW_JS``),
never from HTML strings.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.loaders.base import TokenView
from webui.probabilities import (
    ViewedGeneration,
    current_view_kind,
)
from webui.services import Services
from webui.ui.common import error_toast, ui_errors
from webui.ui.i18n import page_language, t, tr

if TYPE_CHECKING:
    pass

#: The sliders of the playground (the Parameters tab's other values apply as they are set there).
PLAYGROUND_FIELDS: tuple[str, ...] = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty")
#: Surprise (bits) at which a token is coloured fully red in the perplexity view.
SURPRISE_RED = 12.0
#: Characters of the prompt shown (greyed) before the generated tokens in the Notebook's view.
PROMPT_TAIL = 80
#: Seconds between updates of the Notebook's view while it generates (it holds every token's table).
VIEW_INTERVAL = 0.5

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# ----- text and colour ---------------------------------------------------------------------------------
def printable(text: str) -> str:
    """``text`` with control characters (other than newline and tab) written as ``\\xNN``: a token may
    be a lone escape or NUL byte, which would otherwise be invisible or break the page."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def cell_text(text: str | None) -> str:
    """A token as a table cell shows it: spaces, newlines and tabs made visible (``␣``, ``↵``, ``⇥``)."""
    if text is None:
        return "…"  # not looked up yet (while generating)
    if not text:
        return "∅"
    return printable(text).replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def percent(p: float | None) -> str:
    if p is None:
        return ""
    if p >= 0.9995:
        return "100%"
    if 0 < p < 0.001:
        return "<0.1%"
    return f"{100 * p:.1f}%"


def prob_colour(p: float) -> str:
    """The background of a token drawn with probability ``p``: red (unlikely) through yellow to green
    (sure). Translucent, so the text reads in the light and the dark theme."""
    hue = round(120 * min(1.0, max(0.0, p)))
    return f"hsla({hue}, 85%, 50%, 0.35)"


def surprise_colour(bits: float) -> str:
    """The background of a token of this surprise: green (expected) to red (``SURPRISE_RED`` bits+)."""
    return prob_colour(1.0 - min(max(bits, 0.0), SURPRISE_RED) / SURPRISE_RED)


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


# ----- the Notebook's view -----------------------------------------------------------------------------
def drawn_probability(token: TokenView) -> tuple[float | None, float | None]:
    """(after the chain, before it) probability of the drawn token; None where the view does not say."""
    view = token.view
    if view is None:
        return None, None
    after = next((c.prob for c in view.after if c.id == token.id), None)
    before = next((c.prob for c in view.before if c.id == token.id), None)
    return after, before


def candidate_rows(token: TokenView, texts: Mapping[int, str]) -> list[dict[str, Any]]:
    """One row per candidate of ``token``'s view: the 'before' ones best first, then those only the
    'after' list has (a penalty reordered them), then the drawn token if neither list holds it."""
    view = token.view
    if view is None:
        return []
    after = {c.id: c.prob for c in view.after}
    penalised = set(view.penalised)
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()

    def add(cid: int, before: float | None, removed: str | None) -> None:
        seen.add(cid)
        rows.append(
            {
                "id": cid,
                "text": cell_text(texts.get(cid)),
                "before": None if before is None else round(before, 5),
                "after": None if cid not in after else round(after[cid], 5),
                "removed": removed,
                "drawn": cid == token.id,
                "penalised": cid in penalised,
            }
        )

    for c in view.before:
        add(c.id, c.prob, c.removed_by)
    for c in view.after:
        if c.id not in seen:
            add(c.id, None, None)
    if token.id not in seen:
        add(token.id, None, None)
    return rows


def token_payload(index: int, token: TokenView, texts: Mapping[int, str], lang: str) -> dict[str, Any]:
    """What the browser needs to show ``token``'s table (plain data: the page sets it as text)."""
    view = token.view
    after, before = drawn_probability(token)
    head = tr("sampling.token_head", lang, n=index + 1, text=cell_text(token.token))
    if view is None:
        return {"head": head, "rows": [], "stats": tr("sampling.no_view", lang), "notes": [], "only_before": True}
    only_before = not view.after
    if only_before:
        stats = tr("sampling.drawn_before", lang, before=percent(before) or "?")
    else:
        stats = tr(
            "sampling.drawn_stats",
            lang,
            after=percent(after) or "?",
            before=percent(before) or "?",
            h_before=f"{view.entropy_before:.2f}",
            h_after=f"{view.entropy_after:.2f}",
            pool=view.pool,
        )
    return {
        "head": head,
        "rows": candidate_rows(token, texts),
        "stats": stats,
        "notes": list(view.notes),
        "only_before": only_before,
    }


def token_spans_html(tokens: Sequence[TokenView]) -> str:
    """The generated tokens as spans coloured by their drawn probability (after the chain; a server's
    'before' probability when that is all there is), each with a hover title."""
    spans = []
    for i, token in enumerate(tokens):
        after, before = drawn_probability(token)
        p = after if after is not None else before
        style = f' style="background-color:{prob_colour(p)}"' if p is not None else ""
        title = " · ".join(x for x in (percent(after), f"({percent(before)})" if before is not None else "") if x)
        spans.append(
            f'<span class="pv-tok" data-i="{i}"{style} title="{_attr(title)}">{html.escape(printable(token.token))}</span>'
        )
    return "".join(spans)


def view_labels(lang: str) -> dict[str, str]:
    """The table's headings and words, in the page's language."""
    keys = ("token", "before", "after", "kept", "removed_by", "penalised", "branch_hint", "hint")
    return {k: tr(f"sampling.view_{k}", lang) for k in keys}


EMPTY_VIEW: dict[str, Any] = {"legend": "", "html": "", "tokens": [], "labels": {}, "final": False}


def notebook_view(viewed: ViewedGeneration | None, lang: str, final: bool = True) -> dict[str, Any]:
    """The value of the Notebook's view: the legend, the coloured tokens and each token's table data.

    ``final``: the generation has ended and every candidate's text is known; only then does a click on
    a candidate branch (while it generates, the text box is still being written).
    """
    if viewed is None:
        return EMPTY_VIEW
    if viewed.kind == "none":
        return {**EMPTY_VIEW, "legend": html.escape(tr("sampling.note_none", lang))}
    legend = tr("sampling.legend_before" if viewed.kind == "before" else "sampling.legend", lang)
    tail = viewed.prompt[-PROMPT_TAIL:]
    prompt = f'<span class="pv-prompt">{"…" if len(viewed.prompt) > PROMPT_TAIL else ""}{html.escape(printable(tail))}</span>'
    return {
        "legend": html.escape(legend),
        "html": prompt + token_spans_html(viewed.tokens),
        "tokens": [token_payload(i, tok, viewed.texts, lang) for i, tok in enumerate(viewed.tokens)],
        "labels": view_labels(lang),
        "final": final,
    }


VIEW_TEMPLATE = (
    '<div class="pv-legend">${(value && value.legend) || ""}</div>'
    '<div class="pv-text">${(value && value.html) || ""}</div>'
    '<div class="pv-detail" aria-live="polite"></div>'
)

VIEW_CSS = """
.pv-legend { font-size: var(--text-sm); color: var(--body-text-color-subdued); margin: 4px 0; }
.pv-legend:empty, .pv-text:empty { display: none; }
.pv-text { white-space: pre-wrap; word-break: break-word; line-height: 1.8; padding: 8px 10px;
  border: 1px solid var(--border-color-primary); border-radius: var(--radius-md); max-height: 360px; overflow-y: auto; }
.pv-prompt { color: var(--body-text-color-subdued); }
.pv-tok { cursor: pointer; border-radius: 3px; }
.pv-tok:hover { outline: 1px solid var(--body-text-color-subdued); }
.pv-tok.pv-pinned { outline: 2px solid var(--color-accent); }
.pv-detail:empty { display: none; }
.pv-detail { margin-top: 8px; font-size: var(--text-sm); }
.pv-head { font-weight: 600; margin-bottom: 2px; }
.pv-table { border-collapse: collapse; margin: 4px 0; }
.pv-table th, .pv-table td { padding: 2px 10px; text-align: left; border-bottom: 1px solid var(--border-color-primary); }
.pv-table td.pv-p { text-align: right; font-variant-numeric: tabular-nums; }
.pv-table td.pv-t { font-family: var(--font-mono); white-space: pre; }
.pv-cand { cursor: pointer; }
.pv-cand.pv-wait { cursor: default; }
.pv-cand:hover { background: var(--background-fill-secondary); }
.pv-drawn { font-weight: 700; }
.pv-removed td { color: var(--body-text-color-subdued); }
.pv-note, .pv-hint { color: var(--body-text-color-subdued); }
"""

#: Hover shows a token's table (unless one is pinned), a click pins it, a click on a candidate branches.
VIEW_JS = """
let pinned = -1;
const el = (tag, cls, text) => {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined && text !== null) n.textContent = String(text);
  return n;
};
const fmt = (p) => (p === null || p === undefined) ? '' : p >= 0.9995 ? '100%' : (p > 0 && p < 0.001) ? '<0.1%' : (100 * p).toFixed(1) + '%';
const show = (i) => {
  const box = element.querySelector('.pv-detail');
  if (!box) return;
  const v = props.value || {};
  const tok = (v.tokens || [])[i];
  const L = v.labels || {};
  if (!tok) { box.replaceChildren(); return; }
  const table = el('table', 'pv-table');
  const head = el('tr');
  head.append(el('th', '', L.token), el('th', '', L.before), el('th', '', tok.only_before ? '' : L.after));
  table.append(head);
  for (const r of tok.rows) {
    const row = el('tr', 'pv-cand' + (r.drawn ? ' pv-drawn' : '') + (r.removed ? ' pv-removed' : ''));
    row.dataset.token = String(i);
    row.dataset.id = String(r.id);
    if (v.final) row.title = L.branch_hint || '';
    else row.classList.add('pv-wait');
    let after = r.removed ? (L.removed_by || '') + ' ' + r.removed : (r.after === null ? (tok.only_before ? '' : L.kept) : fmt(r.after));
    if (r.penalised) after += ' ↓ ' + (L.penalised || '');
    row.append(el('td', 'pv-t', (r.drawn ? '★ ' : '') + r.text), el('td', 'pv-p', fmt(r.before)), el('td', 'pv-p', after));
    table.append(row);
  }
  const parts = [el('div', 'pv-head', tok.head), el('div', 'pv-stats', tok.stats), table];
  for (const note of tok.notes || []) parts.push(el('div', 'pv-note', note));
  if (tok.rows.length && v.final) parts.push(el('div', 'pv-hint', L.hint));
  box.replaceChildren(...parts);
};
const mark = () => {
  element.querySelectorAll('.pv-pinned').forEach((n) => n.classList.remove('pv-pinned'));
  const s = pinned >= 0 ? element.querySelector('.pv-tok[data-i="' + pinned + '"]') : null;
  if (s) s.classList.add('pv-pinned');
  return s;
};
element.addEventListener('mouseover', (e) => {
  const s = e.target.closest && e.target.closest('.pv-tok');
  if (s && pinned < 0) show(+s.dataset.i);
});
element.addEventListener('click', (e) => {
  const c = e.target.closest && e.target.closest('.pv-cand');
  // Branching waits for the end of the generation (the text box is still being written until then).
  if (c && (props.value || {}).final) {
    trigger('branch', { token: +c.dataset.token, id: +c.dataset.id });
    return;
  }
  const s = e.target.closest && e.target.closest('.pv-tok');
  if (!s) return;
  const i = +s.dataset.i;
  pinned = pinned === i ? -1 : i;
  mark();
  show(i);
});
watch('value', () => {
  // The template was drawn again: the pinned token's table goes on showing (with its texts looked up).
  if (pinned >= 0 && mark()) show(pinned);
  else { pinned = -1; show(-1); }
});
"""


class ViewFrames:
    """Paces the Notebook's view while it generates: it carries every token's table, so it is sent
    every ``VIEW_INTERVAL`` seconds rather than with every frame of the text."""

    def __init__(self, viewed: ViewedGeneration | None, lang: str) -> None:
        self.viewed = viewed
        self.lang = lang
        self._last = -math.inf

    def first(self) -> tuple[Any, Any]:
        """(view, kept state): clears the last generation's view."""
        return EMPTY_VIEW, None

    def step(self, now: float) -> tuple[Any, Any]:
        if self.viewed is None or now - self._last < VIEW_INTERVAL:
            return gr.skip(), gr.skip()
        self._last = now
        return notebook_view(self.viewed, self.lang, final=False), gr.skip()

    def last(self) -> tuple[Any, Any]:
        """The whole view, every candidate's text looked up; the generation kept for branching."""
        if self.viewed is None:
            return gr.skip(), gr.skip()
        self.viewed.resolve_texts()
        return notebook_view(self.viewed, self.lang), self.viewed


class NotebookProbabilities:
    """The Notebook's "Show probabilities" box, its note and the view under the text (:meth:`build`
    inside the Notebook's column; the Notebook's Generate reads :attr:`show` and fills
    :attr:`outputs` through :class:`ViewFrames`)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def build(self) -> None:
        with gr.Row(equal_height=True):
            self.show = gr.Checkbox(
                False, label=t("sampling.show"), elem_id="notebook-probs", scale=0, min_width=220, container=False
            )
            self.note = gr.Markdown("", elem_id="notebook-probs-note")
        self.view = gr.HTML(
            EMPTY_VIEW,
            html_template=VIEW_TEMPLATE,
            css_template=VIEW_CSS,
            js_on_load=VIEW_JS,
            elem_id="notebook-probs-view",
            padding=False,
        )
        #: The last generation with views (a ``ViewedGeneration``): what a click on a candidate branches.
        self.state = gr.State(None)

    @property
    def outputs(self) -> list[Any]:
        return [self.view, self.state]

    def note_text(self, lang: str | None = None) -> str:
        """What the box can show with the loaded model: a remote server says it sends no probabilities."""
        lang = lang or page_language()
        kind = current_view_kind(self.services.models)
        if kind == "none":
            return tr("sampling.note_none", lang)
        if kind == "before":
            return tr("sampling.note_before", lang)
        return ""

    @staticmethod
    @ui_errors
    def branch_text(viewed: ViewedGeneration | None, evt: gr.EventData) -> str:
        """The text up to the clicked candidate's token, with the candidate in its place."""
        data = getattr(evt, "_data", None) or {}
        if viewed is None or not isinstance(data, dict):
            raise error_toast(tr("sampling.branch_gone", page_language()))
        try:
            return viewed.branch_text(int(data["token"]), int(data["id"]))
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise error_toast(tr("sampling.branch_gone", page_language())) from exc


# ----- the playground ----------------------------------------------------------------------------------
