"""The draft-model option on real llama.cpp: SmolLM2 as Q8_0 drafted for by its Q4_1 file (the same
tokenizer; ``tests/draft_models.py``), through the real generation queue. The text is the main model's
(greedy and seeded), drafts are used and some are refused, and a draft of another family, a wrong name
or a broken file is refused with a message while the loaded model stays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from draft_models import SMOLLM_Q8, ensure_smollm_q8
from testdata import GEMMA, SMOLLM
from webui.errors import ModelLoadError
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

PROMPTS = (
    "<|im_start|>user\nWrite a short story about a cat who learns to fly.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nRewrite with correct grammar: the cat go to the market and buyed three fishes."
    "<|im_end|>\n<|im_start|>assistant\n",
    "The three primary colours are",
)


def greedy(max_tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, do_sample=False, ban_eos_token=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, smollm_path: Path, gemma_path: Path) -> Path:
    """A models folder with SmolLM2 as Q8_0 and as Q4_1, and gemma-3 (another tokenizer)."""
    d = tmp_path_factory.mktemp("draft-models")
    (d / SMOLLM_Q8).symlink_to(ensure_smollm_q8())
    (d / SMOLLM).symlink_to(smollm_path)
    (d / GEMMA).symlink_to(gemma_path)
    (d / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    return d


@pytest.fixture(scope="module")
def manager(folder: Path) -> Iterator[ModelManager]:
    models = ModelManager(folder, LoadOptions(n_ctx=1024, parallel=2))
    yield models
    models.unload()


@pytest.fixture(scope="module")
def gen(manager) -> Generator:
    return Generator(manager)


@pytest.fixture(scope="module")
def without_draft(manager, gen) -> dict[str, list[str]]:
    """The main model's own texts: each prompt alone, then two at once, and a seeded sampled one."""
    manager.load(SMOLLM_Q8)
    assert "draft_model" not in manager.current.backend.metadata
    return run_all(gen)


def run_all(gen: Generator) -> dict[str, list[str]]:
    alone = [gen.submit(p, greedy(64)).result() for p in PROMPTS]
    jobs = [gen.submit(p, greedy(48)) for p in PROMPTS[:2]]
    seeded = gen.submit(PROMPTS[0], SamplingParams(max_tokens=48, temperature=1.0, seed=77, ban_eos_token=True))
    return {"alone": alone, "together": [j.result() for j in jobs], "seeded": [seeded.result()]}


def test_the_text_stays_the_main_models_and_drafts_are_used(manager, gen, without_draft):
    loaded = manager.load(SMOLLM_Q8, options={"draft_model": SMOLLM, "draft_max": 4})
    backend = loaded.backend
    assert backend.metadata["draft_model"] == SMOLLM
    assert loaded.options.draft_model == SMOLLM  # saved as named, not as the resolved path
    engine = backend._engine
    before = dict(engine.counters)
    with_draft = run_all(gen)
    assert with_draft == without_draft
    drafted = engine.counters["drafted"] - before["drafted"]
    accepted = engine.counters["accepted"] - before["accepted"]
    # the two quantizations mostly agree, not always: drafts are kept, and some are refused
    assert 0 < accepted < drafted
    # fewer decodes of the main model than tokens it wrote
    written = 3 * 64 + 2 * 48 + 48
    assert engine.counters["decodes"] - before["decodes"] < written


def test_prompt_lookup_takes_over_for_a_request_that_asks_for_it(manager, gen):
    loaded = manager.load(SMOLLM_Q8, options={"draft_model": SMOLLM})
    engine = loaded.backend._engine
    text = "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. The cat"
    plain = gen.submit(text, greedy(24)).result()
    calls = []
    real = engine.draft.propose
    engine.draft.propose = lambda *a: calls.append(a) or real(*a)
    try:
        assert gen.submit(text, greedy(24).model_copy(update={"prompt_lookup": 4})).result() == plain
    finally:
        engine.draft.propose = real
    assert calls == []  # the draft model was not asked


@pytest.mark.parametrize(
    ("draft", "key", "words"),
    [
        (GEMMA, "error.draft_vocabulary", "same family"),
        ("../" + SMOLLM, "error.draft_name", "file name"),
        ("nothing-here.gguf", "error.draft_missing", "not in the model's folder"),
        (SMOLLM_Q8, "error.draft_itself", "the model itself"),
        ("broken.gguf", "error.draft_failed", "could not load the draft model"),
    ],
)
def test_a_wrong_draft_is_explained_and_the_loaded_model_stays(manager, gen, draft, key, words):
    manager.load(SMOLLM)
    expected = gen.submit(PROMPTS[2], greedy(8)).result()
    with pytest.raises(ModelLoadError) as info:
        manager.load(SMOLLM_Q8, options={"draft_model": draft})
    assert info.value.key == key and words in str(info.value)
    assert manager.current is not None and manager.current.name == SMOLLM
    assert gen.submit(PROMPTS[2], greedy(8)).result() == expected


def test_past_512_tokens_the_text_stays_with_an_exact_cache_type(manager, gen):
    """Beyond 512 cached tokens an fp16 cache computes a lone one-token decode otherwise than a decode of
    several (see test_cache_type.py): with q8_0 the drafted text is still the model's own."""
    from testdata import PROJECT_DIR

    long_prompt = (PROJECT_DIR / "README.md").read_text()[:2400] + "\n\nIn short, this project"
    manager.load(SMOLLM_Q8, options={"cache_type": "q8_0"})
    assert len(manager.current.backend.tokenize(long_prompt)) > 550
    plain = gen.submit(long_prompt, greedy(120)).result()
    loaded = manager.load(SMOLLM_Q8, options={"cache_type": "q8_0", "draft_model": SMOLLM})
    before = dict(loaded.backend.engine.counters)
    assert gen.submit(long_prompt, greedy(120)).result() == plain
    assert loaded.backend.engine.counters["accepted"] > before["accepted"]
