"""Perplexity and per-token surprise from log-probabilities (natural log, as the API reports them).

The numbers come from the prompt logprobs of the ``echo`` path (the API's own implementation),
so the Perplexity view, the API and a test computing ``exp(mean NLL)`` from logits all agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from webui.errors import WebUIError
from webui.sampling.softmax import LN2


def perplexity(logprobs: Iterable[float | None]) -> float:
    """``exp(-mean(logprobs))``: how many tokens the model was, on average, choosing between.

    ``None`` entries (a text's first token, which nothing predicts) are left out. A token the
    model gave no chance at all (``-inf``) makes the perplexity infinite.
    """
    values = [lp for lp in logprobs if lp is not None]
    if not values:
        raise WebUIError(
            "The text is too short to measure: perplexity needs at least two tokens "
            "(the first one has nothing before it to predict it)."
        )
    mean_nll = -math.fsum(values) / len(values)
    try:
        return math.exp(mean_nll)
    except OverflowError:  # a mean NLL beyond ~709 nats: no float holds it
        return math.inf


def surprise_bits(logprob: float) -> float:
    """How surprising a token was, in bits: ``-log2 p`` (0 for a certain token, 1 for a coin flip)."""
    return 0.0 if logprob == 0.0 else -logprob / LN2
