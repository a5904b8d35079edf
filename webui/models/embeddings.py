"""The embedding model: loaded next to the chat model, for ``POST /v1/embeddings`` (RAG clients).

It is a model of its own, not the chat model's: a small sentence-embedding model (a GGUF, or a
sentence-transformers folder) beside whatever chats. One thread of its own loads it, runs it and frees
it, so two requests never run on it at once, and llama.cpp's OpenMP workers stay with the thread that
made them (on another thread decoding slows down: see ``Generator.call``). It may run while the chat
model generates: llama.cpp gives it a context of its own, and neither touches the other's.

:meth:`EmbeddingModels.embed` takes texts (or token ids of this model's own vocabulary), refuses what
would be cut or wrong without a word (an input longer than the model takes, unless ``truncate``; an
empty text; token ids outside the vocabulary), embeds in batches (checking ``cancel`` between them)
and returns L2-normalised vectors by default, with the number of tokens embedded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from webui.errors import (
    EmbeddingCancelled,
    EmbeddingInputError,
    InputTooLongError,
    ModelNotFoundError,
    NoEmbeddingModelError,
)
from webui.models.embedders import Embedder, open_embedder
from webui.models.manager import release_free_memory
from webui.settings import Settings
from webui.storage import safe_name

log = logging.getLogger(__name__)

#: Most inputs one request may send (OpenAI's limit too).
MAX_INPUTS = 2048
#: Most characters of text one request may send, all inputs together.
MAX_TOTAL_CHARS = 2_000_000
#: Most tokens one request may embed, all inputs together (OpenAI's limit too).
MAX_TOTAL_TOKENS = 300_000
#: The longest input an embedding model is loaded for unless told otherwise (at most its own context).
DEFAULT_CTX: int = Settings.model_fields["embedding_ctx_size"].default

Opener = Callable[[Path, int], Embedder]
Input = str | Sequence[int]
T = TypeVar("T")


@dataclass(frozen=True)
class EmbeddingModelInfo:
    """What the loaded embedding model is (the UI's status line, the API's ``model`` field)."""

    name: str
    kind: str
    dims: int
    n_ctx: int
    pooling: str
    path: Path
    load_seconds: float

    def describe(self) -> str:
        return (
            f"{self.name} on {self.kind}: {self.dims} dimensions, {self.pooling} pooling, "
            f"up to {self.n_ctx} tokens per input, loaded in {self.load_seconds:.1f} s"
        )


class Embeddings(NamedTuple):
    """The answer of :meth:`EmbeddingModels.embed`: one vector per input, in order."""

    vectors: list[list[float]]
    prompt_tokens: int
    #: The model that made them (it may change between two requests).
    model: str


class EmbeddingModels:
    """The one embedding model of the app (or none): load, unload, embed."""

    def __init__(self, model_dir: Path, ctx_size: int = DEFAULT_CTX, opener: Opener = open_embedder) -> None:
        self.model_dir = Path(model_dir)
        #: The longest input in tokens a model is loaded for (at most its trained context).
        self.ctx_size = ctx_size
        self._opener = opener
        #: The one thread that loads, runs and frees the model (in turn: loads wait for a running request).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedding-model")
        self._loaded: tuple[EmbeddingModelInfo, Embedder] | None = None

    def _on_worker(self, fn: Callable[[], T]) -> T:
        return self._worker.submit(fn).result()

    @property
    def current(self) -> EmbeddingModelInfo | None:
        loaded = self._loaded
        return loaded[0] if loaded is not None else None

    def path_of(self, name: str, allow_path: bool = False) -> Path:
        """The model called ``name`` in the models folder; with ``allow_path`` (the command line) a path too."""
        if allow_path and ("/" in name or "\\" in name):
            candidate = Path(name).expanduser()
            if candidate.exists():
                return candidate.resolve()
        path = self.model_dir / safe_name(name, what="model name")
        if not path.exists():
            raise ModelNotFoundError(
                f"No model called {name!r} in {self.model_dir}. Put a .gguf embedding model or a "
                "sentence-transformers folder there (python download-model.py --starter minilm fetches one)."
            )
        return path

    def load(self, name: str, *, allow_path: bool = False) -> EmbeddingModelInfo:
        """Load ``name`` instead of the current model; if it fails, the current one stays loaded."""
        path = self.path_of(name, allow_path)

        def load() -> EmbeddingModelInfo:
            started = time.monotonic()
            embedder = self._opener(path, self.ctx_size)
            info = EmbeddingModelInfo(
                name=path.name,
                kind=embedder.kind,
                dims=embedder.dims,
                n_ctx=embedder.n_ctx,
                pooling=embedder.pooling,
                path=path,
                load_seconds=time.monotonic() - started,
            )
            old, self._loaded = self._loaded, (info, embedder)
            if old is not None:
                old[1].close()
                release_free_memory()
            return info

        info = self._on_worker(load)
        log.info("Embedding model: %s", info.describe())
        return info

    def unload(self) -> None:
        def unload() -> None:
            old, self._loaded = self._loaded, None
            if old is not None:
                old[1].close()
                release_free_memory()

        self._on_worker(unload)

    def close(self) -> None:
        """Free the model and stop the thread (the app is stopping)."""
        self.unload()
        self._worker.shutdown(wait=False)

    def embed(
        self,
        inputs: Sequence[Input],
        *,
        truncate: bool = False,
        normalize: bool = True,
        cancel: threading.Event | None = None,
    ) -> Embeddings:
        """One vector per input: texts, or token-id lists of this model's own vocabulary (used as given)."""
        check_inputs(inputs)
        return self._on_worker(lambda: self._embed(inputs, truncate, normalize, cancel))

    def _embed(
        self, inputs: Sequence[Input], truncate: bool, normalize: bool, cancel: threading.Event | None
    ) -> Embeddings:
        if self._loaded is None:
            raise NoEmbeddingModelError()
        info, embedder = self._loaded
        if cancel is not None and cancel.is_set():  # gone while waiting for an earlier request
            raise EmbeddingCancelled("Cancelled: the client went away before the embeddings were done.")
        sequences = [self._tokens(embedder, info, i, item, truncate) for i, item in enumerate(inputs)]
        total = sum(len(s) for s in sequences)
        if total > MAX_TOTAL_TOKENS:
            raise EmbeddingInputError(
                f"The inputs are {total} tokens together; one request may send at most {MAX_TOTAL_TOKENS}. "
                "Send them in several requests."
            )
        raw: list[Any] = [None] * len(sequences)
        for group in batches([len(s) for s in sequences], embedder):
            if cancel is not None and cancel.is_set():
                raise EmbeddingCancelled("Cancelled: the client went away before the embeddings were done.")
            for index, vector in zip(group, embedder.embed_tokens([sequences[i] for i in group]), strict=True):
                raw[index] = vector
        return Embeddings(finish(raw, normalize), total, info.name)

    @staticmethod
    def _tokens(embedder: Embedder, info: EmbeddingModelInfo, index: int, item: Input, truncate: bool) -> list[int]:
        if isinstance(item, str):
            tokens = embedder.tokenize(item)
            keep_ends = True
        else:
            tokens = [int(t) for t in item]
            bad = next((t for t in tokens if not 0 <= t < embedder.n_vocab), None)
            if bad is not None:
                raise EmbeddingInputError(
                    f"Input {index} holds the token id {bad}, which this model's vocabulary does not have "
                    f"(ids 0-{embedder.n_vocab - 1}). Token ids must come from the embedding model's own tokenizer."
                )
            keep_ends = False  # ids are used exactly as given
        if not tokens:
            raise EmbeddingInputError(f"Input {index} has no tokens: send some text.")
        if len(tokens) <= embedder.n_ctx:
            return tokens
        if not truncate:
            raise InputTooLongError(index, len(tokens), embedder.n_ctx, info.name)
        if keep_ends and embedder.n_prefix + embedder.n_suffix < embedder.n_ctx:
            # BERT's [CLS] ... [SEP]: the end marker stays, as the model saw it in training
            body = embedder.n_ctx - embedder.n_suffix
            return tokens[:body] + (tokens[len(tokens) - embedder.n_suffix :] if embedder.n_suffix else [])
        return tokens[: embedder.n_ctx]


def check_inputs(inputs: Sequence[Input]) -> None:
    """What can be refused before the model is touched: no inputs, too many, too much text, empty texts."""
    if not inputs:
        raise EmbeddingInputError("No input: send a text or a list of texts.")
    if len(inputs) > MAX_INPUTS:
        raise EmbeddingInputError(
            f"{len(inputs)} inputs in one request; at most {MAX_INPUTS} are taken. Send them in several requests."
        )
    chars = sum(len(item) for item in inputs if isinstance(item, str))
    if chars > MAX_TOTAL_CHARS:
        raise EmbeddingInputError(
            f"The inputs are {chars} characters together; one request may send at most {MAX_TOTAL_CHARS}. "
            "Send them in several requests."
        )
    for i, item in enumerate(inputs):
        if isinstance(item, str) and not item:
            raise EmbeddingInputError(f"Input {i} is an empty string: every input needs some text.")
        if not isinstance(item, str) and not len(item):
            raise EmbeddingInputError(f"Input {i} is an empty list of token ids.")


def batches(lengths: list[int], embedder: Embedder) -> list[list[int]]:
    """Indexes of the sequences, grouped into batches the embedder takes (longest first, so that a
    padded batch holds sequences of about one length)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    groups: list[list[int]] = []
    current: list[int] = []
    cost = 0
    for i in order:
        n = lengths[i]
        # sorted longest first: in a padded batch every sequence costs as much as the first one
        added = (lengths[current[0]] if current else n) if embedder.padded else n
        if current and (len(current) >= embedder.batch_sequences or cost + added > embedder.batch_tokens):
            groups.append(current)
            current, cost, added = [], 0, n
        current.append(i)
        cost += added
    if current:
        groups.append(current)
    return groups


def finish(raw: list[Any], normalize: bool) -> list[list[float]]:
    """The vectors as float32 values in Python lists, L2-normalised (a zero vector stays zero)."""
    import numpy as np

    matrix = np.stack(raw).astype(np.float32)
    if normalize:
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    return matrix.tolist()
