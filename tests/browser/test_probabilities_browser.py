"""What the samplers do, as a student sees it on SmolLM2: the Notebook's token probabilities (hover a token,
see its candidates, click one and the text branches there), the sampler playground (one forward pass,
bars that follow the sliders) and the perplexity of a pasted text; both texts still there after a reload.

Screenshots of each go to test-artifacts/ (docs/sampling.md uses them).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browserkit import load_smollm, open_notebook, open_parameters, reload, set_number, wait_text
from testdata import PROJECT_DIR, SMOLLM

pytestmark = pytest.mark.browser

SHOTS = PROJECT_DIR / "test-artifacts"
PROMPT = "The capital of France is"


def visible_to_text(cell: str) -> str:
    """A table cell's token back to its text (the table shows spaces as ␣ and newlines as ↵)."""
    return cell.removeprefix("★ ").replace("␣", " ").replace("↵", "\n").replace("⇥", "\t")


def shot(page, name: str, selector: str | None = None) -> None:
    SHOTS.mkdir(exist_ok=True)
    target = page.locator(selector) if selector else page
    target.screenshot(path=str(SHOTS / f"{name}.png"))


def open_sampling(page) -> None:
    page.get_by_role("tab", name="Sampling").click()
    page.locator("#sampling-prompt textarea").wait_for()


def test_notebook_shows_each_tokens_candidates_and_branches_at_a_clicked_one(page, server):
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    open_parameters(page)
    set_number(page, "param-max_tokens", "12")
    page.locator("#param-do_sample input[type=checkbox]").uncheck()  # greedy: the same text every time
    open_notebook(page)
    expect(page.locator("#notebook-probs-note")).to_have_text("")  # llama.cpp sends them: nothing to warn of
    page.locator("#notebook-probs input[type=checkbox]").check()
    text = page.locator("#notebook-text textarea")
    text.fill(PROMPT)
    page.locator("#notebook-generate").click()
    wait_text(page, "#notebook-stats", "tokens/s", timeout=120_000)

    view = page.locator("#notebook-probs-view")
    tokens = view.locator(".pv-tok")
    expect(tokens.first).to_be_visible()
    generated = text.input_value()[len(PROMPT) :]
    assert "".join(tokens.all_inner_texts()) == generated  # one span per generated token, the text itself
    colours = [tokens.nth(i).get_attribute("style") or "" for i in range(tokens.count())]
    assert all("hsla(120" in c for c in colours)  # greedy: each token drawn with all of the pool

    # Hover the second token: its top 10 before the samplers, the one drawn, what greedy left.
    tokens.nth(1).hover()
    detail = view.locator(".pv-detail")
    rows = detail.locator("tr.pv-cand")
    expect(rows).to_have_count(10)
    expect(detail).to_contain_text("Before (model, temperature 1)")
    expect(detail).to_contain_text("Entropy")
    drawn = detail.locator("tr.pv-drawn")
    expect(drawn).to_have_count(1)
    assert visible_to_text(drawn.locator("td").first.inner_text()) == tokens.nth(1).inner_text()
    assert "100%" in drawn.inner_text()
    expect(detail.locator("tr.pv-removed").first).to_contain_text("removed by greedy")
    assert "…" not in detail.inner_text()  # every candidate's text was looked up
    shot(page, "sampling-notebook", "#notebook-probs-view")

    # Click the token to keep its table, then a candidate that was not drawn: the text branches there.
    tokens.nth(1).click()
    expect(tokens.nth(1)).to_have_class(re.compile("pv-pinned"))
    tokens.nth(4).hover()  # a pinned table stays while the mouse moves on
    expect(detail.locator(".pv-head")).to_contain_text("Token 2:")
    candidate = detail.locator("tr.pv-cand:not(.pv-drawn)").first
    chosen = visible_to_text(candidate.locator("td").first.inner_text())
    branch = PROMPT + tokens.nth(0).inner_text() + chosen
    candidate.click()
    page.wait_for_function(
        "(p) => { const v = document.querySelector('#notebook-text textarea').value; return v.startsWith(p) && v.length > p.length; }",
        arg=branch,
        timeout=120_000,
    )
    wait_text(page, "#notebook-stats", "tokens/s", timeout=120_000)
    # The view is the continued generation's: its tokens follow the branch.
    page.wait_for_function(
        "(n) => document.querySelector('#notebook-text textarea').value.length === n + "
        "[...document.querySelectorAll('#notebook-probs-view .pv-tok')].map((s) => s.innerText).join('').length",
        arg=len(branch),
    )


def test_sampled_tokens_show_what_each_sampler_removed(page, server):
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    open_parameters(page)
    page.locator("#param-do_sample input[type=checkbox]").check()
    for name, value in (("max_tokens", "24"), ("temperature", "1"), ("top_k", "40"), ("top_p", "0.9"), ("seed", "7")):
        set_number(page, f"param-{name}", value)
    open_notebook(page)
    page.locator("#notebook-probs input[type=checkbox]").check()
    page.locator("#notebook-text textarea").fill("Once upon a time, in a small village,")
    page.locator("#notebook-generate").click()
    wait_text(page, "#notebook-stats", "tokens/s", timeout=120_000)
    view = page.locator("#notebook-probs-view")
    tokens = view.locator(".pv-tok")
    expect(tokens.first).to_be_visible()
    colours = [tokens.nth(i).get_attribute("style") or "" for i in range(tokens.count())]
    assert any("hsla(120," not in c for c in colours)  # sampled: not every token was a sure one
    # The least sure token: its table names the samplers that cut candidates, and its draw is not 100%.
    # The least sure tokens: their tables show the draw (not 100%), and the samplers that cut candidates.
    hue = [int(re.search(r"hsla\((\d+),", c).group(1)) for c in colours]
    detail = view.locator(".pv-detail")
    cuts = []
    for index in sorted(range(len(hue)), key=hue.__getitem__)[:6]:
        tokens.nth(index).click()
        expect(detail.locator("tr.pv-drawn")).to_have_count(1)
        expect(detail).to_contain_text(tokens.nth(index).inner_text().strip() or "Token")
        assert "100%" not in detail.locator("tr.pv-drawn td").nth(2).inner_text()
        cuts += re.findall(r"removed by (top_p|top_k|min_p)", detail.inner_text())
    assert cuts  # some candidate shown was cut by a sampler
    shot(page, "sampling-notebook-sampled", "#notebook-probs-view")


def test_playground_bars_follow_the_sliders_with_one_forward_pass(page, server):
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    open_parameters(page)
    page.locator("#param-do_sample input[type=checkbox]").check()  # sampling, or the sliders would not matter
    set_number(page, "param-temperature", "0.7")
    open_sampling(page)
    expect(page.locator("#sampling-temperature input[type=number]")).to_have_value("0.7")  # from Parameters
    expect(page.locator("#sampling-note")).to_contain_text(SMOLLM)
    page.locator("#sampling-prompt textarea").fill(PROMPT)
    page.locator("#sampling-compute").click()
    passes = page.locator("#sampling-passes")
    expect(passes).to_contain_text("Forward passes: 1", timeout=60_000)
    bars = page.locator("#sampling-bars")
    expect(bars.locator(".sp-row:not(.sp-headrow)").first).to_be_visible()
    expect(bars).to_contain_text("bits before")
    first = bars.inner_text()
    shot(page, "sampling-playground-before")

    # the new bars have arrived when the entropy after the samplers changes (a progress label alone is not
    # it); read the old value before moving the slider, or a quick answer is taken for the old one
    after_js = "() => (document.querySelector('#sampling-bars').innerText.match(/([\\d.]+) bits after/) || [])[1]"
    shown = page.evaluate(after_js)
    assert shown, first
    set_number(page, "sampling-temperature", "1.8")
    page.wait_for_function(f"(t) => ({after_js})() !== t", arg=shown, timeout=30_000)
    hotter = bars.inner_text()
    entropy = lambda t: float(re.search(r"([\d.]+) bits after", t).group(1))  # noqa: E731
    assert entropy(hotter) > entropy(first)  # a higher temperature flattens what is left

    set_number(page, "sampling-top_p", "1")  # top_p and min_p off: top_k alone decides the pool
    set_number(page, "sampling-min_p", "0")
    set_number(page, "sampling-top_k", "3")
    page.wait_for_function("() => document.querySelector('#sampling-bars').innerText.includes('removed by top_k')")
    expect(bars).to_contain_text("3 token(s) left in the pool")
    expect(passes).to_contain_text("Forward passes: 1")  # the sliders never ran the model again
    shot(page, "sampling-playground")
    # a computation that fails says why in place of the last bars, which must not stand as this prompt's
    page.locator("#sampling-prompt textarea").fill("")
    page.locator("#sampling-compute").click()
    expect(passes).to_contain_text("empty", timeout=60_000)
    expect(bars.locator(".sp-row")).to_have_count(0)
    page.locator("#sampling-prompt textarea").fill(PROMPT)  # (as the next steps expect it)

    # "Use the Notebook text" brings the Notebook's text over.
    page.locator("#sampling-use-notebook").click()
    open_notebook(page)
    notebook = page.locator("#notebook-text textarea").input_value()
    open_sampling(page)
    expect(page.locator("#sampling-prompt textarea")).to_have_value(notebook)


def test_perplexity_of_a_pasted_text(page, server):
    if server.health()["model"] != SMOLLM:
        load_smollm(page)
    open_sampling(page)
    page.locator("#sampling-ppl-text textarea").fill(
        "The capital of France is Paris. It is known for the Eiffel Tower & <good> food."
    )
    page.locator("#sampling-ppl-evaluate").click()
    result = page.locator("#sampling-ppl-result")
    expect(result).to_contain_text("Perplexity:", timeout=60_000)
    value = float(re.search(r"Perplexity: ([\d.]+)", result.inner_text()).group(1))
    assert 1.0 < value < 1000.0
    view = page.locator("#sampling-ppl-view")
    tokens = view.locator(".pp-tok")
    assert tokens.count() > 10
    assert "".join(tokens.all_inner_texts()).endswith("& <good> food.")  # shown as text, not markup
    assert re.search(r"probability [\d.<]+%, surprise [\d.]+ bits", tokens.nth(3).get_attribute("title") or "")
    shot(page, "sampling-perplexity", "#sampling-ppl-view")
    # an evaluation that fails says why in place of the last result, which must not stand as this text's
    page.locator("#sampling-ppl-text textarea").fill("")
    page.locator("#sampling-ppl-evaluate").click()
    expect(result).to_contain_text("empty", timeout=60_000)
    assert "Perplexity:" not in result.inner_text() and view.locator(".pp-tok").count() == 0


def test_the_texts_typed_into_the_sampling_tab_come_back_after_a_reload(page, server):
    """Like the Notebook's text: a pasted page of text for the perplexity is not lost to a reload (or a restart)."""
    open_sampling(page)
    page.locator("#sampling-prompt textarea").fill("The capital of Italy is")
    pasted = "First paragraph of my essay.\n\nSecond paragraph, with ünïcödé and 東京."
    box = page.locator("#sampling-ppl-text textarea")
    box.fill("")  # (the text an earlier test evaluated is back in it)
    box.click()
    page.keyboard.insert_text(pasted)  # as a paste arrives
    box.blur()
    saved = server.user_dir / "logs" / "boxes" / "perplexity-text.txt"
    reload(page)
    open_sampling(page)
    expect(page.locator("#sampling-prompt textarea")).to_have_value("The capital of Italy is")
    expect(page.locator("#sampling-ppl-text textarea")).to_have_value(pasted)
    assert saved.read_text(encoding="utf-8") == pasted
