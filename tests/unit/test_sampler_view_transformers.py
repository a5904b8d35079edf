"""The sampler view in transformers' order (``sample_view(..., order="transformers")``), on synthetic
logits, held to transformers' own logits processors in the order ``generate`` applies them."""

from __future__ import annotations

import numpy as np
import pytest

from webui.params import SamplingParams
from webui.sampling import sample_view

torch = pytest.importorskip("torch")
logits_process = pytest.importorskip("transformers.generation.logits_process")

PLAIN = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0, "dry_multiplier": 0.0}


def params(**changes: object) -> SamplingParams:
    return SamplingParams(**{**PLAIN, **changes})


def transformers_probs(row: np.ndarray, p: SamplingParams, history: list[int]) -> np.ndarray:
    """What ``generate`` draws from: its processors, in its order (``_get_logits_processor``)."""
    lp = logits_process
    chain: list = []
    if p.repeat_penalty != 1.0:
        chain.append(lp.RepetitionPenaltyLogitsProcessor(p.repeat_penalty))
    if p.temperature != 1.0:
        chain.append(lp.TemperatureLogitsWarper(p.temperature))
    if p.top_k:
        chain.append(lp.TopKLogitsWarper(p.top_k))
    if p.top_p < 1.0:
        chain.append(lp.TopPLogitsWarper(p.top_p))
    if p.min_p:
        chain.append(lp.MinPLogitsWarper(p.min_p))
    if p.typical_p < 1.0:
        chain.append(lp.TypicalLogitsWarper(p.typical_p))
    scores = torch.tensor(row).unsqueeze(0)
    ids = torch.tensor([history or [0]])
    for processor in chain:
        scores = processor(ids, scores)
    return torch.softmax(scores, dim=-1)[0].double().numpy()


@pytest.fixture
def logits() -> np.ndarray:
    """A peaked row over 2000 tokens with a long tail; tokens 60 and 61 tie."""
    rng = np.random.default_rng(7)
    row = rng.normal(size=2000).astype(np.float32)
    row[[11, 22, 33, 44, 55, 60, 61]] = np.array([9, 8.5, 8, 7, 6, 5.5, 5.5], dtype=np.float32)
    return row


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "min_p": 0.05, "repeat_penalty": 1.1},  # the defaults
        {"temperature": 1.5, "top_p": 0.5},
        {"temperature": 3.0, "min_p": 0.05},
        {"temperature": 1.3, "typical_p": 0.6},
        {"temperature": 0.8, "top_k": 6},  # the 6th logit ties with the 7th: transformers keeps both
        {"temperature": 2.0, "top_k": 50, "top_p": 0.95, "min_p": 0.02, "typical_p": 0.9, "repeat_penalty": 1.3},
    ],
)
def test_after_is_what_transformers_draws_from(logits: np.ndarray, settings: dict) -> None:
    p = params(**settings)
    history = [22, 5, 22, 44]
    expected = transformers_probs(logits, p, history)
    view = sample_view(logits, p, history, n_top=logits.size, order="transformers")
    kept = np.flatnonzero(expected > 0)
    assert view.pool == kept.size
    after = {c.id: c.prob for c in view.after}
    assert set(after) == set(kept.tolist())
    for token, prob in after.items():
        assert prob == pytest.approx(expected[token], abs=1e-6)
    removed = {c.id for c in view.before if c.removed_by is not None}
    assert removed == set(np.flatnonzero(expected == 0).tolist())


def test_temperature_comes_before_the_cuts(logits: np.ndarray) -> None:
    # min_p judges the reshaped probabilities: a high temperature lets more tokens in, a low one fewer
    # (in llama.cpp's order both keep the same pool).
    cold = sample_view(logits, params(min_p=0.05, temperature=0.3), order="transformers")
    hot = sample_view(logits, params(min_p=0.05, temperature=3.0), order="transformers")
    assert cold.pool < hot.pool
    same = [sample_view(logits, params(min_p=0.05, temperature=t)).pool for t in (0.3, 3.0)]
    assert same[0] == same[1]


def test_top_k_keeps_ties_with_the_kth(logits: np.ndarray) -> None:
    view = sample_view(logits, params(top_k=6), n_top=8, order="transformers")
    assert view.pool == 7 and {c.id for c in view.after} == {11, 22, 33, 44, 55, 60, 61}
    assert sample_view(logits, params(top_k=6), n_top=8).pool == 6  # llama.cpp keeps exactly k


def test_greedy_is_the_same_in_both_orders(logits: np.ndarray) -> None:
    greedy = params(temperature=0.0, repeat_penalty=1.5)
    mine, theirs = (sample_view(logits, greedy, [11], n_top=5, order=o) for o in ("llama.cpp", "transformers"))
    assert mine == theirs and mine.after[0].id == 22
