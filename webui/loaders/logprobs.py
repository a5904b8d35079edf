"""Log-probabilities from raw logits, shared by the local loaders.

A loader hands over the logits a token was drawn from (one row per position, before any
sampler) and a function giving a token id's bytes; this turns them into ``TokenLogprob``s.
Everything is vectorised with NumPy: one log-sum-exp per row and ``argpartition`` for the
top alternatives, so asking for 20 alternatives over a 150k vocabulary stays cheap. The
log-sum-exp is ``webui.sampling.softmax.logsumexp``, the one the sampler view's "before"
probabilities use, so a token's probability in the UI is ``exp`` of its logprob here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from webui.loaders.base import TokenLogprob, TopLogprob
from webui.sampling.softmax import logsumexp


class LogprobMaker:
    """Makes ``TokenLogprob`` entries with ``n_top`` alternatives; token texts are cached."""

    def __init__(self, n_top: int, token_bytes: Callable[[int], bytes]) -> None:
        self.n_top = max(0, n_top)
        self._token_bytes = token_bytes
        self._pieces: dict[int, tuple[str, tuple[int, ...]]] = {}

    def piece(self, token: int) -> tuple[str, tuple[int, ...]]:
        """The token's text (a broken character shown as U+FFFD) and its raw bytes."""
        found = self._pieces.get(token)
        if found is None:
            raw = self._token_bytes(token)
            found = self._pieces[token] = (raw.decode("utf-8", errors="replace"), tuple(raw))
        return found

    def entries(self, logits: Any, tokens: Sequence[int]) -> list[TokenLogprob]:
        """One entry per row of ``logits`` (shape ``(n, n_vocab)``): ``tokens[i]`` drawn from row ``i``."""
        rows = np.asarray(logits, dtype=np.float32)
        if rows.ndim == 1:
            rows = rows[None, :]
        n = len(tokens)
        if n == 0:
            return []
        rows = rows[:n]
        lse = logsumexp(rows)
        ids = np.asarray(tokens, dtype=np.int64)
        chosen = rows[np.arange(n), ids].astype(np.float64) - lse
        top_ids: np.ndarray | None = None
        if self.n_top:
            k = min(self.n_top, rows.shape[1])
            part = np.argpartition(rows, -k, axis=1)[:, -k:]
            order = np.argsort(-np.take_along_axis(rows, part, axis=1), axis=1, kind="stable")
            top_ids = np.take_along_axis(part, order, axis=1)
        out = []
        for i in range(n):
            text, raw = self.piece(int(ids[i]))
            top: tuple[TopLogprob, ...] = ()
            if top_ids is not None:
                top = tuple(self._top(int(t), float(rows[i, t] - lse[i])) for t in top_ids[i])
            out.append(TokenLogprob(text, float(chosen[i]), raw, top))
        return out

    def _top(self, token: int, logprob: float) -> TopLogprob:
        text, raw = self.piece(token)
        return TopLogprob(text, logprob, raw)

    def first_prompt_entry(self, token: int) -> TokenLogprob:
        """A prompt's first token: nothing came before it, so it has no logprob."""
        text, raw = self.piece(token)
        return TokenLogprob(text, None, raw)
