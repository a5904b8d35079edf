"""Parallel decoding slots on the llama.cpp loader (SmolLM2 and gemma-3-270m, real llama.cpp), through the
real generation queue: each request gets exactly the text it gets alone, whatever runs beside it; requests
join and leave between steps; a cancelled one frees its slot and its generated KV at once; the cache of a
slot is reused by the next request with the same prefix; prompt lookup keeps the greedy text; a model
switch queued in the middle runs after the requests sent before it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness import wait_until
from webui.errors import PromptTooLongError
from webui.generation.scheduler import Generator
from webui.loaders.llama_slots import DEFAULT_CHUNK
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

PROMPTS = (
    "Once upon a time",
    "The capital of France is",
    "def fibonacci(n):",
    "List three colors:",
    "Write a haiku about the sea.",
    "The three laws of robotics are",
)


def greedy(max_tokens: int, **more) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, do_sample=False, ban_eos_token=True, **more)


@pytest.fixture(scope="module")
def manager(smollm_path: Path, gemma_path: Path):
    assert smollm_path.parent == gemma_path.parent
    models = ModelManager(smollm_path.parent, LoadOptions(n_ctx=512, parallel=4))
    models.load(smollm_path.name)
    yield models
    models.unload()


@pytest.fixture(scope="module")
def gen(manager) -> Generator:
    return Generator(manager)


@pytest.fixture(scope="module")
def alone(gen):
    """The text of each (prompt, max_tokens) generated with nothing beside it, remembered."""
    seen: dict[tuple[str, int, str], str] = {}

    def text(prompt: str, max_tokens: int, **more) -> str:
        key = (prompt, max_tokens, repr(sorted(more.items())))
        if key not in seen:
            seen[key] = gen.submit(prompt, greedy(max_tokens, **more)).result()
        return seen[key]

    return text


def test_the_model_has_four_slots_in_one_context(manager):
    backend = manager.current.backend
    assert backend.capabilities.parallel_sequences == 4
    assert backend.n_ctx == 512  # each slot has the whole context it was asked for
    assert backend.parallel() is not None and backend.parallel().free() == 4


@pytest.mark.parametrize(
    "lengths",
    [(40, 40, 40, 40), (8, 64, 24, 48, 16, 32), (64, 4)],
    ids=["four-equal", "six-mixed-more-than-slots", "long-and-short"],
)
def test_each_request_gets_the_text_it_gets_alone(gen, alone, lengths):
    expected = [alone(PROMPTS[i], n) for i, n in enumerate(lengths)]
    jobs = [gen.submit(PROMPTS[i], greedy(n)) for i, n in enumerate(lengths)]
    assert [job.result() for job in jobs] == expected
    assert [job.stats.completion_tokens for job in jobs] == list(lengths)
    assert all(job.stats.finish_reason == "length" for job in jobs)


def test_requests_run_together_and_a_late_one_joins_while_others_run(gen, alone):
    expected = [alone(p, 96) for p in PROMPTS[:3]]
    first = [gen.submit(p, greedy(96)) for p in PROMPTS[:2]]
    wait_until(lambda: len(gen.running()) == 2, "both running", timeout=60)
    wait_until(lambda: len(first[0].text) > 0, "the first text", timeout=60)
    late = gen.submit(PROMPTS[2], greedy(96))
    wait_until(lambda: len(gen.running()) == 3 or late.finished, "the late one joining", timeout=60)
    assert not first[0].finished or late.finished  # it joined before the others had ended
    assert [job.result() for job in (*first, late)] == expected


def test_a_cancelled_request_frees_its_slot_and_the_others_are_untouched(gen, manager, alone):
    engine = manager.current.backend.engine
    expected = [alone(p, 48) for p in PROMPTS[:3]]
    cancel = threading.Event()
    jobs = [gen.submit(p, greedy(48)) for p in PROMPTS[:3]]
    victim = gen.submit(PROMPTS[3], greedy(200), cancel)
    wait_until(lambda: len(victim.text) > 10, "some text of the victim", timeout=60)
    cancel.set()
    victim.result()
    assert victim.stats.finish_reason == "cancelled"
    assert [job.result() for job in jobs] == expected
    wait_until(lambda: engine.free() == 4, "every slot free")
    # what it generated is gone from its sequence: only its prompt is kept, for reuse
    tokens = manager.current.backend.tokenize(PROMPTS[3])
    held = [slot.cached for slot in engine.slots if slot.cached[: len(tokens) - 1] == tokens[:-1]]
    assert held and all(len(cached) <= len(tokens) for cached in held), (held, tokens)


def test_a_prompt_too_long_fails_alone(gen, alone):
    expected = alone(PROMPTS[0], 32)
    good = gen.submit(PROMPTS[0], greedy(32))
    bad = gen.submit("word " * 700, greedy(8))
    with pytest.raises(PromptTooLongError):
        bad.result()
    assert good.result() == expected


def test_the_next_turn_reuses_the_whole_chunks_of_the_slot_that_holds_its_prefix(gen, manager):
    engine = manager.current.backend.engine
    history = "A long conversation about the weather in spring. " * 40
    shared = len(manager.current.backend.tokenize(history))
    assert shared > DEFAULT_CHUNK
    gen.submit(history + "First question?", greedy(8)).result()
    before = dict(engine.counters)
    second = history + "Second question, a bit longer?"
    text = gen.submit(second, greedy(8)).result()
    reused = engine.counters["reused"] - before["reused"]
    evaluated = engine.counters["evaluated"] - before["evaluated"]
    # the shared history's whole chunks came from the slot's cache; at most one chunk was read again
    assert reused == shared - shared % DEFAULT_CHUNK
    assert evaluated < DEFAULT_CHUNK + 20
    for slot in engine.slots:
        engine._drop(slot, 0)
    assert gen.submit(second, greedy(8)).result() == text  # the same text as read from nothing


def test_the_same_prompt_again_reuses_all_of_it_and_gives_the_same_text(gen, manager):
    engine = manager.current.backend.engine
    prompt = "Tell me about the weather in spring."
    first = gen.submit(prompt, greedy(8)).result()
    before = dict(engine.counters)
    assert gen.submit(prompt, greedy(8)).result() == first
    assert engine.counters["evaluated"] == before["evaluated"]  # nothing read again (a Regenerate)


def test_sampled_requests_with_a_seed_repeat_beside_others(gen):
    params = SamplingParams(max_tokens=32, temperature=1.0, seed=1234, ban_eos_token=True)
    alone_text = gen.submit(PROMPTS[4], params).result()
    others = [gen.submit(p, greedy(40)) for p in PROMPTS[:3]]
    together = gen.submit(PROMPTS[4], params)
    assert together.result() == alone_text
    for job in others:
        job.result()


def test_prompt_lookup_keeps_the_greedy_text_in_fewer_decodes(gen, manager):
    engine = manager.current.backend.engine
    paragraph = (
        "The old lighthouse stood on the northern cliff for two hundred years. Every night its keeper climbed "
        "the spiral stairs, trimmed the wick and watched the ships pass safely along the rocky coast."
    )
    prompt = "<|im_start|>user\nRepeat this paragraph exactly:\n" + paragraph + "<|im_end|>\n<|im_start|>assistant\n"
    plain = gen.submit(prompt, greedy(60)).result()
    before = dict(engine.counters)
    looked = gen.submit(prompt, greedy(60, prompt_lookup=8)).result()
    assert looked == plain
    accepted = engine.counters["accepted"] - before["accepted"]
    decodes = engine.counters["decodes"] - before["decodes"]
    assert accepted > 10, engine.counters  # the copy was drafted from the prompt and kept
    assert decodes < 60 - 10
    # beside other requests it is the same text too
    others = [gen.submit(p, greedy(40)) for p in PROMPTS[:2]]
    again = gen.submit(prompt, greedy(60, prompt_lookup=8))
    assert again.result() == plain
    for job in others:
        job.result()


def test_a_model_switch_queued_in_the_middle_runs_after_the_requests_before_it(gen, manager, smollm_path, gemma_path):
    smol = [gen.submit(p, greedy(24)) for p in PROMPTS[:3]]
    switch = threading.Thread(target=lambda: gen.call(lambda: manager.load(gemma_path.name)))
    wait_until(lambda: len(gen.running()) >= 1, "a running request", timeout=60)
    switch.start()
    wait_until(lambda: gen.waiting() >= 1 or not switch.is_alive(), "the switch queued", timeout=60)
    gemma = [gen.submit(p, greedy(24)) for p in PROMPTS[:3]]
    smol_texts = [job.result() for job in smol]
    gemma_texts = [job.result() for job in gemma]
    switch.join()
    assert {job.stats.model for job in smol} == {smollm_path.name}
    assert {job.stats.model for job in gemma} == {gemma_path.name}
    # each is the text its model writes alone
    assert gemma_texts == [gen.submit(p, greedy(24)).result() for p in PROMPTS[:3]]
    gen.call(lambda: manager.load(smollm_path.name))
    assert smol_texts == [gen.submit(p, greedy(24)).result() for p in PROMPTS[:3]]


def test_prompt_lookup_mostly_rests_on_a_text_that_does_not_copy_itself(gen, manager):
    """Each draft token costs nearly a token's work: on a free story, whose drafts are mostly wrong, prompt
    lookup drafts less and less (as many as were right last time; none for a while after wrong ones)."""
    engine = manager.current.backend.engine
    prompt = "<|im_start|>user\nTell me a long story about a lighthouse keeper and her clever cat.<|im_end|>\n"
    prompt += "<|im_start|>assistant\n"
    plain = gen.submit(prompt, greedy(128)).result()
    before = dict(engine.counters)
    looked = gen.submit(prompt, greedy(128, prompt_lookup=8)).result()
    assert looked == plain
    drafted = engine.counters["drafted"] - before["drafted"]
    accepted = engine.counters["accepted"] - before["accepted"]
    # (drafting up to 8 at every 2- or 3-token match, as before, tried 22 tokens here and kept 6; now 7 and 3)
    assert 0 < drafted <= 14, engine.counters
    assert accepted <= drafted


def test_requests_sent_together_join_one_per_step(gen, manager, alone, monkeypatch):
    """Each step reads one prompt chunk, so starting every waiting request before the next step (tokenizing,
    fitting, a sampler chain each) only delayed the first one's first token: they join one per step."""
    engine = manager.current.backend.engine
    calls: list[str] = []
    start, step = engine.start, engine.step

    def recording_start(*args, **kwargs):
        calls.append("start")
        return start(*args, **kwargs)

    def recording_step():
        calls.append("step")
        step()

    expected = [alone(p, 24) for p in PROMPTS[1:4]]
    monkeypatch.setattr(engine, "start", recording_start)
    monkeypatch.setattr(engine, "step", recording_step)
    running = gen.submit(PROMPTS[0], greedy(64))
    wait_until(lambda: len(running.text) > 0, "the first request's text", timeout=60)
    together = [gen.submit(p, greedy(24)) for p in PROMPTS[1:4]]  # queued within one step
    assert [job.result() for job in together] == expected
    running.result()
    starts = [i for i, call in enumerate(calls) if call == "start"]
    assert len(starts) == 4
    assert all(b - a >= 2 for a, b in zip(starts, starts[1:], strict=False)), calls[: starts[-1] + 2]
