"""Our llama.cpp chain on a short list of candidates (``ShortlistChain``) draws what it draws on the
whole row, and a DRY sampler cloned from the kept one acts as a new one; on the real gemma-3 weights
(a 262,144-token vocabulary) and SmolLM2's (49,152), decoding token by token as the loader does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webui.loaders.llama_sampling import (
    SHORTLIST_MIN_VOCAB,
    _free_samplers,
    build_sampler,
    eog_tokens,
    shortlist_size,
)
from webui.params import SamplingParams

pytestmark = pytest.mark.integration

N_CTX = 1024
#: Its continuation repeats itself, so the penalties and DRY lower some of the best tokens.
PROMPT = b"apple, banana, cherry, apple, banana, cherry, apple, banana, cherry, apple,"

SETTINGS = {
    "greedy, penalties, DRY, no end of text": SamplingParams(do_sample=False, ban_eos_token=True),
    "the default chain, seed 1": SamplingParams(seed=1),
    "hot, seed 7, no end of text": SamplingParams(seed=7, temperature=1.3, ban_eos_token=True),
    "top_k 5, frequency and presence over all": SamplingParams(
        seed=3, top_k=5, frequency_penalty=0.5, presence_penalty=0.3, repeat_last_n=-1
    ),
    "strong DRY": SamplingParams(seed=5, dry_multiplier=3.0, dry_allowed_length=1, repeat_penalty=1.0),
}


class Decoder:
    """One sequence decoded a token at a time on a llama.cpp context, sampled by a given chain."""

    def __init__(self, path: Path) -> None:
        import llama_cpp
        from llama_cpp import Llama

        self.lib = llama_cpp
        self.llm = Llama(str(path), n_ctx=N_CTX, n_threads=2, flash_attn=True, verbose=False)
        self.eog = eog_tokens(self.llm)
        self.batch = llama_cpp.llama_batch_init(256, 0, 1)
        self.prompt = self.llm.tokenize(PROMPT)

    def _decode(self, tokens: list[int], start: int) -> None:
        batch = self.batch
        batch.n_tokens = len(tokens)
        for j, token in enumerate(tokens):
            batch.token[j], batch.pos[j], batch.n_seq_id[j] = token, start + j, 1
            batch.seq_id[j][0] = 0
            batch.logits[j] = j == len(tokens) - 1
        assert self.lib.llama_decode(self.llm._ctx.ctx, batch) == 0

    def generate(self, chain: Any, n: int) -> list[int]:
        memory = self.lib.llama_get_memory(self.llm._ctx.ctx)
        self.lib.llama_memory_seq_rm(memory, 0, 0, -1)
        self._decode(self.prompt, 0)
        out: list[int] = []
        for _ in range(n):
            token = int(chain.sample(self.llm._ctx, -1))
            out.append(token)
            self._decode([token], len(self.prompt) + len(out) - 1)
        return out

    def chain(self, params: SamplingParams, *, whole_row: bool = False) -> Any:
        chain = build_sampler(self.llm, params, N_CTX, self.eog)
        if whole_row:
            chain.shortlist = 0
        return chain

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.llm.close()


@pytest.fixture(scope="module")
def gemma(gemma_path: Path) -> Iterator[Decoder]:
    decoder = Decoder(gemma_path)
    assert decoder.llm.n_vocab() >= SHORTLIST_MIN_VOCAB  # else these tests would not test the short list
    yield decoder
    decoder.close()


@pytest.fixture(scope="module", params=["gemma", "smollm"])
def decoder(request: pytest.FixtureRequest) -> Iterator[Decoder]:
    """Each model's decoder (gemma-3's is the module's one; SmolLM2's is made here)."""
    if request.param == "gemma":
        yield request.getfixturevalue("gemma")
        return
    made = Decoder(request.getfixturevalue("smollm_path"))
    assert made.llm.n_vocab() >= SHORTLIST_MIN_VOCAB
    yield made
    made.close()


@pytest.mark.parametrize("name", list(SETTINGS))
def test_the_short_list_draws_what_the_whole_row_draws(decoder: Decoder, name: str) -> None:
    params = SETTINGS[name]
    short = decoder.chain(params)
    assert short.shortlist > 0
    expected = decoder.generate(decoder.chain(params, whole_row=True), 48)
    assert decoder.generate(short, 48) == expected
    # (the settings are strong enough to matter: the penalties change what greedy alone would write)
    if name.startswith("greedy"):
        plain = params.model_copy(update={"repeat_penalty": 1.0, "dry_multiplier": 0.0})
        assert decoder.generate(decoder.chain(plain), 48) != expected


def test_a_cloned_dry_sampler_acts_as_a_new_one(gemma: Decoder) -> None:
    params = SETTINGS["strong DRY"]
    kept = getattr(gemma.llm, "_webui_dry_samplers", {})
    _free_samplers(kept, gemma.lib.llama_sampler_free)
    first = gemma.chain(params, whole_row=True)  # a DRY sampler made anew (and kept)
    fresh = gemma.generate(first, 48)
    assert len(gemma.llm._webui_dry_samplers) == 1
    again = gemma.chain(params, whole_row=True)  # cloned from the kept one, which saw no token
    assert gemma.generate(again, 48) == fresh
    assert len(gemma.llm._webui_dry_samplers) == 1
    other = params.model_copy(update={"dry_multiplier": 1.5})
    gemma.chain(other)
    assert len(gemma.llm._webui_dry_samplers) == 2


def test_chains_that_need_the_whole_row_get_it() -> None:
    big = 262_144
    assert shortlist_size(SamplingParams(do_sample=False), big, has_grammar=True) == 1
    assert shortlist_size(SamplingParams(top_k=40), big, has_grammar=True) == 40
    assert shortlist_size(SamplingParams(top_k=40), 49_152, has_grammar=True) == 40  # SmolLM2: faster short too
    assert shortlist_size(SamplingParams(top_k=40), 8_192, has_grammar=True) == 0  # a small vocabulary: whole
    assert shortlist_size(SamplingParams(top_k=0), big, has_grammar=True) == 0
    assert shortlist_size(SamplingParams(mirostat_mode=2), big, has_grammar=True) == 0
    assert shortlist_size(SamplingParams(grammar_string='root ::= "a"'), big, has_grammar=True) == 0
    # a lazy grammar is not in the chain until its trigger
    assert shortlist_size(SamplingParams(grammar_string='root ::= "a"'), big, has_grammar=False) == 40
    # penalties that raise a logit could lift a token from outside the list
    assert shortlist_size(SamplingParams(repeat_penalty=0.9), big, has_grammar=True) == 0
    assert shortlist_size(SamplingParams(frequency_penalty=-0.5), big, has_grammar=True) == 0
    assert shortlist_size(SamplingParams(presence_penalty=-0.5), big, has_grammar=True) == 0
