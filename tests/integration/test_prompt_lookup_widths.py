"""Prompt lookup on gemma-3-270m copying a paragraph: most of the text comes from drafts, and it stays the text
written without them.

How many drafts a step holds follows what decodes of each width cost, measured as they run
(``DecodeCosts``). The first decode of a width takes 2.5-3 x its later time (llama.cpp sizes its buffers
for it): when that measure counted, the few drafts of a free story made a width of 4 look 7.7 x as dear as one
token; it was never tried again, and this paragraph, asked next, went with 15 drafts kept in 199 decodes
instead of about 170 in 40."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

PARAGRAPH = (
    "The old mill stood at the bend of the river, where the water slowed and widened into a shallow pool. "
    "For more than a century the miller's family ground wheat and barley there, and farmers from three "
    "valleys brought their harvest on carts pulled by patient horses. In spring the river rose and the great "
    "wheel turned so fast that the whole building trembled; in late summer the water fell so low that the "
    "stones stopped for weeks, and the miller mended sacks, sharpened tools and repaired the roof. Children "
    "from the village came to watch the wheel and to fish for trout below the weir, and the miller's wife "
    "sold bread, honey and apples from a table by the door. When the railway reached the valley, larger "
    "mills in the towns began to grind grain more cheaply, and one by one the farmers stopped coming. The "
    "last miller closed the doors in the winter of a hard year, but he kept the wheel in good order until he "
    "died. Today the mill is a small museum, and on the first Sunday of every month volunteers open the "
    "sluice so that visitors can hear the stones turn once again."
)
#: gemma-3-270m is a base model: shown how the answer begins, it copies the paragraph (to the blank line).
EDIT = (
    f"Original paragraph:\n{PARAGRAPH}\n\nThe same paragraph, with the word 'river' replaced by 'stream':\n"
    "The old mill stood at the bend of the stream,"
)


STORY = "Here is a long story about a lighthouse keeper and her clever cat.\n\n"


def greedy(**more) -> SamplingParams:
    return SamplingParams(max_tokens=300, do_sample=False, stop=["\n\n"], **more)


@pytest.fixture(scope="module")
def gen(gemma_path: Path) -> Iterator[Generator]:
    models = ModelManager(gemma_path.parent, LoadOptions(n_ctx=2048, parallel=1))
    models.load(gemma_path.name)  # a fresh engine: no width measured yet
    yield Generator(models)
    models.unload()


def test_a_copied_paragraph_is_mostly_drafted_in_wide_decodes(gen):
    engine = gen.models.current.backend.engine
    # a free story first: its few drafts are the first decodes of their widths (the slow ones)
    gen.submit(STORY, SamplingParams(max_tokens=128, do_sample=False, ban_eos_token=True, prompt_lookup=8)).result()
    before = dict(engine.counters)
    looked = gen.submit(EDIT, greedy(prompt_lookup=8)).result()
    decodes = engine.counters["decodes"] - before["decodes"]
    accepted = engine.counters["accepted"] - before["accepted"]
    assert len(looked) > 300, looked  # the model copied the paragraph
    # every decode gave 1 token plus the drafts kept: on average 2 or more drafts kept per decode (4.4 with width 6
    # on an AVX-512 CPU, 2.75 there when width 6 was never tried, 0.08 when a width's first decode counted)
    assert accepted >= 2 * decodes, engine.counters
    assert gen.submit(EDIT, greedy()).result() == looked
