"""What the samplers do, as one service the UI calls: a generation whose tokens carry what the sampler
chain did (the Notebook's "Show probabilities"), the sampler playground's one forward pass, and the
perplexity of a text.

Everything goes through the generation queue: a generation is a job like any other (its prepare step
asks the loader for ``StreamExtras.sampler_views``), the playground's forward pass and the lookup of
candidates' texts are functions run on the generation thread (:meth:`Generator.call`), so a model is
never read on one thread while it decodes on another, nor after it was unloaded. The sampler math
itself is ``webui.sampling``: the playground re-applies it to the cached logits on every slider move,
with no new forward pass (:class:`Playground` counts them, for the page to show).

Works with any generator that has ``submit``/``call``/``models`` (the shared queue or a user's view of
it), so a user's limits and turn in the queue apply here too.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from webui.errors import EmptyPromptError, UnsupportedFeatureError
from webui.generation.scheduler import GenerationJob, Prepared
from webui.loaders.base import Backend, Chunk, StreamExtras, TokenLogprob, TokenView
from webui.models.manager import LoadedModel, ModelManager
from webui.params import SamplingParams

if TYPE_CHECKING:  # numpy and the sampler math load with the first view, not with the app
    import numpy as np

    from webui.sampling.chain import SamplerView

#: Candidates a view lists before and after the chain (the Notebook's table, the playground's bars).
DEFAULT_CANDIDATES = 10
#: Texts looked up with the playground's forward pass: the best raw candidates (a slider seldom brings
#: a token from further down into the top ten; one that does is looked up then).
_PLAYGROUND_TEXTS = 256

#: What a generation's probabilities show: the whole sampler view (local loaders), only the model's
#: candidates before the samplers (a server that returns top_logprobs), or nothing (a server without;
#: also a generation whose server, asked for logprobs, answered without them).
ViewKind = Literal["views", "before", "none"]


class GeneratorLike(Protocol):
    """The generation queue as this module uses it (``Generator`` or a user's ``UsersQueue``)."""

    models: ModelManager

    def submit(self, *args: Any, **kwargs: Any) -> GenerationJob: ...

    def call(self, fn: Any) -> Any: ...


def view_kind(backend: Backend) -> ViewKind:
    """What the Notebook's probabilities can show with ``backend``."""
    if backend.capabilities.sampler_views:
        return "views"
    if backend.capabilities.logprobs:
        return "before"
    return "none"


def current_view_kind(models: ModelManager) -> ViewKind | None:
    """:func:`view_kind` of the loaded model (None: no model loaded), for the UI's notes."""
    current = models.current
    return view_kind(current.backend) if current is not None else None


def _texts_on_thread(generator: GeneratorLike, backend: Backend, ids: Iterable[int]) -> dict[int, str]:
    """The texts of ``ids``, read on the generation thread while ``backend`` is still the loaded model
    (after a switch the old model's vocabulary is gone: nothing is read then)."""
    wanted = sorted({int(i) for i in ids if i >= 0})
    if not wanted:
        return {}

    def lookup() -> dict[int, str]:
        current = generator.models.current
        if current is None or current.backend is not backend:
            return {}
        return {i: backend.token_text(i) for i in wanted}

    found: dict[int, str] = generator.call(lookup)
    return found


# ----- the Notebook: a generation with views -------------------------------------------------------------
@dataclass
class ViewedGeneration:
    """A generation whose tokens carry what the sampler chain did; iterate it for its chunks.

    ``tokens`` grows as the chunks arrive (one :class:`TokenView` per generated token); ``texts`` holds
    the texts of the candidates known so far (every candidate's once :meth:`resolve_texts` has run).
    It is also what the page keeps to branch: :meth:`branch_text`.
    """

    prompt: str
    n: int
    job: GenerationJob | None = None
    generator: GeneratorLike | None = None
    kind: ViewKind = "views"
    tokens: list[TokenView] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    #: Set by the prepare step, on the generation thread: the model that runs the job.
    backend: Backend | None = None
    #: "before"-only views (a server's top_logprobs) name candidates by text: each text gets an id < 0.
    _text_ids: dict[str, int] = field(default_factory=dict)
    #: Whether any text came (with "before" views: text with no logprobs means the server sent none).
    _wrote: bool = False

    def __iter__(self) -> Iterator[Chunk]:
        assert self.job is not None, "submit it with generate_with_views"
        for chunk in self.job:
            self.collect(chunk)
            yield chunk

    @property
    def text(self) -> str:
        """The generated text so far."""
        return self.job.text if self.job is not None else ""

    def collect(self, chunk: Chunk) -> None:
        """Keep the views (or, from a server, the logprobs) of ``chunk``'s tokens."""
        for view in chunk.views or ():
            self.tokens.append(view)
            self.texts.setdefault(view.id, view.token)
        if not chunk.views and chunk.logprobs:
            self.tokens.extend(self._from_logprobs(entry) for entry in chunk.logprobs)
        self._wrote = self._wrote or bool(chunk.text)
        if chunk.finish_reason is not None and self.kind == "before" and self._wrote and not self.tokens:
            # Asked for logprobs, the server answered text without them: say it cannot, as for a server
            # known not to send them (an empty view would look like a page that failed to draw).
            self.kind = "none"

    def _from_logprobs(self, entry: TokenLogprob) -> TokenView:
        """A token a server returned with its top_logprobs: a view with only the 'before' candidates
        (the drawn token among them, with its own logprob, when it was not one of the top ones)."""
        from webui.sampling.chain import Candidate, SamplerView

        before = [Candidate(self._text_id(top.token), math.exp(top.logprob)) for top in entry.top]
        drawn = self._text_id(entry.token)
        if entry.logprob is not None and all(c.id != drawn for c in before):
            before.append(Candidate(drawn, math.exp(entry.logprob)))
            before.sort(key=lambda c: c.prob, reverse=True)
        probs = [c.prob for c in before]
        entropy = -sum(p * math.log2(p) for p in probs if p > 0)  # of the top ones only: a lower bound
        view = SamplerView(tuple(before), (), entropy, 0.0, 0, ())  # no "after": the server does not say
        return TokenView(entry.token, drawn, view)

    def _text_id(self, text: str) -> int:
        found = self._text_ids.get(text)
        if found is None:
            found = self._text_ids[text] = -1 - len(self._text_ids)
            self.texts[found] = text
        return found

    def candidate_ids(self) -> set[int]:
        """Every token id the views name (drawn tokens and candidates)."""
        ids = {t.id for t in self.tokens}
        for token in self.tokens:
            if token.view is not None:
                ids.update(c.id for c in token.view.before)
                ids.update(c.id for c in token.view.after)
        return ids

    def resolve_texts(self) -> None:
        """Look up the texts of the candidates not known yet, on the generation thread (after the
        generation: while it runs, the thread is busy with it)."""
        missing = [i for i in self.candidate_ids() if i not in self.texts]
        if missing and self.backend is not None and self.generator is not None:
            self.texts.update(_texts_on_thread(self.generator, self.backend, missing))

    def branch_text(self, index: int, candidate: int) -> str:
        """The text up to generated token ``index`` with ``candidate`` in its place: where the
        Notebook continues from when a candidate is clicked."""
        if not 0 <= index < len(self.tokens):
            raise IndexError(index)
        if candidate not in self.texts:
            self.resolve_texts()
        head = "".join(t.token for t in self.tokens[:index])
        generated = self.text
        # The tokens' own texts show a character split across tokens as U+FFFD; the stream's text has it whole.
        if "\ufffd" in head and len(generated) >= len(head):
            head = generated[: len(head)]
        return self.prompt + head + self.texts.get(candidate, "")


def generate_with_views(
    generator: GeneratorLike,
    prompt: str,
    params: SamplingParams,
    cancel: threading.Event | None = None,
    n: int = DEFAULT_CANDIDATES,
) -> ViewedGeneration:
    """Queue a generation of ``prompt`` (raw text, as the Notebook sends it) whose tokens carry sampler
    views of ``n`` candidates. A server that returns top_logprobs gives 'before'-only views; one that
    does not gives none (the generation runs all the same: ``kind`` says which, once it has started;
    a server that was asked for them and answered without turns it to "none" at the end)."""
    if not prompt:
        raise EmptyPromptError()
    viewed = ViewedGeneration(prompt=prompt, n=n, generator=generator)

    def prepare(loaded: LoadedModel, params: SamplingParams) -> Prepared:
        viewed.backend = loaded.backend
        viewed.kind = view_kind(loaded.backend)
        if viewed.kind == "views":
            extras: StreamExtras | None = StreamExtras(sampler_views=n)
        elif viewed.kind == "before":
            extras = StreamExtras(top_logprobs=n)
        else:
            extras = None
        return Prepared(prompt, extras=extras)

    viewed.job = generator.submit(params=params, cancel=cancel, prepare=prepare)
    return viewed


# ----- the sampler playground --------------------------------------------------------------------------
@dataclass(frozen=True)
class NextToken:
    """The raw logits of the token after a prompt, from one forward pass, and what the math needs."""

    logits: np.ndarray
    #: The prompt's token ids: the playground's penalties count them as if they had been written.
    history: tuple[int, ...]
    #: Texts of the best raw candidates, read with the forward pass.
    texts: dict[int, str]
    model: str
    backend: Backend


def playground_logits(generator: GeneratorLike, prompt: str) -> NextToken:
    """One forward pass over ``prompt`` on the loaded model, on the generation thread (in turn with the
    queued jobs): its next-token logits, the prompt's ids and the texts of its best candidates."""
    import numpy as np

    if not prompt:
        raise EmptyPromptError()

    def forward() -> NextToken:
        with generator.models.use() as loaded:
            backend = loaded.backend
            if not backend.capabilities.sampler_views:
                raise UnsupportedFeatureError(
                    f"The {loaded.loader} loader does not give its logits: the sampler playground needs a model "
                    "loaded on this machine (llama.cpp or transformers).",
                    key="sampling.no_logits",
                    loader=loaded.loader,
                )
            logits = np.asarray(backend.next_token_logits(prompt), dtype=np.float32)
            history = tuple(backend.tokenize(prompt))
            k = min(_PLAYGROUND_TEXTS, logits.size)
            best = np.argpartition(logits, -k)[-k:]
            texts = {int(i): backend.token_text(int(i)) for i in best}
            return NextToken(logits, history, texts, loaded.name, backend)

    result: NextToken = generator.call(forward)
    return result


@dataclass(frozen=True)
class PlaygroundView:
    """The sampler chain on the playground's cached logits, with the texts of its candidates."""

    view: SamplerView
    texts: dict[int, str]


class Playground:
    """One page's sampler playground: :meth:`compute` makes one forward pass, :meth:`apply` re-applies the
    sampler math to its logits as often as the sliders move, without another."""

    def __init__(self) -> None:
        self.next: NextToken | None = None
        #: Forward passes made for this page (the page shows it: moving a slider never adds one).
        self.forward_passes = 0

    def compute(self, generator: GeneratorLike, prompt: str) -> NextToken:
        self.next = playground_logits(generator, prompt)
        self.forward_passes += 1
        return self.next

    def apply(self, params: SamplingParams, generator: GeneratorLike, n: int = DEFAULT_CANDIDATES) -> PlaygroundView:
        """The chain with ``params`` on the cached logits (call :meth:`compute` first)."""
        from webui.sampling.chain import sample_view

        found = self.next
        if found is None:
            raise ValueError("no logits yet: compute first")
        view = sample_view(found.logits, params, found.history, n_top=n)
        shown = {c.id for c in view.before} | {c.id for c in view.after}
        missing = [i for i in shown if i not in found.texts]
        if missing:  # a penalty brought a token from far down: read its text (the dict is this page's)
            found.texts.update(_texts_on_thread(generator, found.backend, missing))
        return PlaygroundView(view, {i: found.texts.get(i, f"#{i}") for i in shown})


# ----- perplexity --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PerplexityResult:
    """A text's perplexity on a model and each token's log-probability (natural log; None for the first
    token, which nothing came before)."""

    tokens: list[tuple[str, float | None]]
    perplexity: float
    model: str = ""

    @property
    def scored(self) -> int:
        """Tokens the perplexity is over (all but the first)."""
        return sum(1 for _, lp in self.tokens if lp is not None)


def evaluate_perplexity(generator: GeneratorLike, text: str) -> PerplexityResult:
    """The perplexity of ``text`` on the loaded model: exp of the mean negative log-likelihood of its
    tokens, each given the ones before it (the API's ``echo`` logprobs, one pass over the text).

    The whole text must fit the context (nothing is cut from its start: a cut text would be scored
    on less than the user gave).
    """
    from webui.sampling.perplexity import perplexity

    if not text:
        raise EmptyPromptError()

    def prepare(loaded: LoadedModel, params: SamplingParams) -> Prepared:
        if not loaded.backend.capabilities.logprobs:
            raise UnsupportedFeatureError(
                f"The {loaded.loader} loader does not return log-probabilities: perplexity needs them.",
                key="sampling.no_perplexity",
                loader=loaded.loader,
            )
        return Prepared(text, front_cut=False, extras=StreamExtras(top_logprobs=0, echo_logprobs=True))

    # One greedy token after the text: the pass over the text is what is wanted.
    params = SamplingParams(max_tokens=1, do_sample=False, repeat_penalty=1.0, dry_multiplier=0.0)
    job = generator.submit(params=params, prepare=prepare)
    entries: list[TokenLogprob] = []
    for chunk in job:
        entries.extend(chunk.prompt_logprobs or ())
    value = perplexity(e.logprob for e in entries)  # refuses a text of one token: nothing predicts it
    model = job.stats.model if job.stats is not None else ""
    return PerplexityResult([(e.token, e.logprob) for e in entries], value, model)


def surprises(result: PerplexityResult) -> Sequence[float | None]:
    """Each token's surprise in bits (None for the first)."""
    from webui.sampling.perplexity import surprise_bits

    return [None if lp is None else surprise_bits(lp) for _, lp in result.tokens]
