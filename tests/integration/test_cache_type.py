"""The KV cache type (``cache_type``) on real llama.cpp with gemma-3-270m, past 512 tokens of context.

With an fp16 cache, llama.cpp's CPU flash attention reads a one-token decode of a lone sequence in chunks
of the cache (one per thread) and adds them up in another order than a decode of several tokens or
sequences: an 820-token prompt got another greedy reply beside a second request than alone, and prompt
lookup changed gemma's text. With a bf16 or q8_0 cache every decode takes the one path: the text is the
same alone, beside a neighbour, and with prompt lookup."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testdata import PROJECT_DIR
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

LONG = (PROJECT_DIR / "docs" / "performance.md").read_text()[:2600] + "\n\nIn short, this page"
PARAGRAPH = (
    "The old mill stood at the bend of the river, where the water slowed and widened into a shallow pool. "
    "For more than a century the miller's family ground wheat and barley there, and farmers from three "
    "valleys brought their harvest on carts pulled by patient horses. In spring the river rose and the great "
    "wheel turned so fast that the whole building trembled; in late summer the water fell so low that the "
    "stones stopped for weeks, and the miller mended sacks, sharpened tools and repaired the roof. "
)
COPY = f"Original paragraph:\n{PARAGRAPH * 3}\n\nThe same paragraph, with 'river' replaced by 'stream':\n"


def greedy(max_tokens: int, **more) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, do_sample=False, ban_eos_token=True, **more)


@pytest.fixture(scope="module", params=["bf16", "q8_0"])
def gen(request, gemma_path: Path) -> Iterator[Generator]:
    models = ModelManager(gemma_path.parent, LoadOptions(n_ctx=2048, parallel=2, cache_type=request.param))
    models.load(gemma_path.name)
    assert models.current.options.cache_type == request.param
    yield Generator(models)
    models.unload()


def test_a_long_prompt_gets_the_same_text_beside_a_neighbour(gen):
    assert len(gen.models.current.backend.tokenize(LONG)) > 600
    alone = gen.submit(LONG, greedy(100)).result()
    jobs = [gen.submit(LONG, greedy(100)), gen.submit("Once upon a time", greedy(120))]
    assert jobs[0].result() == alone
    jobs[1].result()


def test_prompt_lookup_keeps_the_greedy_text_past_512_tokens(gen):
    engine = gen.models.current.backend.engine
    plain = gen.submit(COPY, greedy(200)).result()
    before = dict(engine.counters)
    looked = gen.submit(COPY, greedy(200, prompt_lookup=8)).result()
    assert looked == plain
    assert engine.counters["accepted"] > before["accepted"]  # drafts were checked and some kept
