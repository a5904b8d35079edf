"""What the page does on every streamed update stays small, whatever the number of tabs and panels.

Gradio 6.31's page, on each update of a streaming event, visits every component any event registered
as a "progress target" (all outputs, unless ``show_progress_on`` names fewer): a search of the whole
component tree and a copy of its value each, and of everything inside a layout block. And an event on
the chat box's ``.change`` runs Gradio's whole dispatch on every token. With ~220 targets and the stats
line on ``.change`` a chat streamed at 8 tokens/s in headless Chromium on 2 cores where the API gave 90
(bench/results/ui-regression-2026-12-03.json); bench/ui.py measures it.
"""

from __future__ import annotations

import gradio as gr
import pytest
from gradio.blocks import BlockContext
from gradio.components import Component

from webui.services import Services
from webui.settings import Settings
from webui.ui import build_ui
from webui.ui.chat_tab import LAST_STATS_JS

#: At most this many components show progress in the whole page (there were ~220).
MAX_TARGETS = 20


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    demo = build_ui(Services.build(Settings(user_data_dir=tmp_path_factory.mktemp("user"))))
    return demo, demo.config["dependencies"]


def by_elem_id(demo, elem_id):
    return next(i for i, b in demo.blocks.items() if getattr(b, "elem_id", None) == elem_id)


def test_few_progress_targets_and_none_the_page_cannot_show(config):
    demo, deps = config
    # every event says where its progress shows (None would mean "all outputs" to the page)
    assert all(dep["show_progress_on"] is not None for dep in deps)
    targets = {t for dep in deps for t in dep["show_progress_on"]}
    assert 0 < len(targets) <= MAX_TARGETS, len(targets)
    for t in targets:
        block = demo.blocks[t]
        assert not isinstance(block, (gr.State, gr.Timer)), block
        assert isinstance(block, Component) or not isinstance(block, BlockContext), block  # no Tab, Row...
    for dep in deps:
        if dep["show_progress"] == "hidden" or not dep["queue"]:
            assert dep["show_progress_on"] == [], dep["id"]


def test_long_work_still_shows_its_progress(config):
    demo, deps = config
    status, downloads = by_elem_id(demo, "model-status"), by_elem_id(demo, "download-status")
    shown = {t for dep in deps for t in dep["show_progress_on"]}
    assert {status, downloads} <= shown  # a model load's progress bar, a download's


def test_stats_line_follows_every_chat_write_not_each_token(config):
    demo, deps = config
    box, stats = by_elem_id(demo, "chat-box"), by_elem_id(demo, "chat-reply-stats")
    assert not [d for d in deps if [box, "change"] in [list(t) for t in d["targets"]]], "a .change on the chat box"
    followers = {d["trigger_after"] for d in deps if d["outputs"] == [stats] and d["js"] == LAST_STATS_JS}
    writers = [d["id"] for d in deps if box in d["outputs"] and d["js"] != LAST_STATS_JS]
    assert len(writers) >= 10  # Send, Regenerate..., opening, renaming, importing a chat...
    assert set(writers) <= followers, set(writers) - followers


def test_a_new_turn_blanks_the_stats_line_at_once(config):
    """While a reply streams the line shows nothing, not the previous reply's figures (it is filled in when
    the turn ends)."""
    demo, deps = config
    stats, send = by_elem_id(demo, "chat-reply-stats"), by_elem_id(demo, "chat-send")
    blanks = [d for d in deps if d["outputs"] == [stats] and d["js"] == "() => ''"]
    assert [send, "click"] in [list(t) for d in blanks for t in d["targets"]]
