"""The text of a request does not depend on what the model read before it, on gemma-3-270m.

On gemma-3's weights llama.cpp's CPU kernels compute a token's keys and values slightly differently in
batches of different widths (on SmolLM2's they do not), so reading a prompt after a cached prefix of any
length changed the greedy text. The slots read prompts in chunks that start at multiples of the chunk size
and keep only the whole chunks of a cached prefix, and the weights are not repacked. Both tests failed
before those changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from webui.generation.scheduler import Generator
from webui.loaders.llama_slots import DEFAULT_CHUNK
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

pytestmark = pytest.mark.integration

EDIT = "Rewrite this paragraph: " + " ".join(
    ["The river flows past the old mill, where the miller grinds wheat every morning."] * 30
)


def greedy(max_tokens: int, **more) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, do_sample=False, ban_eos_token=True, **more)


@pytest.fixture(scope="module")
def manager(gemma_path: Path):
    models = ModelManager(gemma_path.parent, LoadOptions(n_ctx=1024, parallel=2))
    models.load(gemma_path.name)
    yield models
    models.unload()


@pytest.fixture(scope="module")
def gen(manager) -> Generator:
    return Generator(manager)


def fresh(manager: ModelManager, gen: Generator, prompt: str, params: SamplingParams) -> str:
    """The text of ``prompt`` read from empty slots."""
    engine = manager.current.backend.engine
    for slot in engine.slots:
        engine._drop(slot, 0)
    return gen.submit(prompt, params).result()


def test_a_short_prompt_gets_its_fresh_text_after_another_prompt_shared_its_start(manager, gen):
    alone = fresh(manager, gen, "Name a large animal.", greedy(16))
    gen.submit("Name a fruit that is yellow.", greedy(16)).result()  # leaves "<bos>Name a" in the cache
    assert gen.submit("Name a large animal.", greedy(16)).result() == alone
    assert gen.submit("Name a large animal.", greedy(16)).result() == alone  # and again, all of it cached


def test_a_long_prompt_that_extends_a_cached_one_gets_its_fresh_text(manager, gen):
    engine = manager.current.backend.engine
    gen.submit(EDIT, greedy(24)).result()
    before = engine.counters["reused"]
    longer = EDIT + " Keep it short."
    text = gen.submit(longer, greedy(24)).result()
    assert engine.counters["reused"] - before >= DEFAULT_CHUNK  # the cache was used, in whole chunks
    assert text == fresh(manager, gen, longer, greedy(24))
