"""Speculative decoding with a draft model: a smaller model with the same vocabulary guesses the next tokens.

The draft model (the ``draft_model`` load option, e.g. a 0.5B model of the family beside its 7B) has a
context of its own with one sequence per slot. Each generation step, a slot asks it for up to
``draft_max`` tokens: it catches up with what the slot's sequence holds (only the tokens it has not read
yet), then writes greedily, and stops early where it is unsure (its best token below ``DRAFT_P_MIN``).
The main model evaluates those tokens with the slot's next token in one decode, and the slot keeps
those its own sampler draws anyway (``SlotEngine._take_tokens``): the text is the main model's, the draft
only decides how many tokens one step yields. It pays when the main model is several times slower per
token than the draft and the draft is often right.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from webui.errors import ModelLoadError
from webui.loaders.llama_slots import common_prefix

log = logging.getLogger(__name__)

#: The draft stops writing at a token it gives less than this probability (each wrong draft widens the
#: main model's decode for nothing).
DRAFT_P_MIN = 0.5


class DraftModel:
    """A loaded draft model: its own context with ``n_slots`` sequences, one per slot of the main model."""

    def __init__(self, llm: Any, path: Path, n_slots: int, n_ctx: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self._llm = llm
        self._lib = llama_cpp
        self.path = path
        self.n_ctx = n_ctx
        self._n_vocab = int(llm.n_vocab())
        self._n_batch = int(llm.n_batch)
        self._batch = _internals.LlamaBatch(n_tokens=self._n_batch, embd=0, n_seq_max=1, verbose=False)
        #: The tokens each sequence holds (positions 0..len-1).
        self._cached: list[list[int]] = [[] for _ in range(n_slots)]

    @classmethod
    def load(cls, path: Path, target: Any, n_slots: int, n_ctx: int, threads: int, n_gpu_layers: int) -> DraftModel:
        """Load the draft beside ``target`` (the main model's ``Llama``); ``ModelLoadError`` when it cannot
        be read or its vocabulary is not the main model's."""
        from llama_cpp import Llama, _internals

        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                n_batch=min(512, n_ctx),
                flash_attn=True,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load the draft model {path.name}: {exc}.",
                key="error.draft_failed",
                name=path.name,
                detail=str(exc),
            ) from exc
        try:
            mismatch = vocabulary_mismatch(target, llm)
            if mismatch:
                raise ModelLoadError(
                    f"{path.name} cannot draft for this model: {mismatch}. A draft model must be of the same "
                    "family (the same tokenizer), e.g. a smaller size of it.",
                    key="error.draft_vocabulary",
                    name=path.name,
                    detail=mismatch,
                )
            if n_slots > 1:
                params = llm.context_params
                params.n_seq_max = n_slots
                params.n_ctx = llm.n_ctx() * n_slots
                llm._ctx.close()
                llm._ctx = llm._stack.enter_context(
                    contextlib.closing(_internals.LlamaContext(model=llm._model, params=params))
                )
        except BaseException:
            llm.close()
            raise
        return cls(llm, path, n_slots, n_ctx)

    def propose(self, seq: int, history: Sequence[int], n: int) -> list[int]:
        """Up to ``n`` tokens the draft expects after ``history`` (the slot's tokens, ending with the one the
        main model evaluates next), written greedily into sequence ``seq``."""
        n = min(n, self.n_ctx - len(history))
        if n <= 0 or not history:
            return []
        cached = self._cached[seq]
        keep = min(common_prefix(cached, history), len(history) - 1)  # the last one is read for its logits
        if keep < len(cached):
            memory = self._lib.llama_get_memory(self._llm._ctx.ctx)
            if not self._lib.llama_memory_seq_rm(memory, seq, keep, -1):
                self._lib.llama_memory_seq_rm(memory, seq, 0, -1)
                keep = 0
            del cached[keep:]
        for start in range(keep, len(history), self._n_batch):
            self._decode(seq, history[start : start + self._n_batch], start, len(history))
        cached[len(cached) :] = history[keep:]
        drafts: list[int] = []
        while True:
            token, p = self._best()
            if p < DRAFT_P_MIN:
                break
            drafts.append(token)
            if len(drafts) >= n:
                break
            self._decode(seq, [token], len(cached), len(cached) + 1)
            cached.append(token)
        return drafts

    def close(self) -> None:
        self._batch.close()
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    # --- inside ----------------------------------------------------------------------------------------
    def _decode(self, seq: int, tokens: Sequence[int], pos: int, end: int) -> None:
        """Evaluate ``tokens`` at positions from ``pos``; logits for the token at ``end - 1`` only."""
        batch = self._batch.batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = pos + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = pos + i == end - 1
        code = self._lib.llama_decode(self._llm._ctx.ctx, batch)
        if code != 0:
            self._cached[seq] = []
            memory = self._lib.llama_get_memory(self._llm._ctx.ctx)
            self._lib.llama_memory_seq_rm(memory, seq, 0, -1)
            raise RuntimeError(f"the draft model could not decode (llama_decode returned {code})")

    def _best(self) -> tuple[int, float]:
        """The most likely next token after the last decode, and its probability."""
        import numpy as np

        pointer = self._lib.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        token = int(np.argmax(logits))
        p = 1.0 / float(np.exp(logits - logits[token]).sum())
        return token, p


def draft_path(model_path: Path, choice: str) -> Path | None:
    """The draft model file for the ``draft_model`` option of the model at ``model_path`` (None: no draft).

    A file name (or a path inside the folder, without ``..``): in the model's folder, else in the folder
    holding it (the models folder when the model has a folder of its own). An absolute path: a file in one of
    those two folders (the model manager passes the models-folder path of a name from the model list).
    Raises ``ModelLoadError`` for anything else, before a model is read.
    """
    choice = (choice or "").strip()
    if not choice or choice.lower() == "none":
        return None
    model_path = Path(model_path)
    folder = model_path if model_path.is_dir() else model_path.parent
    places = [Path(os.path.normpath(folder.absolute()))]
    places.append(places[0].parent)
    given = Path(choice).expanduser()
    if given.is_absolute():
        target = Path(os.path.normpath(given))
        if not any(target.is_relative_to(place) for place in places):
            raise ModelLoadError(
                f"The draft model {given} is not in the model's folder ({folder}) or the folder holding it. "
                "Put it next to the model and pick it by name.",
                key="error.draft_outside",
                name=str(given),
                folder=str(folder),
            )
        found = [target]
    elif ".." in given.parts or choice in (".",):
        raise ModelLoadError(
            f"The draft model {choice!r} must be a file name in the model's folder ({folder}) or the models folder.",
            key="error.draft_name",
            name=choice,
            folder=str(folder),
        )
    else:
        found = [place / given for place in places]
    target = next((p for p in found if p.is_file()), found[0])
    if not target.is_file():
        raise ModelLoadError(
            f"The draft model {choice} is not in the model's folder ({folder}) or the models folder.",
            key="error.draft_missing",
            name=choice,
            folder=str(folder),
        )
    if target.resolve() == model_path.resolve():
        raise ModelLoadError(
            f"{target.name} is the model itself: a draft model must be a smaller one of the same family.",
            key="error.draft_itself",
            name=target.name,
        )
    if target.suffix.lower() != ".gguf":
        raise ModelLoadError(
            f"The draft model {target.name} is not a .gguf file: the llama.cpp loader drafts with GGUF models.",
            key="error.draft_not_gguf",
            name=target.name,
        )
    return target


def vocabulary_mismatch(target: Any, draft: Any) -> str:
    """Why ``draft`` cannot propose tokens for ``target`` (two ``Llama``), or "" when their vocabularies match."""
    n_target, n_draft = int(target.n_vocab()), int(draft.n_vocab())
    if n_target != n_draft:
        return f"its vocabulary has {n_draft} tokens, the model's has {n_target}"
    t_model, d_model = target._model, draft._model
    for token in range(n_target):
        if t_model.token_get_text(token) != d_model.token_get_text(token):
            return f"token {token} is {d_model.token_get_text(token)!r} there, {t_model.token_get_text(token)!r} here"
    return ""
