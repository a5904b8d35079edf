"""The sampler view (webui/sampling/chain.py): the sampler maths on synthetic logits, checked
against direct NumPy formulas, then on SmolLM2's real logits against llama.cpp's own chain
(``build_sampler``, the one generation uses) and the API's logprobs."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from webui.loaders.logprobs import LogprobMaker
from webui.params import SamplingParams
from webui.sampling import Candidate, DryBreakers, SamplerView, sample_view
from webui.sampling.softmax import logsumexp

#: Every sampler off: 'after' is the softmax of the (penalised) logits at temperature 1.
PLAIN = {
    "top_k": 0,
    "top_p": 1.0,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.0,
    "dry_multiplier": 0.0,
    "temperature": 1.0,
}


def params(**changes: object) -> SamplingParams:
    return SamplingParams(**{**PLAIN, **changes})


def direct_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def after_probs(view: SamplerView) -> dict[int, float]:
    return {c.id: c.prob for c in view.after}


@pytest.fixture
def logits() -> np.ndarray:
    """A peaked row over 2000 tokens, like a model's: a few likely tokens and a long tail."""
    rng = np.random.default_rng(7)
    row = rng.normal(size=2000).astype(np.float32)
    row[[11, 22, 33, 44, 55]] = np.array([9, 8.5, 8, 7, 6], dtype=np.float32)
    return row


# --- before -----------------------------------------------------------------------------------


def test_before_is_the_direct_softmax_and_sums_to_one(logits: np.ndarray) -> None:
    view = sample_view(logits, SamplingParams(), n_top=logits.size)
    expected = direct_softmax(logits)
    got = np.zeros(logits.size)
    for c in view.before:
        got[c.id] = c.prob
    assert math.isclose(got.sum(), 1.0, abs_tol=1e-6)  # float32 exponentials, as the API
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    assert [c.id for c in view.before[:5]] == [11, 22, 33, 44, 55]
    assert view.entropy_before == pytest.approx(entropy_bits(expected), rel=1e-5)


def test_before_is_the_raw_model_whatever_the_samplers(logits: np.ndarray) -> None:
    plain = sample_view(logits, SamplingParams(), n_top=10)
    tuned = sample_view(logits, SamplingParams(temperature=1.7, top_k=3, repeat_penalty=2.0), [11, 11], n_top=10)
    assert [(c.id, c.prob) for c in plain.before] == [(c.id, c.prob) for c in tuned.before]
    assert plain.entropy_before == tuned.entropy_before


def test_api_logprob_is_the_log_of_the_before_probability(logits: np.ndarray) -> None:
    view = sample_view(logits, SamplingParams(), n_top=20)
    maker = LogprobMaker(20, lambda t: f"<{t}>".encode())
    tokens = [c.id for c in view.before]
    entries = maker.entries(np.tile(logits, (len(tokens), 1)), tokens)
    for candidate, entry in zip(view.before, entries, strict=True):
        assert entry.logprob == pytest.approx(math.log(candidate.prob), abs=1e-12)
    # the API's alternatives are the view's 'before' list, in the same order
    assert [t.token for t in entries[0].top] == [f"<{c.id}>" for c in view.before]


# --- greedy, top_k, top_p, min_p, typical -------------------------------------------------------


def test_greedy_draws_the_top_candidate(logits: np.ndarray) -> None:
    for greedy in (SamplingParams(temperature=0.0), SamplingParams(do_sample=False, top_k=3)):
        view = sample_view(logits, greedy, n_top=5)
        assert view.after == (Candidate(view.before[0].id, 1.0),)
        assert (view.pool, view.entropy_after) == (1, 0.0)
        assert [c.removed_by for c in view.before] == [None] + ["greedy"] * 4


def test_greedy_draws_the_top_candidate_after_the_penalties(logits: np.ndarray) -> None:
    # llama.cpp's greedy chain is ban_eos -> penalties -> DRY -> argmax: a heavy repeat penalty
    # on the favourite hands the draw to the second.
    view = sample_view(logits, SamplingParams(temperature=0.0, repeat_penalty=5.0), [11], n_top=5)
    assert view.after[0].id == 22
    assert view.before[0].removed_by == "greedy" and view.before[1].removed_by is None
    assert 11 in view.penalised


def test_top_k_keeps_k_candidates(logits: np.ndarray) -> None:
    view = sample_view(logits, params(top_k=3), n_top=10)
    assert view.pool == 3
    assert [c.id for c in view.after] == [11, 22, 33]
    assert len([c for c in view.after if c.prob > 0]) <= 3
    expected = direct_softmax(logits[[11, 22, 33]])
    np.testing.assert_allclose([c.prob for c in view.after], expected, rtol=1e-6)
    assert [c.removed_by for c in view.before] == [None] * 3 + ["top_k"] * 7


def test_top_k_zero_or_past_the_vocabulary_is_off(logits: np.ndarray) -> None:
    assert sample_view(logits, params(top_k=0)).pool == logits.size
    assert sample_view(logits[:500], params(top_k=1000)).pool == 500


def nucleus(logits: np.ndarray, p: float) -> set[int]:
    """top_p by the book: the fewest most likely tokens whose probabilities reach p."""
    probs = direct_softmax(logits)
    order = np.argsort(-probs, kind="stable")
    n = int(np.flatnonzero(np.cumsum(probs[order]) >= p)[0]) + 1
    return set(order[:n].tolist())


@pytest.mark.parametrize("p", [0.3, 0.6, 0.9, 0.99])
def test_top_p_cuts_where_the_maths_says(logits: np.ndarray, p: float) -> None:
    view = sample_view(logits, params(top_p=p), n_top=logits.size)
    assert set(after_probs(view)) == nucleus(logits, p)
    assert view.pool == len(nucleus(logits, p))
    assert sum(after_probs(view).values()) == pytest.approx(1.0)


def test_top_p_on_a_flat_150k_vocabulary_needs_no_full_sort() -> None:
    # Thousands of tokens make up 90%: the cut goes through the histogram path.
    row = (np.random.default_rng(3).normal(size=151_936) * 2).astype(np.float32)
    view = sample_view(row, params(top_p=0.9), n_top=10)
    assert view.pool == len(nucleus(row, 0.9))
    assert view.pool > 5000


@pytest.mark.parametrize("min_p", [0.01, 0.05, 0.3])
def test_min_p_cuts_where_the_maths_says(logits: np.ndarray, min_p: float) -> None:
    view = sample_view(logits, params(min_p=min_p), n_top=logits.size)
    probs = direct_softmax(logits)
    expected = set(np.flatnonzero(probs >= min_p * probs.max()).tolist())
    assert set(after_probs(view)) == expected
    removed = {c.id for c in view.before if c.removed_by == "min_p"}
    assert removed == set(range(logits.size)) - expected


def test_typical_p_keeps_the_tokens_of_typical_surprise(logits: np.ndarray) -> None:
    probs = direct_softmax(logits)
    entropy = float(-(probs * np.log(probs)).sum())
    order = np.argsort(np.abs(-np.log(probs) - entropy), kind="stable")
    n = int(np.flatnonzero(np.cumsum(probs[order]) > 0.5)[0]) + 1
    view = sample_view(logits, params(typical_p=0.5), n_top=logits.size)
    assert set(after_probs(view)) == set(order[:n].tolist())


def test_the_stages_run_in_llama_cpp_order(logits: np.ndarray) -> None:
    # top_k first (3 left), then top_p over those 3: the favourite alone reaches 0.3 of them.
    view = sample_view(logits, params(top_k=3, top_p=0.3), n_top=4)
    assert [c.removed_by for c in view.before] == [None, "top_p", "top_p", "top_k"]
    assert view.after == (Candidate(11, 1.0),)


# --- temperature ----------------------------------------------------------------------------


def test_temperature_sharpens_below_one_and_flattens_above(logits: np.ndarray) -> None:
    entropy = {t: sample_view(logits, params(temperature=t)).entropy_after for t in (0.5, 1.0, 1.5)}
    assert entropy[0.5] < entropy[1.0] < entropy[1.5]
    # at temperature 1 with nothing else on, 'after' is 'before'
    plain = sample_view(logits, params(), n_top=10)
    assert entropy[1.0] == pytest.approx(plain.entropy_before, rel=1e-5)
    assert [c.id for c in plain.after] == [c.id for c in plain.before]


def test_temperature_scales_after_the_truncation(logits: np.ndarray) -> None:
    # min_p judges the raw probabilities: a high temperature does not let more tokens in.
    cold = sample_view(logits, params(min_p=0.05, temperature=0.3))
    hot = sample_view(logits, params(min_p=0.05, temperature=3.0))
    assert cold.pool == hot.pool
    kept = [11, 22, 33]
    view = sample_view(logits, params(top_k=3, temperature=2.0), n_top=3)
    np.testing.assert_allclose([c.prob for c in view.after], direct_softmax(logits[kept] / 2.0), rtol=1e-6)


# --- penalties ------------------------------------------------------------------------------


def test_repetition_penalty_lowers_a_repeated_token(logits: np.ndarray) -> None:
    before = after_probs(sample_view(logits, params(), n_top=5))
    view = sample_view(logits, params(repeat_penalty=1.3), [22, 5, 22], n_top=5)
    after = after_probs(view)
    assert after[22] < before[22]
    assert after[11] > before[11]
    assert view.penalised == (22,)


def test_penalties_follow_llama_cpp_formulas() -> None:
    row = np.array([2.0, -1.0, 0.5, 3.0, 1.0], dtype=np.float32)
    view = sample_view(
        row, params(repeat_penalty=2.0, frequency_penalty=0.25, presence_penalty=0.5), [0, 1, 1, 1], n_top=5
    )
    # positive logits are divided, negative ones multiplied; then count * frequency + presence
    expected = np.array([2.0 / 2 - 0.25 - 0.5, -1.0 * 2 - 3 * 0.25 - 0.5, 0.5, 3.0, 1.0])
    got = np.zeros(5)
    for c in view.after:
        got[c.id] = c.prob
    np.testing.assert_allclose(got, direct_softmax(expected), rtol=1e-6)
    assert set(view.penalised) == {0, 1}


def test_penalties_look_at_the_last_repeat_last_n_tokens(logits: np.ndarray) -> None:
    history = [22, 5, 6, 7]
    window = sample_view(logits, params(repeat_penalty=1.5, repeat_last_n=3), history)
    assert 22 not in window.penalised
    everything = sample_view(logits, params(repeat_penalty=1.5, repeat_last_n=-1), history)
    assert 22 in everything.penalised
    off = sample_view(logits, params(repeat_penalty=1.5, repeat_last_n=0), history)
    assert off.penalised == ()


def test_history_outside_the_vocabulary_is_ignored(logits: np.ndarray) -> None:
    view = sample_view(logits, params(repeat_penalty=1.5), [-1, 10**6, 11])
    assert view.penalised == (11,)


def test_ban_eos_removes_the_end_tokens(logits: np.ndarray) -> None:
    view = sample_view(logits, params(ban_eos_token=True), n_top=5, eog=[11, 33, 10**6])
    assert {c.id: c.removed_by for c in view.before}[11] == "ban_eos"
    assert {c.id: c.removed_by for c in view.before}[33] == "ban_eos"
    assert not {11, 33} & set(after_probs(view))
    assert view.pool == logits.size - 2
    assert view.penalised == ()
    # without the setting, the same end tokens stay
    assert 11 in after_probs(sample_view(logits, params(), n_top=5, eog=[11]))


# --- DRY ------------------------------------------------------------------------------------


def test_dry_penalises_the_token_that_would_continue_a_repeat() -> None:
    row = np.zeros(10, dtype=np.float32)
    # "5 1 2 3" appeared before, followed by 4; the text now ends with "5 1 2 3" again.
    history = [5, 1, 2, 3, 4, 5, 1, 2, 3]
    view = sample_view(row, params(dry_multiplier=0.8, dry_base=1.75, dry_allowed_length=2), history, n_top=10)
    expected = np.zeros(10)
    expected[4] -= 0.8 * 1.75 ** (4 - 2)
    got = np.zeros(10)
    for c in view.after:
        got[c.id] = c.prob
    np.testing.assert_allclose(got, direct_softmax(expected), rtol=1e-6)
    assert view.penalised == (4,)
    assert view.notes == ("DRY: its sequence breakers are not applied here, so repeats across them count too",)


def test_dry_repeats_stop_at_a_sequence_breaker() -> None:
    row = np.zeros(10, dtype=np.float32)
    history = [5, 1, 2, 3, 4, 5, 1, 2, 3]
    dry = params(dry_multiplier=0.8, dry_base=1.75, dry_allowed_length=2)
    # token 1 breaks sequences: the repeat only counts from after it ("2 3"), length 2
    view = sample_view(row, dry, history, n_top=10, dry_breakers=DryBreakers.from_sequences([[1]]))
    got = {c.id: c.prob for c in view.after}
    expected = np.zeros(10)
    expected[4] -= 0.8
    assert got[4] == pytest.approx(direct_softmax(expected)[4])
    assert view.notes == ()
    # a breaker at the very end leaves nothing to repeat
    ended = sample_view(row, dry, [*history, 1], dry_breakers=DryBreakers.from_sequences([[1]]))
    assert ended.penalised == ()


def test_dry_allowed_length_and_range() -> None:
    row = np.zeros(10, dtype=np.float32)
    history = [1, 2, 7, 1, 2]
    short = sample_view(row, params(dry_multiplier=0.8, dry_allowed_length=3), history)
    assert short.penalised == ()
    assert sample_view(row, params(dry_multiplier=0.8, dry_allowed_length=2), history).penalised == (7,)
    assert sample_view(row, params(dry_multiplier=0.8, dry_penalty_last_n=3), history).penalised == ()


def test_dry_breakers_from_a_vocabulary() -> None:
    pieces = [b"a", b"b:", b"\n", b"x\n", b"c", b"::", b"d<", b"end"]

    def tokenize(text: bytes) -> list[int]:
        return [pieces.index(bytes([c])) if bytes([c]) in pieces else 99 for c in text]

    table = DryBreakers.from_vocab(pieces, ["\n", ":", "<end"], tokenize)
    assert table.is_single_token(1) and table.is_single_token(2) and table.is_single_token(3)
    assert table.is_single_token(5)
    # "d<" ends with the start of "<end": the rest ("end") must follow
    assert table.tails[6] == ((99, 99, 99),)
    assert 0 not in table.tails and 4 not in table.tails


# --- XTC, mirostat, grammar -------------------------------------------------------------------


def test_xtc_marks_what_it_may_remove_and_keeps_it(logits: np.ndarray) -> None:
    view = sample_view(logits, params(top_k=5, xtc_probability=0.5, xtc_threshold=0.1), n_top=6)
    probs = direct_softmax(logits[[11, 22, 33, 44, 55]])
    above = [t for t, p in zip([11, 22, 33, 44, 55], probs, strict=True) if p >= 0.1]
    assert len(above) >= 2
    marks = {c.id: c.removed_by for c in view.before}
    assert [t for t in marks if marks[t] == "xtc (may)"] == above[:-1]
    assert set(after_probs(view)) == {11, 22, 33, 44, 55}
    assert any("XTC" in note for note in view.notes)


def test_mirostat_is_not_shown(logits: np.ndarray) -> None:
    view = sample_view(logits, SamplingParams(mirostat_mode=2), n_top=5)
    assert view.after == view.before
    assert view.notes[0].startswith("mirostat: not shown")
    # greedy wins over mirostat, as in build_sampler
    assert sample_view(logits, SamplingParams(mirostat_mode=2, temperature=0.0)).pool == 1


def test_a_grammar_is_mentioned(logits: np.ndarray) -> None:
    view = sample_view(logits, SamplingParams(grammar_string='root ::= "yes"'))
    assert any("grammar" in note for note in view.notes)


# --- size -------------------------------------------------------------------------------------


def test_a_150k_vocabulary_row() -> None:
    rng = np.random.default_rng(5)
    row = (rng.normal(size=151_936) * 3).astype(np.float32)
    history = rng.integers(0, 151_936, size=2000).tolist()
    for settings in (SamplingParams(), SamplingParams(top_k=0, typical_p=0.9), SamplingParams(temperature=0)):
        view = sample_view(row, settings, history, n_top=10)
        assert len(view.before) == 10 and 1 <= len(view.after) <= 10
        assert 1 <= view.pool <= 151_936
        assert sum(c.prob for c in view.after) <= 1.0 + 1e-9


# --- real logits: SmolLM2 and llama.cpp's own chain ---------------------------------------------

N_CTX = 256
#: the loaded model, the prompt's tokens and the logits of its next token
Smol = tuple[Any, list[int], np.ndarray]


@pytest.fixture(scope="module")
def smol(smollm_path: Path) -> Iterator[Smol]:
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(smollm_path), n_ctx=N_CTX, logits_all=True, verbose=False)
    text = b"Roses are red.\nViolets are blue.\nRoses are red.\nViolets are"
    tokens = llm.tokenize(text, add_bos=False)
    llm.eval(tokens)
    row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    yield llm, tokens, row
    llm.close()


@pytest.fixture(scope="module")
def breakers(smol: Smol) -> DryBreakers:
    """DRY's default breakers (newline : " *) as llama.cpp builds them from SmolLM2's vocabulary."""
    llm, _, row = smol
    pieces = [llm.detokenize([t], special=True) for t in range(row.size)]
    default = SamplingParams().dry_sequence_breakers
    return DryBreakers.from_vocab(pieces, default, lambda b: llm.tokenize(b, add_bos=False, special=False))


_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


def llama_chain(
    llm: Any, row: np.ndarray, settings: SamplingParams, history: Sequence[int]
) -> tuple[dict[int, float], int]:
    """What llama.cpp's own chain (build_sampler) leaves of ``row``: {id: prob}, and the id it drew."""
    import llama_cpp

    from webui.loaders.llama_sampling import build_sampler, eog_tokens

    chain = build_sampler(llm, settings, N_CTX, eog_tokens(llm), list(history))
    data = (llama_cpp.llama_token_data * row.size)()
    view = np.frombuffer(data, dtype=_TOKEN_DATA)
    view["id"], view["logit"], view["p"] = np.arange(row.size), row, 0.0
    array = llama_cpp.llama_token_data_array(data=data, size=row.size, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(chain.sampler, ctypes.byref(array))
    left = np.frombuffer(ctypes.string_at(array.data, array.size * _TOKEN_DATA.itemsize), dtype=_TOKEN_DATA)
    drawn = int(left["id"][array.selected])
    left = left[np.isfinite(left["logit"])]
    return dict(zip(left["id"].tolist(), direct_softmax(left["logit"]).tolist(), strict=True)), drawn


def assert_same_distribution(view: SamplerView, reference: dict[int, float], *, boundary: int = 0) -> None:
    """'after' is llama.cpp's distribution. ``boundary``: tokens a float32 running sum in llama.cpp
    may put on the other side of a top_p/typical cut (each below 0.1%)."""
    got = after_probs(view)
    differ = set(got) ^ set(reference)
    assert len(differ) <= boundary, differ
    assert all(got.get(t, 0) + reference.get(t, 0) < 1e-3 for t in differ)
    assert abs(view.pool - len(reference)) <= boundary
    for token in set(got) & set(reference):
        assert got[token] == pytest.approx(reference[token], rel=2e-3, abs=1e-7)


def test_real_before_matches_a_softmax_of_the_model_logits(smol: Smol) -> None:
    llm, tokens, row = smol
    view = sample_view(row, SamplingParams(), tokens, n_top=row.size)
    expected = direct_softmax(row)
    assert sum(c.prob for c in view.before) == pytest.approx(1.0, abs=1e-6)
    for c in view.before[:50]:
        assert c.prob == pytest.approx(expected[c.id], rel=1e-6)
    assert view.entropy_before == pytest.approx(entropy_bits(expected), rel=1e-4)
    # the API's logprob of the same token on the same row
    maker = LogprobMaker(5, lambda t: llm.detokenize([t]))
    for c in view.before[:5]:
        (entry,) = maker.entries(row[None, :], [c.id])
        assert entry.logprob == pytest.approx(math.log(c.prob), abs=1e-12)
    assert float(logsumexp(row)) == pytest.approx(math.log(np.exp(row.astype(np.float64)).sum()), abs=1e-7)


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the defaults: penalties, DRY, top_k 40, top_p 0.9, min_p 0.05, temperature 0.7
        {"top_k": 5, "top_p": 1.0, "min_p": 0.0, "temperature": 1.5, "repeat_penalty": 1.3},
        {"top_k": 0, "top_p": 1.0, "min_p": 0.1, "frequency_penalty": 0.5, "presence_penalty": 0.3},
        {"top_k": 0, "top_p": 0.95, "min_p": 0.0, "temperature": 1.2},
        {"top_k": 100, "typical_p": 0.7, "top_p": 1.0, "min_p": 0.0},
        {"ban_eos_token": True, "top_k": 0, "top_p": 1.0, "min_p": 0.02},
        {"dry_multiplier": 3.0, "dry_allowed_length": 1, "top_k": 0, "top_p": 1.0, "min_p": 0.01},
    ],
)
def test_real_after_matches_llama_cpp_chain(smol: Smol, breakers: DryBreakers, settings: dict[str, Any]) -> None:
    from webui.loaders.llama_sampling import eog_tokens

    llm, tokens, row = smol
    chosen = SamplingParams(**settings)
    reference, _ = llama_chain(llm, row, chosen, tokens)
    view = sample_view(row, chosen, tokens, n_top=row.size, eog=eog_tokens(llm), dry_breakers=breakers)
    cut_by_a_sum = chosen.top_p < 1.0 or chosen.typical_p < 1.0
    assert_same_distribution(view, reference, boundary=2 if cut_by_a_sum else 0)


def test_real_greedy_draws_what_llama_cpp_draws(smol: Smol, breakers: DryBreakers) -> None:
    llm, tokens, row = smol
    for settings in (SamplingParams(temperature=0.0), SamplingParams(temperature=0.0, repeat_penalty=3.0)):
        _, drawn = llama_chain(llm, row, settings, tokens)
        assert sample_view(row, settings, tokens, dry_breakers=breakers).after[0].id == drawn


def test_real_xtc_may_remove_what_llama_cpp_removes(smol: Smol, breakers: DryBreakers) -> None:
    llm, tokens, row = smol
    # probability 1: llama.cpp's XTC always fires, so its pool is ours minus the 'may' tokens
    settings = SamplingParams(top_k=6, top_p=1.0, min_p=0.0, xtc_probability=1.0, xtc_threshold=0.05)
    reference, _ = llama_chain(llm, row, settings, tokens)
    view = sample_view(row, settings, tokens, n_top=50, dry_breakers=breakers)
    may = {c.id for c in view.before if c.removed_by == "xtc (may)"}
    assert may
    assert set(after_probs(view)) - may == set(reference)


@pytest.mark.parametrize("size", [50, 5_000, 49_152, 262_144])
def test_top_indices_are_a_stable_sort_of_the_largest(size):
    """The candidates of a view: the ``n`` largest, largest first, ties by lower index - whichever way
    they are found (a sampled floor for a big row, a partition otherwise), on peaked, flat, tied and
    mostly banned rows."""
    from webui.sampling.chain import top_indices

    rng = np.random.default_rng(size)
    rows = [
        (rng.standard_normal(size) * 3).astype(np.float32),
        rng.integers(0, 4, size).astype(np.float32),  # ties everywhere
        np.where(rng.random(size) < 0.95, -np.inf, rng.standard_normal(size)).astype(np.float32),
        np.where(np.arange(size) % 997 == 0, 1.0, -np.inf).astype(np.float32),  # few finite values
    ]
    for row in rows:
        for n in (1, 10, 40, 60):
            got = top_indices(row, n)
            want = np.lexsort((np.arange(size), -row))[: min(n, size)]
            assert np.array_equal(row[got], row[want])  # the same values, largest first
            if np.unique(row).size == size:  # no ties anywhere: the very same tokens
                assert np.array_equal(got, want)
