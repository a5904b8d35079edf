"""What the sampler chain does to one token's distribution, re-done in NumPy for the UI.

``sample_view`` takes the raw logits of one position and the ``SamplingParams`` of the
generation and replays our llama.cpp chain (``webui/loaders/llama_sampling.py build_sampler``)
in its order and with llama.cpp's semantics:

    ban_eos -> penalties -> DRY -> top_k -> typical_p -> top_p -> min_p -> XTC -> temperature -> draw

(greedy: ban_eos -> penalties -> DRY -> argmax; mirostat is not replayed). With
``order="transformers"`` it replays transformers' ``generate`` instead (its
``_get_logits_processor``), whose temperature comes first and whose typical_p comes last:

    ban_eos -> repetition penalty -> temperature -> top_k -> top_p -> min_p -> typical_p -> draw

It reports the model's own distribution ("before", temperature 1, normalised exactly as the
API's logprobs), the distribution the draw uses ("after"), which stage removed each top
candidate, and which ones a penalty changed. It runs for every generated token while
probabilities are shown, so it reads the vocabulary a few times and never sorts it whole
(``argpartition`` instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from webui.params import SamplingParams
from webui.sampling.softmax import LN2, distribution_stats, logsumexp, scratch_row

#: llama.cpp clamps the DRY exponent so that ``base ** exponent`` stays a finite float.
_FLOAT_MAX_LOG = 88.7228391
#: llama.cpp's limits on DRY sequence breakers: characters kept, and tokens of a breaker's tail.
_BREAKER_MAX_CHARS = 40
_BREAKER_MAX_TAIL = 20
#: a cut (top_p, typical_p) sorts this many best tokens first, then buckets the rest
_FIRST_SLICE = 256
_BUCKETS = 4096
_SAMPLE_STEP = 64  # top_indices: the stride of the sample that sets its floor

#: Whose sampler chain a view replays: llama.cpp's (this app's own) or transformers' ``generate``.
ChainOrder = Literal["llama.cpp", "transformers"]


@dataclass(frozen=True)
class Candidate:
    """A token of a distribution: its id, its probability and, in ``before``, what removed it."""

    id: int
    prob: float
    #: the stage that removed it ("ban_eos", "penalties", "dry", "top_k", "typical_p", "top_p",
    #: "min_p", "xtc (may)", "greedy"); None if it survived. Only ``before`` entries have one.
    removed_by: str | None = None


@dataclass(frozen=True)
class SamplerView:
    """One position's distribution before and after the sampler chain."""

    #: the top of softmax(logits) at temperature 1 (the raw model), best first
    before: tuple[Candidate, ...]
    #: the top of the distribution the draw uses, renormalised over the pool, best first
    #: (greedy: the argmax with probability 1)
    after: tuple[Candidate, ...]
    entropy_before: float  # bits
    entropy_after: float  # bits
    #: how many tokens have a non-zero probability after the chain
    pool: int
    #: ids (among ``before`` and ``after``) whose logit a penalty or DRY changed
    penalised: tuple[int, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DryBreakers:
    """DRY's sequence breakers as token sequences: a head token and the tails that complete it.

    llama.cpp turns each breaker string into every token that contains it (tail ``()``) or
    starts it (the tail is the tokenisation of the rest); a repeat is not followed across them.
    Build it once per model and breaker list (``from_vocab`` reads the whole vocabulary).
    """

    tails: Mapping[int, tuple[tuple[int, ...], ...]]

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]]) -> DryBreakers:
        """Breakers given as token sequences (llama.cpp's test form): the first token is the head."""
        tails: dict[int, list[tuple[int, ...]]] = {}
        for seq in sequences:
            if seq:
                found = tails.setdefault(int(seq[0]), [])
                tail = tuple(int(t) for t in seq[1:])
                if tail not in found:
                    found.append(tail)
        return cls({head: tuple(found) for head, found in tails.items()})

    @classmethod
    def from_vocab(
        cls, pieces: Sequence[bytes], breakers: Iterable[str], tokenize: Callable[[bytes], Sequence[int]]
    ) -> DryBreakers:
        """llama.cpp's ``get_overlapping_token_sequences``: ``pieces[id]`` is a token's bytes
        (special tokens as text), ``tokenize`` turns bytes into ids without BOS."""
        tails: dict[int, list[tuple[int, ...]]] = {}
        for breaker in breakers:
            text = breaker.encode("utf-8")[:_BREAKER_MAX_CHARS]
            if not text:
                continue
            for token, word in enumerate(pieces):
                if text in word:
                    found = tails.setdefault(token, [])
                    if () not in found:
                        found.append(())
                    continue
                # The word ends with the start of the breaker: the rest must follow as a tail.
                pos = word.find(text[:1])
                while pos >= 0:
                    rest = word[pos:]
                    if text.startswith(rest):
                        tail = tuple(tokenize(text[len(rest) :]))[:_BREAKER_MAX_TAIL]
                        found = tails.setdefault(token, [])
                        if tail not in found:
                            found.append(tail)
                    pos = word.find(text[:1], pos + 1)
        return cls({head: tuple(found) for head, found in tails.items()})

    def heads(self) -> np.ndarray:
        return np.fromiter(self.tails, dtype=np.int64, count=len(self.tails))

    @cached_property
    def _head_table(self) -> np.ndarray:
        table = np.zeros(max(self.tails, default=-1) + 1, dtype=bool)
        table[self.heads()] = True
        return table

    def are_heads(self, tokens: np.ndarray) -> np.ndarray:
        """Which of ``tokens`` (ids >= 0) are heads: a table lookup (``np.isin`` sorted both, each token)."""
        table = self._head_table
        inside = tokens < table.size
        return inside & table[np.where(inside, tokens, 0)] if table.size else np.zeros(tokens.shape, dtype=bool)

    def is_single_token(self, token: int) -> bool:
        return () in self.tails.get(token, ())


class _Pool:
    """The candidates still in the chain (global ids and their penalised logits; ``ids`` None:
    the whole vocabulary in id order), and the stage that dropped each watched (``before``) id."""

    def __init__(self, ids: np.ndarray | None, vals: np.ndarray, watch: list[int], n_vocab: int) -> None:
        self.ids, self.vals = ids, vals
        self.watch = watch
        self.n_vocab = n_vocab
        self.removed: dict[int, str] = {}

    @property
    def size(self) -> int:
        return self.vals.size

    def global_ids(self, selection: np.ndarray) -> np.ndarray:
        return selection if self.ids is None else self.ids[selection]

    def keep(self, selection: np.ndarray, stage: str) -> None:
        """Keep ``selection`` (indices into the current arrays)."""
        if selection.size == self.size:
            return
        self.ids, self.vals = self.global_ids(selection), self.vals[selection]
        if self.ids.size <= 4096:  # (a few after top_k: no array as long as the vocabulary for 10 lookups)
            alive = set(self.ids.tolist())
            self.mark((t for t in self.watch if t not in alive), stage)
            return
        mask = np.zeros(self.n_vocab, dtype=bool)
        mask[self.ids] = True
        self.mark((t for t in self.watch if not mask[t]), stage)

    def mark(self, tokens: Iterable[int], stage: str) -> None:
        for token in tokens:
            self.removed.setdefault(int(token), stage)


def top_indices(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest values, largest first (ties: lower index first).

    A few of a big row (a token's 10 candidates out of gemma's 262,144): the ``n``-th largest of a
    strided sample is a floor that about ``n * step`` values reach (the stride is at most
    ``_SAMPLE_STEP``, smaller for a larger ``n``), and only those are looked at - several times faster
    than partitioning the whole row, which was most of what a token's view cost. Should the floor
    leave fewer than ``n`` (or too many), the whole row is partitioned.
    """
    n = min(n, values.size)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = None
    step = min(_SAMPLE_STEP, values.size // (n * 16))
    if step >= 4:
        sample = values[::step]
        floor = np.partition(sample, sample.size - n)[sample.size - n]
        reached = np.flatnonzero(values >= floor)
        if n <= reached.size <= values.size // 8:
            part = reached
    if part is None:
        part = np.arange(values.size)
    return _best_of(part, values[part], n)


def _best_of(part: np.ndarray, vals: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` best of ``part`` (indices in ascending order, ``vals`` their values), best first,
    ties to the lower index: only the ``n`` are sorted, however many ``part`` holds."""
    if part.size > 2 * n:
        kth = np.partition(vals, part.size - n)[part.size - n]  # the n-th largest value
        above = np.flatnonzero(vals > kth)
        tied = np.flatnonzero(vals == kth)[: n - above.size]  # (part is ascending: the lowest indices)
        keep = np.union1d(above, tied)
        part, vals = part[keep], vals[keep]
    return part[np.lexsort((part, -vals))[:n]]


def _cut(keys: np.ndarray, vals: np.ndarray, lse: float, target: float, *, strict: bool) -> np.ndarray:
    """The fewest indices, in ascending ``keys`` order, whose probabilities ``exp(vals - lse)``
    add up to ``target`` (``> target`` when ``strict``); all of them if rounding never gets there.

    The best ``_FIRST_SLICE`` keys are sorted first, which settles a peaked distribution. A flat
    one is cut with a histogram of the keys, as llama.cpp's bucket sort does: only the tokens of
    the bucket where the mass reaches ``target`` are sorted, never the whole vocabulary.
    """
    size = keys.size
    first = top_indices(-keys, min(size, _FIRST_SLICE))
    running = np.cumsum(np.exp(vals[first].astype(np.float64) - lse))
    hit = np.flatnonzero(running > target if strict else running >= target)
    if hit.size:
        return first[: hit[0] + 1]
    if first.size == size:
        return first
    low = keys[first[0]]
    high = np.max(keys, where=np.isfinite(keys), initial=low)
    if not high > low:
        return np.arange(size)
    # Keys of no-chance tokens (inf) land in the last bucket with the worst finite ones.
    scale = np.float32((_BUCKETS - 1) / (float(high) - float(low)))
    bucket = np.minimum((keys - low) * scale, np.float32(_BUCKETS - 1)).astype(np.intp)
    probs = np.exp(vals - np.float32(lse))
    mass = np.cumsum(np.bincount(bucket, weights=probs, minlength=_BUCKETS))
    crossing = np.flatnonzero(mass > target if strict else mass >= target)
    if not crossing.size:
        return np.arange(size)
    j = int(crossing[0])
    inside = np.flatnonzero(bucket == j)
    inside = inside[np.lexsort((inside, keys[inside]))]
    need = target - (float(mass[j - 1]) if j else 0.0)
    running = np.cumsum(probs[inside])
    hit = np.flatnonzero(running > need if strict else running >= need)
    return np.concatenate([np.flatnonzero(bucket < j), inside[: hit[0] + 1] if hit.size else inside])


def _penalise(work: np.ndarray, history: np.ndarray, params: SamplingParams) -> np.ndarray:
    """llama.cpp's repetition/frequency/presence penalties over the last ``repeat_last_n`` tokens
    of ``history`` (-1: all), in place; returns the ids whose logit changed."""
    last_n = params.repeat_last_n
    repeat, freq, present = (
        np.float32(v) for v in (params.repeat_penalty, params.frequency_penalty, params.presence_penalty)
    )
    if last_n == 0 or (repeat == 1.0 and freq == 0.0 and present == 0.0):
        return np.zeros(0, dtype=np.int64)
    window = history if last_n < 0 else history[-last_n:]
    if not window.size:
        return np.zeros(0, dtype=np.int64)
    ids, counts = np.unique(window, return_counts=True)
    old = work[ids]
    # Dividing a negative logit would raise its probability: llama.cpp multiplies those instead.
    new = np.where(old <= 0, old * repeat, old / repeat)
    new = (new - (counts.astype(np.float32) * freq + present)).astype(np.float32)
    work[ids] = new
    return ids[new != old]


def _dry(history: np.ndarray, params: SamplingParams, breakers: DryBreakers | None) -> tuple[np.ndarray, np.ndarray]:
    """llama.cpp's DRY (from koboldcpp): the ids whose logit it lowers and by how much.

    A token that would extend a sequence which already appeared in the last
    ``dry_penalty_last_n`` tokens (and is at least ``dry_allowed_length`` long) loses
    ``multiplier * base ** (length - allowed)``; a sequence breaker stops the look-back.
    """
    none = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    multiplier, base, allowed = params.dry_multiplier, params.dry_base, params.dry_allowed_length
    last_n = params.dry_penalty_last_n
    if multiplier == 0.0 or base < 1.0 or last_n == 0:
        return none
    window = history if last_n < 0 else history[-last_n:]
    size = window.size
    if size <= allowed:
        return none
    rev = window[::-1]  # rev[i]: the token i places from the end

    # 1. The latest sequence breaker limits how far back a repeat may reach.
    limit = size
    if breakers is not None and breakers.tails:
        for i in np.flatnonzero(breakers.are_heads(rev)).tolist():
            longest = -1
            for tail in breakers.tails[int(rev[i])]:
                n = len(tail)
                if longest < n <= i and all(tail[o] == rev[i - o - 1] for o in range(n)):
                    longest = n
            if longest >= 0:
                limit = i - longest
                break
    if limit < allowed:
        return none

    # 2. For each earlier end k, how long the text's suffix repeats there (at most ``limit``).
    # Lengths past allowed + the exponent clamp all get the same penalty, so matching stops there.
    max_exponent = int(_FLOAT_MAX_LOG / math.log(base)) if base > 1.000001 else 0
    cap = limit if max_exponent == 0 else min(limit, allowed + max_exponent)
    lengths = np.zeros(size, dtype=np.int64)
    alive = np.arange(1, size, dtype=np.int64)
    n = 0
    while alive.size and n < cap:
        alive = alive[alive + n < size]
        alive = alive[rev[alive + n] == rev[n]]
        n += 1
        lengths[alive] = n

    # 3. The token that followed each long-enough repeat would extend it: keep its longest.
    ends = np.flatnonzero(lengths >= allowed)
    if not ends.size:
        return none
    tokens, inverse = np.unique(rev[ends - 1], return_inverse=True)
    longest_repeat = np.zeros(tokens.size, dtype=np.int64)
    np.maximum.at(longest_repeat, inverse, lengths[ends])

    # 4. The penalty (single-token breakers are never penalised).
    if breakers is not None:
        keep = np.array([not breakers.is_single_token(t) for t in tokens.tolist()], dtype=bool)
        tokens, longest_repeat = tokens[keep], longest_repeat[keep]
    exponent = longest_repeat - allowed
    if max_exponent > 0:
        exponent = np.minimum(exponent, max_exponent)
    return tokens, (multiplier * np.power(float(base), exponent.astype(np.float64))).astype(np.float32)


def _typical(vals: np.ndarray, p: float, notes: list[str], *, order: ChainOrder = "llama.cpp") -> np.ndarray:
    """Locally typical sampling: the tokens whose surprise is closest to the entropy, up to mass p.

    llama.cpp stops once the mass is *over* p; transformers' ``TypicalLogitsWarper`` at the token
    that reaches p, and keeps every token whose distance ties with that one's."""
    lse, entropy, nonzero = distribution_stats(vals)
    if nonzero < vals.size and order == "llama.cpp":
        notes.append(
            "typical_p: llama.cpp's own typical sampler goes wrong when a token has no chance at all "
            "(banned, or a strong DRY penalty); the view shows what it is meant to do"
        )
    keys = np.abs((np.float32(lse) - vals) - np.float32(entropy * LN2))
    if order == "llama.cpp":
        return _cut(keys, vals, lse, p, strict=True)
    selection = _cut(keys, vals, lse, p, strict=False)
    return np.flatnonzero(keys <= keys[selection].max())


def _gone(tokens: np.ndarray, row: np.ndarray, work: np.ndarray) -> set[int]:
    """The ``tokens`` a penalty pushed to -inf (no chance left)."""
    return set(tokens[np.isneginf(work[tokens]) & ~np.isneginf(row[tokens])].tolist())


def sample_view(
    logits: np.ndarray,
    params: SamplingParams,
    history: Sequence[int] = (),
    *,
    n_top: int = 10,
    eog: Collection[int] = (),
    dry_breakers: DryBreakers | None = None,
    order: ChainOrder = "llama.cpp",
) -> SamplerView:
    """The sampler chain applied to one row of raw ``logits`` (n_vocab floats).

    ``history``: the tokens generated so far (what llama.cpp's penalties and DRY have seen);
    ``eog``: the end-of-generation ids ``ban_eos_token`` removes; ``dry_breakers``: DRY's
    sequence breakers as tokens (None: not applied, which the notes say when it matters);
    ``order``: whose chain to replay after the penalties (see the module's docstring; the caller
    switches off what that chain lacks, e.g. DRY and XTC for transformers).
    """
    row = np.ascontiguousarray(logits, dtype=np.float32).reshape(-1)
    n_vocab = row.size
    notes: list[str] = []
    if params.mirostat_mode and not params.greedy:
        lse, entropy_before, nonzero = distribution_stats(row)
        top = top_indices(row, n_top)
        probs = np.exp(row[top].astype(np.float64) - lse).tolist()
        before = tuple(Candidate(t, p) for t, p in zip(top.tolist(), probs, strict=True))
        notes.append("mirostat: not shown (it sets its own cut-off as the text goes on); 'after' is the model's own")
        return SamplerView(before, before, entropy_before, entropy_before, nonzero, (), tuple(notes))

    lse, entropy_before = distribution_stats(row, count=False)[:2]
    hist = np.asarray(history, dtype=np.int64).reshape(-1)
    hist = hist[(hist >= 0) & (hist < n_vocab)]
    work = scratch_row("work", n_vocab)  # (distribution_stats uses its own, "exp")
    np.copyto(work, row)
    banned = np.zeros(0, dtype=np.int64)
    if params.ban_eos_token and eog:
        banned = np.array([t for t in eog if 0 <= t < n_vocab], dtype=np.int64)
        work[banned] = -np.inf
    penalised_ids = _penalise(work, hist, params)
    killed_by_penalties = _gone(penalised_ids, row, work)
    dry_ids, dry_amounts = _dry(hist, params, dry_breakers)
    if dry_ids.size:
        work[dry_ids] -= dry_amounts
        if dry_breakers is None and params.dry_sequence_breakers:
            notes.append("DRY: its sequence breakers are not applied here, so repeats across them count too")
    if params.grammar_string.strip() or params.json_schema.strip():
        notes.append("The grammar's limits are not shown: it also removes every token that does not fit it")
    changed = np.unique(np.concatenate((banned, penalised_ids, dry_ids)))

    # One partition of the raw row serves 'before' and top_k: a token outside the raw top
    # (k + changed) cannot be in the penalised top k, as k unchanged tokens stay above it.
    k = params.top_k if not params.greedy and 0 < params.top_k < n_vocab else 0
    shortcut = bool(k) and k + changed.size < n_vocab // 4 and order == "llama.cpp"
    first = top_indices(row, max(n_top, k + changed.size) if shortcut else n_top)
    top = first[:n_top]
    watch = top.tolist()
    pool = _Pool(None, work, watch, n_vocab)
    pool.mark(set(watch) & set(banned.tolist()), "ban_eos")
    pool.mark(set(watch) & killed_by_penalties, "penalties")
    pool.mark(set(watch) & _gone(dry_ids, row, work), "dry")

    if params.greedy:
        best = int(np.argmax(work))
        pool.mark((t for t in watch if t != best), "greedy")
        after: tuple[Candidate, ...] = (Candidate(best, 1.0),)
        entropy_after, pool_size = 0.0, 1
    elif order == "transformers":
        after, entropy_after, pool_size = _transformers_warpers(pool, params, n_top, notes)
    else:
        if k:
            if shortcut:
                candidates = np.union1d(first, changed)
                pool.keep(candidates[top_indices(work[candidates], k)], "top_k")
            else:
                pool.keep(top_indices(work, k), "top_k")
        after, entropy_after, pool_size = _truncate(pool, params, n_top, notes)

    before_probs = np.exp(row[top].astype(np.float64) - lse).tolist()
    before = tuple(Candidate(t, p, pool.removed.get(t)) for t, p in zip(watch, before_probs, strict=True))
    touched = set(penalised_ids.tolist()) | set(dry_ids.tolist())
    shown = dict.fromkeys(watch + [c.id for c in after])
    penalised = tuple(t for t in shown if t in touched)
    return SamplerView(before, after, entropy_before, entropy_after, pool_size, penalised, tuple(notes))


def _truncate(
    pool: _Pool, params: SamplingParams, n_top: int, notes: list[str]
) -> tuple[tuple[Candidate, ...], float, int]:
    """typical_p -> top_p -> min_p -> XTC -> temperature on ``pool`` (top_k is done): the 'after'
    list, its entropy in bits and the number of tokens left with a non-zero probability."""
    if params.typical_p < 1.0:
        pool.keep(_typical(pool.vals, params.typical_p, notes), "typical_p")
    if params.top_p < 1.0:
        lse = float(logsumexp(pool.vals))
        pool.keep(_cut(-pool.vals, pool.vals, lse, params.top_p, strict=False), "top_p")
    if params.min_p > 0.0:
        _min_p(pool, params.min_p)
    if params.xtc_probability > 0.0 and params.xtc_threshold <= 0.5 and pool.size >= 2:
        log_floor = (
            float(logsumexp(pool.vals)) + math.log(params.xtc_threshold) if params.xtc_threshold > 0 else -math.inf
        )
        above = np.flatnonzero(pool.vals.astype(np.float64) >= log_floor)
        if above.size >= 2:
            # XTC keeps the least likely of the tokens above the threshold and drops the others.
            may_go = pool.global_ids(above[np.lexsort((above, -pool.vals[above]))][:-1])
            pool.mark(set(may_go.tolist()) & set(pool.watch), "xtc (may)")
            notes.append(
                f"XTC removes the most likely tokens at random ({params.xtc_probability:.0%} of the time): "
                "the view marks those it may remove; 'after' is the draw when it does not"
            )
    return _draw(pool, pool.vals / np.float32(params.temperature), n_top)


def _min_p(pool: _Pool, min_p: float) -> None:
    # p >= min_p * p_max  <=>  logit >= max logit + log(min_p), in float32 as llama.cpp does
    floor = np.float32(pool.vals.max()) + np.float32(math.log(min_p))
    selection = np.flatnonzero(pool.vals >= floor)
    pool.keep(selection if selection.size else top_indices(pool.vals, 1), "min_p")


def _transformers_warpers(
    pool: _Pool, params: SamplingParams, n_top: int, notes: list[str]
) -> tuple[tuple[Candidate, ...], float, int]:
    """transformers' warpers on ``pool`` (penalties done), in ``generate``'s order and with its
    semantics: temperature -> top_k (ties with the k-th logit stay) -> top_p -> min_p -> typical_p,
    each cut made on the distribution the temperature has already reshaped."""
    if params.temperature != 1.0:
        pool.vals = pool.vals / np.float32(params.temperature)
    k = params.top_k
    if 0 < k < pool.size:
        kth = np.partition(pool.vals, pool.size - k)[pool.size - k]
        pool.keep(np.flatnonzero(pool.vals >= kth), "top_k")
    if params.top_p < 1.0:
        lse = float(logsumexp(pool.vals))
        pool.keep(_cut(-pool.vals, pool.vals, lse, params.top_p, strict=False), "top_p")
    if params.min_p > 0.0:
        _min_p(pool, params.min_p)
    if params.typical_p < 1.0:
        pool.keep(_typical(pool.vals, params.typical_p, notes, order="transformers"), "typical_p")
    return _draw(pool, pool.vals, n_top)


def _draw(pool: _Pool, scaled: np.ndarray, n_top: int) -> tuple[tuple[Candidate, ...], float, int]:
    """The distribution the draw uses (``scaled``: the pool's final logits): its top ``n_top``
    candidates, its entropy in bits and how many tokens have a non-zero probability."""
    lse, entropy, pool_size = distribution_stats(scaled)
    best = top_indices(scaled, min(n_top, pool_size))
    probs = np.exp(scaled[best].astype(np.float64) - lse).tolist()
    ids = pool.global_ids(best).tolist()
    return tuple(Candidate(t, p) for t, p in zip(ids, probs, strict=True)), entropy, pool_size
