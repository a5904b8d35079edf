"""The one interface every model loader implements.

A :class:`Backend` is a loaded model. The rest of the app talks to it only
through this interface; what a loader can or cannot do is declared in class
attributes (``capabilities``, ``supported_params``, ``option_fields``), never
discovered by checking class or loader names.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from webui.attachments.types import ImageInput
from webui.errors import ModelLoadError, UnsupportedFeatureError
from webui.params import LoadOptions, SamplingParams

if TYPE_CHECKING:  # numpy and the sampler math load with the first view, not with every loader
    import numpy as np

    from webui.sampling.chain import SamplerView

FinishReason = Literal["stop", "length", "cancelled"]
_Entry = TypeVar("_Entry")


@dataclass(frozen=True)
class TopLogprob:
    """One candidate token at a position, with its log-probability (natural log)."""

    token: str
    logprob: float
    #: The token's UTF-8 bytes (a token may hold part of a character).
    bytes: tuple[int, ...] = ()


@dataclass(frozen=True)
class TokenLogprob:
    """A generated (or, with ``echo``, prompt) token: its log-probability and the top alternatives.

    ``logprob`` is from the model's raw distribution at that position (softmax of the logits at
    temperature 1, before any sampler), as OpenAI reports it. ``top`` is sorted best first and
    holds ``StreamExtras.top_logprobs`` entries (it may or may not contain the token itself).
    A prompt's first token has no distribution: its ``logprob`` is ``None``.
    """

    token: str
    logprob: float | None
    bytes: tuple[int, ...] = ()
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class TokenView:
    """A generated token and what the sampler chain did at its position (``StreamExtras.sampler_views``).

    ``view`` comes from the very logits the token was drawn from, before it was accepted: the
    model's raw candidates, the ones the chain kept, and the penalties that applied. None where
    the loader could not make one for that token.
    """

    #: The token's text as the stream shows it (a broken character as U+FFFD).
    token: str
    id: int
    view: SamplerView | None


@dataclass(frozen=True)
class ToolCallDelta:
    """A tool call a server returned already parsed (the remote loader on a chat server).

    Local loaders return text; the API parses tool calls out of it by the template's format.
    """

    index: int
    id: str | None = None
    name: str | None = None
    #: A piece of the JSON arguments (concatenated over a stream's deltas).
    arguments: str = ""


@dataclass(frozen=True)
class ChatPayload:
    """A request a chat-only server answers itself (``Capabilities.chat_messages``).

    OpenAI-shaped: the messages, and the tools / tool_choice / response_format to pass through
    as they are. Loaders that take a prompt ignore it (they get the rendered prompt instead).
    """

    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    #: Extra top-level body fields for the server (``reasoning_effort``, ``chat_template_kwargs``...).
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class StreamExtras:
    """What a request asks of a generation beyond text and sampling parameters.

    A loader that cannot honour a field raises a ``WebUIError`` saying so (the API checks
    ``Capabilities`` first, so users get a 400 before anything runs).
    """

    #: None: no log-probabilities. 0-20: each generated token's logprob plus that many alternatives.
    top_logprobs: int | None = None
    #: Also return the prompt's tokens with their logprobs (``/v1/completions`` ``echo``).
    echo_logprobs: bool = False
    #: With a grammar (``params.grammar_string``): it applies only from the first match of one of
    #: these regular expressions in the generated text on (a "lazy" grammar: the model writes
    #: freely until it starts a tool call, then the call is constrained). Empty: from the start.
    grammar_triggers: tuple[str, ...] = ()
    #: For loaders with ``Capabilities.chat_messages``: the request as messages.
    chat: ChatPayload | None = None
    #: Images of the prompt, in order: the prompt holds one ``IMAGE_MARKER`` per image where it
    #: goes (``webui.attachments.types``). Only for backends whose ``capabilities.images`` is true;
    #: any other raises ``UnsupportedFeatureError``. (A chat server gets them in ``chat`` instead.)
    images: tuple[ImageInput, ...] = ()
    #: None: no sampler views. n: each generated token gets a ``TokenView`` whose view lists the
    #: top n candidates before and after the sampler chain (``Chunk.views``).
    sampler_views: int | None = None


@dataclass
class Chunk:
    """A piece of generated text. The last chunk of a stream carries ``finish_reason``."""

    text: str
    n_tokens: int = 0
    finish_reason: FinishReason | None = None
    #: Set on the last chunk: how many tokens the prompt had.
    prompt_tokens: int | None = None
    #: Set on the last chunk: tokens cut from the start of the prompt (``truncation_length``).
    prompt_cut: int = 0
    #: With ``StreamExtras.top_logprobs``: one entry per token whose text is in ``text``.
    logprobs: list[TokenLogprob] | None = None
    #: With ``StreamExtras.echo_logprobs``: the prompt's tokens (first chunk only).
    prompt_logprobs: list[TokenLogprob] | None = None
    #: With ``StreamExtras.sampler_views``: one entry per token whose text is in ``text`` (as ``logprobs``).
    views: list[TokenView] | None = None
    #: Reasoning text a server returned apart from the answer (``reasoning_content``).
    reasoning: str = ""
    #: Tool calls a server returned parsed (see :class:`ToolCallDelta`).
    tool_calls: list[ToolCallDelta] | None = None
    #: Set on the last chunk by a server that finished with tool calls.
    finish_tool_calls: bool = False


@dataclass(frozen=True)
class Capabilities:
    """What a loader can do. Code outside ``loaders/`` asks this; it never branches on a loader's name."""

    #: The model is a file or folder in the models folder: its RAM need is checked before loading,
    #: settings are saved per model, and it is loaded again from its path. False: a server's model.
    local_files: bool = True
    #: ``tokenize`` counts exactly (False: it may only estimate; ``Backend.tokens_estimated`` says
    #: whether it had to).
    exact_tokens: bool = True
    #: The output can be constrained by a GBNF grammar (``grammar_string``).
    grammar: bool = False
    #: The loader honours ``StreamExtras.grammar_triggers`` (a grammar that starts at a trigger).
    lazy_grammar: bool = False
    #: Tool calls come back parsed by the server (``Chunk.tool_calls``), not as text to parse.
    tools: bool = False
    #: It sees images (``StreamExtras.images``): a vision model with its projector/processor, or a
    #: chat server that takes ``image_url`` parts. Loaders set it per loaded model.
    images: bool = False
    #: ``StreamExtras.top_logprobs`` / ``echo_logprobs`` are filled in.
    logprobs: bool = False
    #: ``StreamExtras.sampler_views`` are filled in, and ``Backend.next_token_logits`` /
    #: ``token_text`` answer (the model's own logits, on this machine).
    sampler_views: bool = False
    #: It takes the request as messages (``StreamExtras.chat``) and the server applies its own
    #: template: tools and ``response_format`` pass through, no prompt is rendered here.
    chat_messages: bool = False
    #: Sequences it decodes at the same time.
    parallel_sequences: int = 1
    #: Prompt states can be saved to disk and loaded again (``Backend.attach_warm_store``).
    warm_states: bool = False


class ParallelSlots(Protocol):
    """Several requests decoded together (``Backend.parallel``); called only from the generation thread.

    The scheduler starts requests while slots are free, calls ``step`` while any is running (one
    decode for all of them; each request's chunks go out through its ``emit``, the last one with its
    ``finish_reason``), and ``idle`` when nothing is left to do.
    """

    def can_take(self, extras: StreamExtras | None) -> bool:
        """Whether a request with these extras can run in a slot (if not: alone, through ``stream``)."""
        ...

    def free(self) -> int: ...

    def busy(self) -> bool: ...

    def start(
        self,
        prompt: str,
        params: SamplingParams,
        cancel: threading.Event,
        extras: StreamExtras | None,
        emit: Callable[[Chunk], None],
    ) -> None:
        """Place a request in a free slot; raises as ``stream`` would (a prompt too long, a bad grammar)."""
        ...

    def step(self) -> None: ...

    def idle(self) -> None:
        """Nothing runs or waits: a moment for slow housekeeping (saving warm states)."""
        ...

    def reset(self) -> None:
        """Drop every running request and cache (after an error in ``step``)."""
        ...


class Backend(ABC):
    """A loaded model. Not thread-safe: callers serialise access (see ``generation.Generator``)."""

    #: Registry name, shown in the UI and used by ``--loader``.
    name: ClassVar[str]
    #: ``SamplingParams`` fields this loader honours; the UI disables the others.
    supported_params: ClassVar[frozenset[str]]
    #: ``LoadOptions`` fields this loader reads; the Model tab shows only these.
    option_fields: ClassVar[tuple[str, ...]]
    #: What it can do (see :class:`Capabilities`).
    capabilities: ClassVar[Capabilities] = Capabilities()

    #: The model's file or folder; None when it is not on this machine (``capabilities.local_files``).
    path: Path | None
    n_ctx: int
    chat_template: str | None
    metadata: dict[str, Any]
    #: True when ``tokenize`` only estimates (a remote server without a tokenize endpoint).
    tokens_estimated: bool = False
    #: The model name a server serves, for a model that is not a local file.
    served_name: str | None = None

    @classmethod  # noqa: B027 (an optional hook: most loaders check nothing before loading)
    def check(cls, path: Path | None, options: LoadOptions) -> None:
        """Cheap checks before the current model is unloaded (wrong format, missing files).

        Raise ``ModelLoadError`` so an obviously bad file never costs the user the
        model they have loaded.
        """

    @classmethod
    @abstractmethod
    def load(cls, path: Path | None, options: LoadOptions) -> Backend:
        """Load the model at ``path`` (None for a server's model) or raise ``ModelLoadError``."""

    @abstractmethod
    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        """Generate a continuation of ``prompt``.

        Yields text chunks as they are produced; the last chunk has
        ``finish_reason`` set. Checks ``cancel`` between tokens and stops with
        ``finish_reason="cancelled"`` when it is set. ``params.seed`` is never -1
        here (the generation service picks one). ``extras``: see :class:`StreamExtras`.
        """

    def max_token_bytes(self) -> int | None:
        """Bytes in the vocabulary's longest token (None: unknown). A text of B bytes has at least
        B / this many tokens: a cheap bound that refuses a prompt that cannot fit before it is tokenized."""
        return None

    def image_tokens(self, image: ImageInput) -> int:
        """Prompt tokens ``image`` takes for this model (backends with ``capabilities.images``).

        The prompt budget and the context meter count an image as this many tokens in place of
        its marker. Default 0: a backend that cannot see images never gets any.
        """
        return 0

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as this model sees a prompt (with BOS when the model adds one)."""

    def next_token_logits(self, prompt: str) -> np.ndarray:
        """The raw logits of the token after ``prompt`` (a float32 copy of one row of n_vocab), for the
        sampler playground. One forward pass (reusing the cached prefix where the loader keeps one);
        runs on the generation thread. Loaders with ``capabilities.sampler_views`` implement it."""
        raise UnsupportedFeatureError(
            f"The {self.name} loader cannot show the next token's probabilities: it does not give its logits."
        )

    def token_text(self, token: int) -> str:
        """The text of one token id (special tokens written out; a broken character as U+FFFD)."""
        raise UnsupportedFeatureError(f"The {self.name} loader cannot show the text of a token by its id.")

    def parallel(self) -> ParallelSlots | None:
        """Its decoding slots, when it decodes several requests together (None: one at a time, ``stream``)."""
        return None

    def attach_warm_store(self, folder: Path, max_bytes: int) -> None:  # noqa: B027 (optional hook)
        """Keep long prompt prefixes' states in ``folder`` (at most ``max_bytes``) so chats reopen warm,
        also after a restart. Loaders that cannot save a state ignore it (``Capabilities.warm_states``)."""

    @abstractmethod
    def close(self) -> None:
        """Free the model's memory. The backend is unusable afterwards."""


def local_path(path: Path | None) -> Path:
    """The model's file or folder, for loaders that read one (``Capabilities.local_files``)."""
    if path is None:
        raise ModelLoadError("This loader needs a model file or folder: pick one in the models folder.")
    return Path(path)


def find_stop(text: str, stops: list[str]) -> int:
    """Index of the earliest stop string in ``text``, or -1."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else -1


def held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters of ``text`` could be the start of a stop string.

    Those characters are held back from the stream until we know they are not
    part of a stop string, so a stop string never flashes on the screen.
    """
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if s.startswith(text[-n:]):
                longest = n
                break
    return longest


class StopStringFilter:
    """Turns decoded pieces into ``Chunk``s, ending at the first stop string.

    Text that could be the start of a stop string is held back until it is
    known not to be, so a stop string never reaches the screen. Token counts
    travel with the text they produced. Shared by every loader.

    With ``logprobs``, each piece's ``TokenLogprob`` entries travel with it too: a chunk
    carries the entries of the tokens whose text starts in it, and tokens that lie wholly in
    or after a stop string are dropped with their text. ``views`` (``TokenView``s) travel
    the same way.
    """

    def __init__(self, stops: list[str], logprobs: bool = False, views: bool = False) -> None:
        self.stops = [s for s in stops if s]
        self.text = ""
        self.sent = 0
        self.pending_tokens = 0
        self.stopped = False
        self._logprobs: _PerToken[TokenLogprob] | None = _PerToken() if logprobs else None
        self._views: _PerToken[TokenView] | None = _PerToken() if views else None

    def feed(
        self,
        piece: str,
        n_tokens: int = 1,
        logprobs: Sequence[TokenLogprob] = (),
        views: Sequence[TokenView] = (),
    ) -> Chunk | None:
        """Add a piece; return what may be shown now, if anything. Check ``stopped`` after."""
        if self.stopped:
            return None
        start = len(self.text)
        if self._logprobs is not None:
            self._logprobs.add(start, logprobs)
        if self._views is not None:
            self._views.add(start, views)
        self.text += piece
        self.pending_tokens += n_tokens
        at = find_stop(self.text, self.stops)
        if at >= 0:
            self.text = self.text[:at]
            self.stopped = True
            for queue in (self._logprobs, self._views):
                if queue is not None:
                    queue.drop_from(at)
            return None
        visible = len(self.text) - held_back(self.text, self.stops)
        if visible <= self.sent:
            return None
        chunk = Chunk(
            self.text[self.sent : visible],
            n_tokens=self.pending_tokens,
            logprobs=self._logprobs.take(visible) if self._logprobs is not None else None,
            views=self._views.take(visible) if self._views is not None else None,
        )
        self.sent, self.pending_tokens = visible, 0
        return chunk

    def finish(self, reason: FinishReason, prompt_tokens: int, tail: str = "", prompt_cut: int = 0) -> Chunk:
        """The last chunk: whatever was held back (plus ``tail``) unless a stop string ended it."""
        if not self.stopped:
            self.text += tail
        chunk = Chunk(
            self.text[self.sent :],
            n_tokens=self.pending_tokens,
            finish_reason=reason,
            prompt_tokens=prompt_tokens,
            prompt_cut=prompt_cut,
            logprobs=self._logprobs.take(None) if self._logprobs is not None else None,
            views=self._views.take(None) if self._views is not None else None,
        )
        self.sent, self.pending_tokens = len(self.text), 0
        return chunk


class _PerToken(Generic[_Entry]):
    """Per-token entries (logprobs, views) not sent yet, each with where its token's text starts."""

    def __init__(self) -> None:
        self._queue: list[tuple[int, _Entry]] = []

    def add(self, start: int, entries: Sequence[_Entry]) -> None:
        self._queue.extend((start, entry) for entry in entries)

    def drop_from(self, at: int) -> None:
        """Forget the tokens whose text starts at or after ``at`` (cut by a stop string)."""
        self._queue = [(start, entry) for start, entry in self._queue if start < at]

    def take(self, before: int | None) -> list[_Entry]:
        """Entries of the tokens whose text starts before ``before`` (None: all), removed from the queue."""
        cut = len(self._queue)
        if before is not None:
            cut = next((i for i, (start, _) in enumerate(self._queue) if start >= before), cut)
        taken, self._queue = self._queue[:cut], self._queue[cut:]
        return [entry for _, entry in taken]


def truncate_prompt(tokens: list[int], limit: int, bos: int | None = None) -> list[int]:
    """Keep the last ``limit`` tokens (0 = no limit), and the BOS token if the prompt had one."""
    if limit <= 0 or len(tokens) <= limit:
        return tokens
    if bos is not None and tokens and tokens[0] == bos and limit > 1:
        return [bos, *tokens[len(tokens) - limit + 1 :]]
    return tokens[len(tokens) - limit :]
