"""Warm states on the real SmolLM2 and llama.cpp: a saved prefix restores to the same logits, and a
bad file is never trusted.

Each test uses a context of two sequences made from one loaded model, as the parallel slot engine
does; tokens are evaluated into a chosen sequence with a ``llama_batch``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest
from llama_cpp import _internals

from webui.loaders.warm_state import HEADER, WarmStore, model_key

N_CTX_PER_SEQ = 512
OPTIONS = {"n_ctx": N_CTX_PER_SEQ, "n_seq_max": 2}
BIG = 10**9
#: Tests other than the first use short prompts (and a store that keeps them) to stay quick on 2 cores.
SHORT = 16
LOGGER = "webui.loaders.warm_state"


class SeqContext:
    """A llama.cpp context of ``n_seq`` sequences on a loaded model, evaluated one sequence at a time."""

    def __init__(self, llm: Any, n_seq: int = 2) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = N_CTX_PER_SEQ * n_seq
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = 2
        self._context = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.ctx = self._context.ctx
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
        self._n_vocab = llm.n_vocab()

    def eval(self, seq: int, tokens: Sequence[int], start: int) -> np.ndarray:
        """Evaluate ``tokens`` at positions ``start``... of sequence ``seq``; the last one's logits."""
        batch = self._batch.batch
        for offset in range(0, len(tokens), 512):
            chunk = tokens[offset : offset + 512]
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = start + offset + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = i == len(chunk) - 1
            batch.n_tokens = len(chunk)
            assert llama_cpp.llama_decode(self.ctx, batch) == 0
        pointer = llama_cpp.llama_get_logits_ith(self.ctx, len(chunk) - 1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()

    def greedy(self, seq: int, tokens: Sequence[int], start: int, steps: int = 4) -> tuple[np.ndarray, list[int]]:
        """Evaluate ``tokens`` from ``start``, then draw ``steps`` greedy tokens: (first logits, tokens)."""
        first = logits = self.eval(seq, tokens, start)
        drawn: list[int] = []
        for step in range(steps):
            drawn.append(int(np.argmax(logits)))
            logits = self.eval(seq, drawn[-1:], start + len(tokens) + step)
        return first, drawn

    def held(self, seq: int) -> int:
        return llama_cpp.llama_memory_seq_pos_max(self._memory, seq) + 1

    def clear(self, seq: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)

    def close(self) -> None:
        self._batch.close()
        self._context.close()


@pytest.fixture(scope="module")
def llm(smollm_path: Path) -> Iterator[Any]:
    model = llama_cpp.Llama(model_path=str(smollm_path), n_ctx=N_CTX_PER_SEQ, n_threads=2, verbose=False)
    yield model
    model.close()


@pytest.fixture
def ctx(llm: Any) -> Iterator[SeqContext]:
    context = SeqContext(llm)
    yield context
    context.close()


@pytest.fixture(scope="module")
def key(smollm_path: Path) -> str:
    return model_key(smollm_path, OPTIONS)


def prompt(llm: Any, topic: str, n: int) -> list[int]:
    text = f"Notes on {topic}. " + " ".join(f"Fact {i} about {topic}: it is number {i * 7}." for i in range(300))
    tokens = llm.tokenize(text.encode(), add_bos=False)
    assert len(tokens) >= n
    return tokens[:n]


def store_of(folder: Path, key: str, max_bytes: int = BIG) -> WarmStore:
    return WarmStore(folder, max_bytes, key, min_tokens=SHORT)


def saved_from_seq1(store: WarmStore, ctx: SeqContext, tokens: list[int]) -> Path:
    """Evaluate ``tokens`` into sequence 1 (cleared first) and save it; the file written."""
    ctx.clear(1)
    ctx.eval(1, tokens, 0)
    before = {entry.path for entry in store.entries()}
    assert store.save(ctx.ctx, 1, tokens)
    (path,) = {entry.path for entry in store.entries()} - before
    return path


def test_a_restored_prefix_gives_the_logits_of_a_fresh_evaluation(llm: Any, key: str, tmp_path: Path) -> None:
    tokens = prompt(llm, "rivers", 300)
    first = SeqContext(llm)
    saved_from_seq1(WarmStore(tmp_path, BIG, key), first, tokens[:-1])
    first.close()

    # after a restart: a new store reads the folder, a new context gets the state in another sequence
    store = WarmStore(tmp_path, BIG, key)
    ctx = SeqContext(llm)
    try:
        assert store.match_length(tokens) == 299
        assert store.restore(ctx.ctx, 0, tokens) == 299
        assert ctx.held(0) == 299
        warm_logits, warm_tokens = ctx.greedy(0, tokens[-1:], 299)
        ctx.eval(1, tokens[:-1], 0)  # the same prompt evaluated from scratch, next to it
        cold_logits, cold_tokens = ctx.greedy(1, tokens[-1:], 299)
    finally:
        ctx.close()
    np.testing.assert_allclose(warm_logits, cold_logits, rtol=0, atol=1e-4)
    assert warm_tokens == cold_tokens
    (entry,) = store.entries()
    assert entry.n_tokens == 299


def test_only_a_saved_prefix_of_the_prompt_is_restored(llm: Any, key: str, ctx: SeqContext, tmp_path: Path) -> None:
    tokens = prompt(llm, "mountains", 80)
    other = prompt(llm, "deserts", 40)
    store = store_of(tmp_path, key)
    saved_from_seq1(store, ctx, tokens[:50])
    ctx.eval(1, tokens[50:], 50)  # the chat went on: a longer prefix is saved too
    assert store.save(ctx.ctx, 1, tokens)
    assert not store.save(ctx.ctx, 1, tokens)  # already there

    shares_60 = tokens[:60] + other[:10]
    assert store.match_length(shares_60) == 50
    assert store.restore(ctx.ctx, 0, shares_60) == 50
    warm, _ = ctx.greedy(0, shares_60[50:], 50, steps=0)
    ctx.clear(1)
    ctx.eval(1, shares_60[:50], 0)  # evaluated in the same two batches (another split rounds differently)
    cold, _ = ctx.greedy(1, shares_60[50:], 50, steps=0)
    np.testing.assert_allclose(warm, cold, rtol=0, atol=1e-4)

    ctx.clear(0)
    assert store.restore(ctx.ctx, 0, tokens[:40] + other) == 0
    assert ctx.held(0) == 0
    changed = list(tokens) + [other[0]]
    changed[20] = other[5] if other[5] != tokens[20] else other[6]
    assert store.restore(ctx.ctx, 0, changed) == 0
    assert ctx.held(0) == 0
    assert store.restore(ctx.ctx, 0, tokens) == 50  # one token must be left to evaluate
    assert store.restore(ctx.ctx, 0, tokens + other[:1]) == 80
    assert ctx.held(0) == 80
    assert store.restore(ctx.ctx, 0, tokens[:30]) == 0
    assert ctx.held(0) == 80  # nothing matched: the sequence is left as it was


def test_least_recently_used_states_are_evicted(llm: Any, key: str, ctx: SeqContext, tmp_path: Path) -> None:
    apples, boats, clocks = (prompt(llm, topic, 40) for topic in ("apples", "boats", "clocks"))
    path_a = saved_from_seq1(store_of(tmp_path, key), ctx, apples)
    size = path_a.stat().st_size
    assert size > 40 * 1000

    store = store_of(tmp_path, key, int(size * 2.5))
    path_b = saved_from_seq1(store, ctx, boats)
    assert store.restore(ctx.ctx, 0, apples + [0]) == 40  # apples used after boats were saved
    path_c = saved_from_seq1(store, ctx, clocks)

    assert {entry.path for entry in store.entries()} == {path_a, path_c}
    assert not path_b.exists()
    assert store.restore(ctx.ctx, 0, boats + [0]) == 0
    assert [entry.path for entry in store.entries()] == [path_c, path_a]

    too_small = store_of(tmp_path / "small", key, size - 1)
    ctx.clear(1)
    ctx.eval(1, apples, 0)
    assert not too_small.save(ctx.ctx, 1, apples)
    assert list((tmp_path / "small").iterdir()) == []


LAKES = 40


@pytest.fixture(scope="module")
def pristine(llm: Any, key: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good state file of the first ``LAKES - 1`` tokens of the "lakes" prompt, saved once."""
    folder = tmp_path_factory.mktemp("pristine")
    context = SeqContext(llm)
    try:
        return saved_from_seq1(store_of(folder, key), context, prompt(llm, "lakes", LAKES)[:-1])
    finally:
        context.close()


def _truncate(data: bytearray) -> bytes:
    return bytes(data[: len(data) // 2])


def _garbage(data: bytearray) -> bytes:
    return os.urandom(len(data))


def _flip_state_byte(data: bytearray) -> bytes:
    data[-1000] ^= 0xFF
    return bytes(data)


def _other_key_header(data: bytearray) -> bytes:
    data[12:28] = b"0123456789abcdef" if data[12:28] != b"0123456789abcdef" else b"fedcba9876543210"
    return bytes(data)


def _state_llama_cpp_refuses(data: bytearray) -> bytes:
    """Checksums that all hold, around state bytes that are not a llama.cpp state."""
    magic, version, key_bytes, n_tokens, tokens_sha, state_size, _ = HEADER.unpack(data[: HEADER.size])
    state = os.urandom(state_size)
    header = HEADER.pack(magic, version, key_bytes, n_tokens, tokens_sha, state_size, hashlib.sha256(state).digest())
    return header + bytes(data[HEADER.size : len(data) - state_size]) + state


@pytest.mark.parametrize(
    "corrupt", [_truncate, _garbage, _flip_state_byte, _other_key_header, _state_llama_cpp_refuses]
)
@pytest.mark.parametrize("restart", [False, True], ids=["same-store", "after-restart"])
def test_a_bad_file_is_logged_deleted_and_never_loaded(
    llm: Any,
    key: str,
    ctx: SeqContext,
    pristine: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    corrupt: Any,
    restart: bool,
) -> None:
    tokens = prompt(llm, "lakes", LAKES)
    path = tmp_path / pristine.name
    path.write_bytes(pristine.read_bytes())
    store = store_of(tmp_path, key)
    assert store.match_length(tokens) == LAKES - 1
    path.write_bytes(corrupt(bytearray(path.read_bytes())))

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        if restart:
            store = store_of(tmp_path, key)
        assert store.restore(ctx.ctx, 0, tokens) == 0
    assert "Ignoring the warm state" in caplog.text
    assert not path.exists()
    assert store.entries() == []
    assert ctx.held(0) == 0
    assert np.isfinite(ctx.eval(0, tokens[:8], 0)).all()  # the context still works
    assert ctx.held(0) == 8


def test_a_state_of_another_context_shape_is_refused(
    llm: Any, key: str, pristine: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller that leaves n_seq_max out of the key: llama.cpp refuses the state, the store drops it."""
    path = tmp_path / pristine.name
    path.write_bytes(pristine.read_bytes())
    three = SeqContext(llm, n_seq=3)
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert store_of(tmp_path, key).restore(three.ctx, 2, prompt(llm, "lakes", LAKES)) == 0
        assert three.held(2) == 0
        assert np.isfinite(three.eval(2, [1, 2, 3], 0)).all()
    finally:
        three.close()
    assert "llama.cpp did not load it" in caplog.text
    assert not path.exists()


def test_another_model_key_never_restores(
    llm: Any, smollm_path: Path, key: str, ctx: SeqContext, pristine: Path, tmp_path: Path
) -> None:
    assert model_key(smollm_path, dict(OPTIONS)) == key
    other_key = model_key(smollm_path, {**OPTIONS, "type_k": "q8_0"})
    assert other_key != key
    tokens = prompt(llm, "lakes", LAKES)
    path = tmp_path / pristine.name
    path.write_bytes(pristine.read_bytes())

    other = store_of(tmp_path, other_key)
    assert other.entries() == []
    assert other.match_length(tokens) == 0
    assert other.restore(ctx.ctx, 0, tokens) == 0
    assert ctx.held(0) == 0
    assert path.exists()  # another model's state is not this store's to delete
    other.clear()
    assert path.exists()

    mine = store_of(tmp_path, key)
    assert [entry.path for entry in mine.entries()] == [path]
    assert mine.restore(ctx.ctx, 0, tokens) == LAKES - 1
    mine.clear()
    assert not path.exists() and mine.entries() == []


def test_the_model_key_follows_the_file(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF one")
    first = model_key(model, OPTIONS)
    assert len(first) == 16 and first == model_key(model, OPTIONS)
    os.utime(model, ns=(1, 1))
    assert model_key(model, OPTIONS) != first
    with pytest.raises(ValueError):
        WarmStore(tmp_path, BIG, "../../etc")


def test_save_refuses_tokens_the_sequence_does_not_hold(llm: Any, key: str, ctx: SeqContext, tmp_path: Path) -> None:
    tokens = prompt(llm, "valleys", 30)
    ctx.eval(1, tokens, 0)
    with pytest.raises(ValueError):
        store_of(tmp_path, key).save(ctx.ctx, 1, tokens[:-1])
    assert not WarmStore(tmp_path, BIG, key, min_tokens=31).save(ctx.ctx, 1, tokens)  # too short to keep
    assert list(tmp_path.iterdir()) == []
