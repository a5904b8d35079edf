"""The one log-softmax of the project: raw logits to log-probabilities.

The API's ``logprobs`` (``webui/loaders/logprobs.py``) and the sampler view's "before"
probabilities (``webui/sampling/chain.py``) both normalise with ``logsumexp`` below, so the
probability the UI shows for a drawn token is ``exp`` of the very logprob the API reports.
The exponentials are taken in float32 (what the model hands over; a 150k row stays cheap) and
summed in float64, so the normaliser is accurate to float64 rounding.
"""

from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)


def _normaliser(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``logsumexp`` along the last axis, and what it was made of: ``sum(exp(rows - max))``,
    ``rows - max`` and ``exp(rows - max)``."""
    peak = rows.max(axis=-1, keepdims=True)
    centred = rows - peak
    shifted = np.exp(centred)
    total = shifted.sum(axis=-1, dtype=np.float64)
    return peak[..., 0].astype(np.float64) + np.log(total), total, centred, shifted


def logsumexp(rows: np.ndarray) -> np.ndarray:
    """``log(sum(exp(rows)))`` along the last axis, as float64 (shape ``rows.shape[:-1]``).

    ``log p(token) = float64(logit) - logsumexp(row)``. Entries of ``-inf`` (banned tokens)
    add nothing; a row must hold at least one finite logit.
    """
    return _normaliser(np.asarray(rows, dtype=np.float32))[0]


def distribution_stats(row: np.ndarray, *, count: bool = True) -> tuple[float, float, int]:
    """Of one row of logits: ``logsumexp(row)`` (the very same number), the entropy of
    ``softmax(row)`` in bits, and how many tokens have a non-zero (float32) probability
    (-1 with ``count=False``: a view of a whole vocabulary has no use for it and saves a pass).

    One pass of exponentials serves all three: a 150k vocabulary is read once per token.
    """
    row = np.asarray(row, dtype=np.float32).reshape(-1)
    lse, total, centred, shifted = _normaliser(row)
    # (counting a bool array is vectorised; counting the floats themselves took 5x as long)
    nonzero = int(np.count_nonzero(shifted > 0)) if count else -1
    if 0 <= nonzero <= 1:
        return float(lse), 0.0, nonzero
    # H = -sum p log p = log(total) - sum(p * (logit - max)). A float32 dot is precise enough for
    # an entropy shown with two decimals, and several times faster than a float64 one. A banned
    # (-inf) entry has p = 0 and makes the dot NaN (0 * -inf): only then is it taken again with the
    # -inf clamped (no extra pass over a row without one).
    with np.errstate(invalid="ignore"):
        expected = float(np.dot(shifted, centred))
    if math.isnan(expected):
        expected = float(np.dot(shifted, np.maximum(centred, np.float32(-1e30))))
    expected /= float(total)
    return float(lse), max(0.0, (math.log(float(total)) - expected) / LN2), nonzero


def softmax(values: np.ndarray) -> np.ndarray:
    """The probabilities (float64, summing to 1) of one row of logits."""
    values = np.asarray(values, dtype=np.float32)
    return np.exp(values.astype(np.float64) - logsumexp(values))
