"""What the samplers do, on the page: the Notebook's token view (escaping, colours, the data a click on a
candidate branches with), the playground (one forward pass, then only the sampler math) and perplexity,
on a scripted backend whose views come from the real sampler math (``webui.sampling``).

The real model runs in tests/browser/test_probabilities_browser.py.
"""

from __future__ import annotations

import html
import json
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import gradio as gr
import numpy as np
import pytest

from fakes import FakeBackend
from webui.generation.scheduler import Generator
from webui.loaders import LoaderRegistry
from webui.loaders.base import Capabilities, Chunk, StopStringFilter, StreamExtras, TokenLogprob, TokenView, TopLogprob
from webui.loaders.logprobs import LogprobMaker
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams
from webui.probabilities import (
    PerplexityResult,
    Playground,
    ViewedGeneration,
    evaluate_perplexity,
    generate_with_views,
    playground_logits,
)
from webui.sampling.chain import Candidate, SamplerView, sample_view
from webui.services import Services
from webui.settings import Settings
from webui.ui import build_ui
from webui.ui.parameters_tab import values_of
from webui.ui.probabilities_ui import (
    EMPTY_VIEW,
    VIEW_JS,
    NotebookProbabilities,
    candidate_rows,
    cell_text,
    notebook_view,
    percent,
    printable,
    prob_colour,
    surprise_colour,
    token_spans_html,
)
from webui.ui.sampling_tab import (
    perplexity_html,
    perplexity_summary,
    playground_html,
    playground_note,
)

#: The scripted model's vocabulary: texts that need escaping, spaces, a control character, a newline.
VOCAB = ["<b>&", "\x1b[31m", " the", " cat", "\n", " sat", '"q"', " on", " mat", "."] + [f" w{i}" for i in range(30)]


def _row(step: int) -> np.ndarray:
    """Logits of position ``step``: a clear favourite (step-dependent), a few close rivals, a long tail."""
    rng = np.random.default_rng(step)
    row = rng.normal(0.0, 1.0, len(VOCAB)).astype(np.float32)
    row[(step + 2) % len(VOCAB)] += 6.0
    row[(step + 3) % len(VOCAB)] += 4.5
    row[0] += 3.0  # "<b>&" is always a candidate
    return row


class ViewsBackend(FakeBackend):
    """A scripted local model: greedy over ``_row``; it fills sampler views and echo logprobs as the
    real loaders do (views from ``sample_view``, one per token through the stop filter)."""

    name: ClassVar[str] = "views-fake"
    capabilities: ClassVar[Capabilities] = Capabilities(logprobs=True, sampler_views=True)
    forward_passes: ClassVar[int] = 0
    text_lookups: ClassVar[list[threading.Thread]] = []

    @classmethod
    def load(cls, path: Path, options: LoadOptions) -> ViewsBackend:
        return cls(path, options.n_ctx or 64)

    def tokenize(self, text: str) -> list[int]:
        return [VOCAB.index(w) if w in VOCAB else 9 for w in re.findall(r" ?\w+|\S|\n", text)]

    def token_text(self, token: int) -> str:
        ViewsBackend.text_lookups.append(threading.current_thread())
        return VOCAB[token]

    def next_token_logits(self, prompt: str) -> np.ndarray:
        ViewsBackend.forward_passes += 1
        return _row(len(self.tokenize(prompt)))

    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        extras = extras or StreamExtras()
        self.calls.append((prompt, params))
        ids = self.tokenize(prompt)
        out = StopStringFilter(params.stop, views=extras.sampler_views is not None)
        echo = None
        if extras.echo_logprobs:
            maker = LogprobMaker(0, lambda t: VOCAB[t].encode())
            echo = [maker.first_prompt_entry(ids[0])] + maker.entries(
                np.stack([_row(i) for i in range(1, len(ids))]), ids[1:]
            )
        generated: list[int] = []
        for step in range(params.max_tokens):
            row = _row(len(ids) + step)
            token = int(np.argmax(row))
            views = ()
            if extras.sampler_views is not None:
                views = (
                    TokenView(VOCAB[token], token, sample_view(row, params, generated, n_top=extras.sampler_views)),
                )
            generated.append(token)
            chunk = out.feed(VOCAB[token], 1, views=views)
            if chunk is not None:
                if echo is not None:
                    chunk.prompt_logprobs, echo = echo, None
                yield chunk
        last = out.finish("length", len(ids))
        last.prompt_logprobs = echo
        yield last


class NoViewsBackend(FakeBackend):
    name: ClassVar[str] = "plain-fake"


@pytest.fixture
def generator(tmp_path) -> Iterator[Generator]:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    models = ModelManager(tmp_path, LoadOptions(n_ctx=512), loaders=LoaderRegistry([ViewsBackend, NoViewsBackend]))
    models.load("m.gguf", "views-fake")
    ViewsBackend.forward_passes = 0
    ViewsBackend.text_lookups = []
    yield Generator(models)
    models.unload()


def view(before: list[tuple[int, float, str | None]], after: list[tuple[int, float]], **kw: Any) -> SamplerView:
    return SamplerView(
        tuple(Candidate(i, p, r) for i, p, r in before),
        tuple(Candidate(i, p) for i, p in after),
        kw.get("entropy_before", 2.5),
        kw.get("entropy_after", 1.0),
        kw.get("pool", len(after)),
        kw.get("penalised", ()),
        kw.get("notes", ()),
    )


# ----- text, colours ------------------------------------------------------------------------------------
def test_tokens_are_shown_printable_with_their_spaces_visible_in_tables():
    assert printable("a\x1b[0m\x00b\n\t") == "a\\x1b[0m\\x00b\n\t"
    assert cell_text(" the\n") == "␣the↵"
    assert cell_text("\t\x07") == "⇥\\x07"
    assert cell_text("") == "∅" and cell_text(None) == "…"
    assert [percent(p) for p in (1.0, 0.5, 0.0004, 0.0, None)] == ["100%", "50.0%", "<0.1%", "0.0%", ""]


def test_colours_run_from_red_for_unlikely_to_green_for_sure():
    hue = lambda colour: int(re.match(r"hsla\((\d+),", colour).group(1))  # noqa: E731
    assert hue(prob_colour(0.0)) == 0 and hue(prob_colour(1.0)) == 120 and hue(prob_colour(0.5)) == 60
    assert hue(prob_colour(7.0)) == 120 and hue(prob_colour(-1.0)) == 0  # clamped
    assert hue(surprise_colour(0.0)) == 120 and hue(surprise_colour(100.0)) == 0
    assert hue(surprise_colour(1.0)) > hue(surprise_colour(6.0))


def test_token_spans_escape_model_text_and_carry_the_drawn_probability():
    tokens = [
        TokenView("<script>&", 0, view([(0, 0.6, None), (3, 0.3, None)], [(0, 0.9), (3, 0.1)])),
        TokenView('"\x1b', 1, view([(3, 0.7, None), (1, 0.05, None)], [(3, 0.6), (1, 0.02)])),
        TokenView("x", 2, None),
    ]
    spans = token_spans_html(tokens)
    assert "<script>" not in spans and "&lt;script&gt;&amp;" in spans
    assert "\x1b" not in spans and "\\x1b" in spans
    assert spans.count('class="pv-tok"') == 3
    colours = re.findall(r'data-i="(\d)"(?: style="background-color:hsla\((\d+),)?', spans)
    assert colours == [("0", str(round(120 * 0.9))), ("1", str(round(120 * 0.02))), ("2", "")]
    assert 'title="90.0% · (60.0%)"' in spans  # after the chain, and the model's own in brackets


def test_candidate_rows_list_before_then_after_only_then_the_drawn_token():
    v = view(
        [(5, 0.5, None), (6, 0.3, "top_k"), (7, 0.1, "min_p")],
        [(5, 0.7), (8, 0.3)],
        penalised=(8,),
    )
    rows = candidate_rows(TokenView("z", 9, v), {5: "<a>", 6: " b", 8: "c"})
    assert [r["id"] for r in rows] == [5, 6, 7, 8, 9]
    assert rows[0] == {
        "id": 5,
        "text": "<a>",  # plain data: the browser sets it as text, never as HTML
        "before": 0.5,
        "after": 0.7,
        "removed": None,
        "drawn": False,
        "penalised": False,
    }
    assert rows[1]["removed"] == "top_k" and rows[1]["after"] is None and rows[1]["text"] == "␣b"
    assert rows[2]["text"] == "…"  # its text not looked up yet
    assert rows[3]["before"] is None and rows[3]["penalised"]  # a penalty brought it into the top
    assert rows[4]["drawn"] and rows[4]["before"] is None  # drawn from outside both lists
    assert [r["drawn"] for r in candidate_rows(TokenView("a", 5, v), {})] == [True, False, False, False]


def test_the_view_js_builds_tables_from_text_only():
    assert "innerHTML" not in VIEW_JS and "insertAdjacentHTML" not in VIEW_JS
    assert "textContent" in VIEW_JS and "trigger('branch'" in VIEW_JS
    assert "(props.value || {}).final" in VIEW_JS  # no branching while the text box is still being written


# ----- the Notebook: a generation with views ---------------------------------------------------------------
def test_a_generation_with_views_colours_every_token_and_branches_at_a_candidate(generator):
    params = SamplingParams(max_tokens=6, do_sample=False, repeat_penalty=1.0, dry_multiplier=0.0)
    viewed = generate_with_views(generator, "The cat", params, n=5)
    chunks = list(viewed)
    text = "".join(c.text for c in chunks)
    assert viewed.kind == "views" and len(viewed.tokens) == 6
    assert "".join(t.token for t in viewed.tokens) == text == viewed.text
    prepared = viewed.job.prepared
    assert prepared is not None and prepared.extras == StreamExtras(sampler_views=5)
    for token in viewed.tokens:  # greedy: the drawn token is the top candidate, with all of the pool
        assert token.view is not None and token.view.before[0].id == token.id
        assert token.view.after == (Candidate(token.id, 1.0),) and len(token.view.before) == 5

    assert ViewsBackend.text_lookups == []  # no lookups while it generated
    viewed.resolve_texts()
    assert set(ViewsBackend.text_lookups) == {generator._worker}  # then, on the generation thread
    assert viewed.candidate_ids() <= set(viewed.texts)

    value = notebook_view(viewed, "en")
    json.dumps(value)  # what the page gets is plain data
    assert value["html"].count('class="pv-tok"') == 6 and '<span class="pv-prompt">The cat</span>' in value["html"]
    assert "<b>" not in value["html"] and "\x1b" not in value["html"]
    table = value["tokens"][2]
    assert table["head"] == f"Token 3: {cell_text(viewed.tokens[2].token)}"
    assert "100%" in table["stats"] and "left in the pool" in table["stats"]
    assert {r["text"] for r in table["rows"]} >= {"<b>&"}  # escaped by the browser's textContent, not here
    assert value["labels"]["before"].startswith("Before")

    # A click on the 2nd candidate of token 3: the text up to token 3, that candidate, and on from there.
    candidate = table["rows"][1]["id"]
    branched = viewed.branch_text(2, candidate)
    assert branched == "The cat" + viewed.tokens[0].token + viewed.tokens[1].token + VOCAB[candidate]
    with pytest.raises(IndexError):
        viewed.branch_text(6, candidate)


def test_the_view_shows_what_top_k_and_temperature_did(generator):
    params = SamplingParams(max_tokens=3, top_k=3, top_p=1.0, min_p=0.0, temperature=0.5, seed=1)
    viewed = generate_with_views(generator, "The", params, n=8)
    list(viewed)
    viewed.resolve_texts()
    for token in viewed.tokens:
        v = token.view
        assert v is not None and len(v.after) <= 3 and v.pool == 3
        assert [c.removed_by for c in v.before[3:]] == ["top_k"] * 5
        assert v.entropy_after < v.entropy_before
    rows = notebook_view(viewed, "en")["tokens"][0]["rows"]
    assert [r["removed"] for r in rows[:4]] == [None, None, None, "top_k"]


def test_a_loader_without_views_still_generates_and_the_view_says_why(generator, tmp_path):
    generator.models.load("m.gguf", "plain-fake")
    viewed = generate_with_views(generator, "abc", SamplingParams(max_tokens=3), n=10)
    assert "".join(c.text for c in viewed) == "0 1 2 "
    assert viewed.kind == "none" and viewed.tokens == []
    assert viewed.job.prepared is not None and viewed.job.prepared.extras is None
    value = notebook_view(viewed, "en")
    assert value["tokens"] == [] and "does not send its probabilities" in value["legend"]


def test_a_servers_top_logprobs_make_before_only_views():
    viewed = ViewedGeneration(prompt="Hi", n=3, kind="before")
    entry = TokenLogprob(
        " there", math.log(0.6), top=(TopLogprob(" there", math.log(0.6)), TopLogprob("<x>", math.log(0.3)))
    )
    viewed.collect(Chunk(" there", logprobs=[entry]))
    (token,) = viewed.tokens
    assert token.view is not None and token.view.after == ()
    assert [round(c.prob, 6) for c in token.view.before] == [0.6, 0.3]
    value = notebook_view(viewed, "en")
    table = value["tokens"][0]
    assert [r["text"] for r in table["rows"]] == ["␣there", "<x>"] and table["rows"][0]["drawn"]
    assert table["only_before"] and "before the samplers" in table["stats"]
    assert viewed.branch_text(0, table["rows"][1]["id"]) == "Hi<x>"


# ----- the playground ------------------------------------------------------------------------------------
def test_the_playground_makes_one_forward_pass_and_then_only_the_math(generator):
    playground = Playground()
    found = playground.compute(generator, "The cat sat")
    assert ViewsBackend.forward_passes == 1 and playground.forward_passes == 1
    assert found.history == tuple(ViewsBackend(Path("x"), 8).tokenize("The cat sat")) and found.model == "m.gguf"
    shown = []
    for temperature in (0.3, 0.7, 1.5):
        result = playground.apply(SamplingParams(temperature=temperature, top_k=0, top_p=1.0, min_p=0.0), generator)
        shown.append(result.view.entropy_after)
        page = playground_html(result, "en")
        assert "&lt;b&gt;&amp;" in page and "<b>&" not in page and "\x1b" not in page
    assert shown == sorted(shown)  # hotter: flatter
    assert ViewsBackend.forward_passes == 1 and playground.forward_passes == 1

    few = playground.apply(SamplingParams(top_k=2, top_p=1.0, min_p=0.0), generator)
    page = playground_html(few, "en")
    assert page.count("removed by top_k") == 8 and "2 token(s) left in the pool" in page
    assert len(re.findall(r'class="sp-after" style="width:(?!0\.0%)', page)) == 2


def test_playground_logits_are_the_backends_row(generator):
    found = playground_logits(generator, "The cat")
    np.testing.assert_array_equal(found.logits, _row(2))
    assert found.texts[int(np.argmax(_row(2)))] == VOCAB[int(np.argmax(_row(2)))]


# ----- perplexity ----------------------------------------------------------------------------------------
def test_perplexity_is_exp_of_the_mean_nll_and_each_token_has_its_surprise(generator):
    text = "The cat sat on the mat."
    result = evaluate_perplexity(generator, text)
    ids = ViewsBackend(Path("x"), 8).tokenize(text)
    nll = []
    for i in range(1, len(ids)):
        row = _row(i).astype(np.float64)
        nll.append(np.log(np.exp(row - row.max()).sum()) + row.max() - row[ids[i]])
    assert result.perplexity == pytest.approx(math.exp(float(np.mean(nll))), rel=1e-5)
    assert result.tokens[0] == (VOCAB[ids[0]], None)
    assert result.scored == len(ids) - 1 and result.model == "m.gguf"

    page = perplexity_html(result, "en")
    assert page.count('class="pp-tok"') == len(ids)
    assert len(re.findall(r"data-bits=", page)) == len(ids) - 1
    assert "surprise" in page and "probability" in page
    assert "Perplexity:" in perplexity_summary(result, "en")


def test_the_perplexity_view_escapes_and_titles_each_token():
    result = PerplexityResult([("<i>", None), (' "&', math.log(0.25)), ("\x00", math.log(1e-6))], 42.0, "m")
    page = perplexity_html(result, "en")
    assert "<i>" not in page and "&lt;i&gt;" in page and "\x00" not in page
    titles = [html.unescape(t) for t in re.findall(r'title="([^"]*)"', page)]
    assert titles[1] == '␣"&: probability 25.0%, surprise 2.0 bits'
    assert "19.9 bits" in titles[2]
    assert "**Perplexity: 42.00** over 2 tokens" in perplexity_summary(result, "en")


# ----- the page: the handlers the tabs wired, on the built UI ---------------------------------------------
@pytest.fixture
def app(tmp_path) -> Iterator[tuple[Services, Any]]:
    user_dir = tmp_path / "user"
    (user_dir / "models").mkdir(parents=True)
    (user_dir / "models" / "m.gguf").write_bytes(b"GGUF")
    settings = Settings(user_data_dir=user_dir)
    services = Services.build(
        settings, user_dir / "settings.yaml", loaders=LoaderRegistry([ViewsBackend, NoViewsBackend])
    )
    services.load_model("m.gguf", "views-fake")
    ViewsBackend.forward_passes = 0
    yield services, build_ui(services)
    services.close()


def handler(demo: Any, qualname_end: str) -> Any:
    found = [f.fn for f in demo.fns.values() if getattr(f.fn, "__qualname__", "").endswith(qualname_end)]
    assert found, qualname_end
    return found[0]


def test_generate_with_probabilities_then_branch_from_a_candidate(app):
    services, demo = app
    run = handler(demo, "build_notebook_tab.<locals>.run")
    params = SamplingParams(max_tokens=5, do_sample=False, dry_multiplier=0.0)
    request = SimpleNamespace(session_hash="s1", headers={})
    steps = list(run(request, "The cat", True, *values_of(params)))
    assert steps[0][3] == EMPTY_VIEW and steps[0][4] is None  # the last view goes at once
    text, stats, before, value, viewed = steps[-1]
    assert "tokens/s" in stats and before == "The cat"
    assert isinstance(viewed, ViewedGeneration) and text == "The cat" + viewed.text
    assert len(value["tokens"]) == 5 and value["html"].count('class="pv-tok"') == 5
    assert all("…" not in r["text"] for t in value["tokens"] for r in t["rows"])  # every text looked up
    assert value["final"] and not notebook_view(viewed, "en", final=False)["final"]  # a click branches now only

    candidate = value["tokens"][1]["rows"][3]
    branched = NotebookProbabilities.branch_text(viewed, gr.EventData(None, {"token": 1, "id": candidate["id"]}))
    assert branched == "The cat" + viewed.tokens[0].token + VOCAB[candidate["id"]]
    with pytest.raises(gr.Error, match="generate again"):
        NotebookProbabilities.branch_text(None, gr.EventData(None, {"token": 1, "id": 2}))

    # Without the box: no views asked for, the view left as it is after the first step.
    steps = list(run(request, "The cat", False, *values_of(params)))
    assert steps[0][3] == EMPTY_VIEW and all(isinstance(s[3], type(gr.skip())) for s in steps[1:])
    assert services.models.current.backend.calls[-1][0] == "The cat"


def test_the_playground_handlers_move_sliders_without_a_forward_pass(app):
    services, demo = app
    compute = handler(demo, "build_sampling_tab.<locals>.on_compute")
    slide = handler(demo, "build_sampling_tab.<locals>.on_slide")
    params = values_of(SamplingParams())
    sliders = [0.7, 0.9, 40, 0.05, 1.1]
    state, bars, passes = compute(None, "The cat sat", *sliders, *params)
    assert passes.startswith("Forward passes: 1") and "sp-row" in bars
    shown = {bars}
    for temperature in (0.2, 1.0, 2.0):
        bars, passes = slide(state, temperature, 1.0, 0, 0.0, 1.0, *params)
        shown.add(bars)
        assert passes.startswith("Forward passes: 1")
    assert len(shown) == 4 and ViewsBackend.forward_passes == 1
    assert slide(None, *sliders, *params) == (gr.skip(), gr.skip())  # nothing computed yet


def test_a_model_without_probabilities_says_so_in_the_notebook_and_the_playground(app):
    services, demo = app
    probs = NotebookProbabilities(services)
    assert probs.note_text("en") == "" and playground_note(services, "en").startswith("Model: m.gguf")
    services.load_model("m.gguf", "plain-fake")
    assert "does not send its probabilities" in probs.note_text("en")
    assert "does not send its logits" in playground_note(services, "en")
    # said in place of the bars (and in a pop-up): the last bars must not stand as this prompt's
    with pytest.warns(UserWarning, match="does not give its logits"):
        _, bars, passes = handler(demo, "build_sampling_tab.<locals>.on_compute")(
            None, "abc", 0.7, 0.9, 40, 0.05, 1.1, *values_of(SamplingParams())
        )
    assert bars == "" and "does not give its logits" in passes
    services.models.unload()
    assert probs.note_text("en") == "" and "No model is loaded" in playground_note(services, "en")
