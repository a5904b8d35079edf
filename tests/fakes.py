"""A scripted Backend for fast unit tests of the services around the loaders.

Every feature also has a test on a real model; this fake only makes the
queueing, cancel and error paths quick and deterministic to test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from webui.errors import ModelLoadError
from webui.loaders.base import Backend, Chunk, StreamExtras
from webui.params import LoadOptions, SamplingParams


class FakeBackend(Backend):
    name: ClassVar[str] = "fake"
    supported_params: ClassVar[frozenset[str]] = frozenset({"max_tokens", "seed", "stop"})
    option_fields: ClassVar[tuple[str, ...]] = ("n_ctx",)
    loads: ClassVar[list[str]] = []
    #: When set, stream() waits on it before each token (lets a test hold a generation open).
    gate: ClassVar[threading.Event | None] = None

    def __init__(self, path: Path, n_ctx: int) -> None:
        self.path, self.n_ctx = path, n_ctx
        self.chat_template, self.metadata = None, {}
        self.closed = False
        self.calls: list[tuple[str, SamplingParams]] = []

    @classmethod
    def check(cls, path: Path, options: LoadOptions) -> None:
        if path.read_bytes().startswith(b"REJECT"):
            raise ModelLoadError(f"{path.name} is not a model")

    @classmethod
    def load(cls, path: Path, options: LoadOptions) -> FakeBackend:
        if path.read_bytes().startswith(b"BAD"):
            raise ModelLoadError(f"{path.name} is broken")
        cls.loads.append(path.name)
        return cls(path, options.n_ctx or 64)

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        self.calls.append((prompt, params))
        cut = max(0, len(prompt) - params.truncation_length) if params.truncation_length else 0
        prompt = prompt[cut:]  # one token a character, cut from the front as the real loaders do
        for i in range(params.max_tokens):
            if self.gate is not None:
                self.gate.wait(5)
            if cancel.is_set():
                yield Chunk("", finish_reason="cancelled", prompt_tokens=len(prompt), prompt_cut=cut)
                return
            yield Chunk(f"{i} ", n_tokens=1)
        yield Chunk("", finish_reason="length", prompt_tokens=len(prompt), prompt_cut=cut)

    def close(self) -> None:
        self.closed = True
