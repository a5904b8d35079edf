"""The one log-softmax of the project: raw logits to log-probabilities.

The API's ``logprobs`` (``webui/loaders/logprobs.py``) and the sampler view's "before"
probabilities (``webui/sampling/chain.py``) both normalise with ``logsumexp`` below, so the
probability the UI shows for a drawn token is ``exp`` of the very logprob the API reports.
The exponentials are taken in float32 (what the model hands over; a 150k row stays cheap) and
summed in float64, so the normaliser is accurate to float64 rounding.
"""

from __future__ import annotations

import math
import threading

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

    One pass of exponentials serves all three, written into a scratch row this thread reuses (a new
    array per call was a fresh megabyte for gemma's vocabulary, token after token): a row is read three
    times (its maximum, the exponentials, the entropy's dot product).
    """
    row = np.asarray(row, dtype=np.float32).reshape(-1)
    peak = row.max()
    shifted = np.subtract(row, peak, out=scratch_row("exp", row.size))
    np.exp(shifted, out=shifted)
    total = float(shifted.sum(dtype=np.float64))
    # the same number as logsumexp(row): (max + log of the same float64 sum)
    lse = float(np.float64(peak) + np.log(np.float64(total)))
    # (counting a bool array is vectorised; counting the floats themselves took 5x as long)
    nonzero = int(np.count_nonzero(shifted > 0)) if count else -1
    if 0 <= nonzero <= 1:
        return lse, 0.0, nonzero
    # H = -sum p log p = log(total) - sum(p * (logit - max)) = log(total) - (dot(e, logit) - max * total),
    # with e = exp(logit - max) and p = e / total. A float32 dot is precise enough for an entropy shown
    # with two decimals, and several times faster than a float64 one. A banned (-inf) logit has e = 0
    # and makes the dot NaN (0 * -inf): only then is it taken again with the -inf clamped.
    with np.errstate(invalid="ignore"):
        weighted = float(np.dot(shifted, row))
    if math.isnan(weighted):
        weighted = float(np.dot(shifted, np.maximum(row, np.float32(-1e30))))
    expected = weighted / total - float(peak)
    return lse, max(0.0, (math.log(total) - expected) / LN2), nonzero


_local = threading.local()


def scratch_row(name: str, size: int) -> np.ndarray:
    """A float32 row of ``size`` this thread may overwrite at will, kept under ``name`` for its next call
    (a new array per token was a fresh megabyte for gemma's vocabulary). Nothing returned to a caller may
    refer to it, and two uses alive at once need two names."""
    rows: dict[str, np.ndarray] = _local.__dict__.setdefault("rows", {})
    found = rows.get(name)
    if found is None or found.size < size:
        found = rows[name] = np.empty(size, dtype=np.float32)
    return found[:size]


def softmax(values: np.ndarray) -> np.ndarray:
    """The probabilities (float64, summing to 1) of one row of logits."""
    values = np.asarray(values, dtype=np.float32)
    return np.exp(values.astype(np.float64) - logsumexp(values))
