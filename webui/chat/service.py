"""ChatService: one chat turn (edit the chat, prepare the prompt on the worker, stream, save).

A turn is a job of the generation queue whose prepare step renders the chat for the model that
will answer it, on the generation thread: the template is that model's (or the one chosen for
it), the budget is its context, the tokens are counted by its tokenizer. What the preparation
found (prompt, token count, dropped turns, lorebook entries, template note) comes back on the
:class:`Turn`, never on the service, so two people chatting at once each see their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Literal, cast

from webui.agents.reasoning import THINK, ReasoningSplitter
from webui.characters.character import Character
from webui.chat.history import Chat, ChatStore, Message
from webui.chat.prompt import ChatOptions, Persona, Prompt, Template, build_prompt, context_limit
from webui.errors import MessageNotFoundError, NoModelLoadedError, WebUIError
from webui.generation.scheduler import GenerationJob, GenerationStats, Generator, Prepared
from webui.loaders.base import ChatPayload, StreamExtras
from webui.models.manager import LoadedModel
from webui.params import SamplingParams

Action = Literal["send", "regenerate", "continue", "impersonate"]
#: The chat template for a loaded model, and the note saying which and why.
TemplateChooser = Callable[[LoadedModel], tuple[Template, str]]


class Turn:
    """One running chat turn. Iterate it for the reply text as it grows (the whole text each time).

    A reasoning model's thinking is split from the reply as it streams (by the markers of its
    template): ``text`` and what iterating yields are the reply alone, ``reasoning`` the thinking
    so far, ``thinking`` whether the model is still in it. Both are saved with the reply, apart.

    ``prompt`` (what was sent: text, tokens, dropped turns, fired lore, template note) is set once
    the generation thread has prepared it; ``stats`` once the reply has ended.
    """

    def __init__(
        self,
        service: ChatService,
        chat: Chat,
        action: Action,
        job: GenerationJob,
        reply: Message,
        prefix: str,
        undo: Callable[[], None],
        *,
        answered: bool = False,
        reasoning: str = "",
    ) -> None:
        self.chat = chat
        self.action = action
        self.job = job
        self._service = service
        self._reply = reply
        self._prefix = prefix
        self._undo = undo
        # A Continue of a reply whose thinking is done: the new text is all reply, the thinking stays.
        self._answered = answered
        self.text = prefix
        self.reasoning = reasoning
        self.thinking = False

    @property
    def prompt(self) -> Prompt | None:
        prepared = self.job.prepared
        return prepared.detail if prepared is not None else None

    @property
    def stats(self) -> GenerationStats | None:
        return self.job.stats

    def _splitter(self) -> tuple[ReasoningSplitter, str]:
        """The splitter for this turn's output, and the reply prefix as the model "wrote" it (fed first)."""
        prompt = self.prompt
        if prompt is None:
            return ReasoningSplitter(THINK, answered=self._answered), self._prefix
        answered = self._answered or prompt.thinking_closed
        return ReasoningSplitter(prompt.reasoning, prompt.thinking_open, answered=answered), prompt.reply_prefix

    def __iter__(self) -> Iterator[str]:
        store, chat, reply = self._service.store, self.chat, self._reply
        writes_chat = self.action != "impersonate"
        generated = ""
        content = ""
        splitter: ReasoningSplitter | None = None
        last_save = time.monotonic()

        def take(pieces: tuple[str, str]) -> None:
            nonlocal content
            self.reasoning += pieces[0]
            content += pieces[1]

        def begin() -> ReasoningSplitter:
            # The job is prepared by now: the prompt says how this model marks its thinking.
            splitter, fed = self._splitter()
            take(splitter.feed(fed))
            return splitter

        try:
            for chunk in self.job:
                if not chunk.text and not chunk.reasoning:
                    continue
                splitter = splitter or begin()
                generated += chunk.text
                self.reasoning += chunk.reasoning  # a server that split it already
                take(splitter.feed(chunk.text))
                self.thinking = splitter.had_reasoning and not splitter.closed
                self._show(content)
                if writes_chat:
                    reply.set_text(self.text)
                    reply.set_reasoning(self.reasoning)
                    if time.monotonic() - last_save > self._service.SAVE_EVERY:
                        store.save(chat)
                        last_save = time.monotonic()
                yield self.text
            if splitter is None and self.job.prepared is not None:
                splitter = begin()  # the model wrote nothing: the reply is its prefix
            if splitter is not None:
                take(splitter.finish())
                self._show(content)
        finally:
            self.thinking = False
            if writes_chat:
                if self.job.prepared is None and not generated:
                    # The turn never ran (no model, a prompt that cannot fit...): leave no empty reply.
                    self._undo()
                else:
                    reply.set_text(self.text.rstrip())
                    reply.set_reasoning(self.reasoning.strip())
                    if self.job.stats is not None:
                        reply.stats = stats_dict(self.job.stats)
                store.save(chat)

    def _show(self, content: str) -> None:
        # "Name: text" puts a space after the colon; the reply itself starts at the text.
        self.text = content if self._prefix else content.lstrip()

    def result(self) -> str:
        """Run to the end and return the reply."""
        for _ in self:
            pass
        return self.text


class ChatService:
    """Runs chat turns: edits the chat, queues a job that prepares its prompt, streams, saves as it goes."""

    #: Seconds between saves while a reply streams (the user message is saved at once).
    SAVE_EVERY = 1.0

    def __init__(self, generator: Generator, store: ChatStore, choose_template: TemplateChooser) -> None:
        self.generator = generator
        self.store = store
        self.choose_template = choose_template

    def turn(
        self,
        chat: Chat,
        action: Action,
        *,
        text: str = "",
        character: Character,
        options: ChatOptions,
        params: SamplingParams,
        template: Template | None = None,
        cancel: threading.Event | None = None,
        reply_prefix: str = "",
    ) -> Turn:
        """Start one action; iterate the returned :class:`Turn` to stream the reply.

        ``send`` adds ``text`` as a user message first (saved before anything is generated);
        ``regenerate`` writes a new version of the last reply (older versions are kept);
        ``continue`` extends the last reply; ``impersonate`` writes the user's next message
        and returns it without adding it to the chat. ``template`` None: the template chosen
        for the model that answers (its own, or the one saved for it).
        """
        if action == "send" and not text.strip():
            raise WebUIError("Type a message first.")
        last = chat.messages[-1] if chat.messages else None
        if action in ("regenerate", "continue") and (last is None or last.role != "assistant"):
            raise WebUIError("There is no reply to regenerate or continue yet.")
        if self.generator.models.current is None:
            # Checked again on the generation thread; here so that a turn that cannot run changes nothing.
            raise NoModelLoadedError()
        undo: Callable[[], None] = lambda: None  # noqa: E731
        answered, kept_reasoning, thinking_prefix = False, "", None
        if action == "send":
            chat.messages.append(Message("user", text))
            if chat.title == "New chat":
                chat.title = text.strip().splitlines()[0][:60]
            self.store.save(chat)
        if action == "send" or (action == "regenerate" and last is None):
            reply = Message("assistant", reply_prefix)
            history = list(chat.messages)
            chat.messages.append(reply)
            prefix = reply_prefix

            def undo() -> None:
                if chat.messages and chat.messages[-1] is reply:
                    chat.messages.pop()
        elif action == "regenerate":
            assert last is not None
            previous = last.active
            last.add_version(reply_prefix)
            reply, history, prefix = last, chat.messages[:-1], reply_prefix

            def undo() -> None:
                if len(reply.versions) > 1 and reply.active == len(reply.versions) - 1:
                    reply.versions.pop()
                    reply.select(previous)
        elif action == "continue":
            assert last is not None
            reply, history, prefix = last, chat.messages[:-1], last.content
            if not last.content and last.reasoning:
                # Cut off while thinking: the model goes on thinking (the prompt ends inside its block).
                thinking_prefix = last.reasoning
            else:
                answered, kept_reasoning = True, last.reasoning
        else:  # impersonate: the model writes as the user
            reply, history, prefix = Message("user", reply_prefix), list(chat.messages), reply_prefix
        if action == "impersonate":
            speaker = Character(options.persona.name, options.persona.description)
            persona = Persona(character.name, character.fill(character.context, options.persona.name))
            options = ChatOptions("chat", "", persona, options.chat_instruct_command)
        else:
            speaker = character

        def prepare(loaded: LoadedModel, run_params: SamplingParams) -> Prepared:
            backend = loaded.backend
            if template is None:
                chosen, note = self.choose_template(loaded)
            else:
                chosen, note = template, ""
            recorder = None
            if backend.capabilities.chat_messages:
                # A chat server applies its own template: it gets the messages ours was rendered from.
                recorder = _RecordingTemplate(chosen)
                chosen = cast(Template, recorder)

            def build(reply_prefix: str) -> Prompt:
                return build_prompt(
                    chat,
                    history,
                    speaker,
                    options,
                    chosen,
                    n_ctx=context_limit(backend.n_ctx, run_params.truncation_length),
                    max_new_tokens=run_params.max_tokens,
                    tokenize=backend.tokenize,
                    reply_prefix=reply_prefix,
                )

            if thinking_prefix is None:
                prompt = build(prefix)
            else:
                prompt = build(thinking_prefix)
                if not prompt.thinking_open:  # the template does not open the block: the prefix does
                    prompt = build(f"{prompt.reasoning.start}\n{thinking_prefix}")
            prompt = replace(prompt, tokens_estimated=backend.tokens_estimated, template_note=note)
            extras = StreamExtras(chat=ChatPayload(tuple(recorder.messages))) if recorder is not None else None
            return Prepared(
                prompt.text, stop=prompt.stop, tokens=prompt.tokens, front_cut=False, detail=prompt, extras=extras
            )

        job = self.generator.submit(params=params, cancel=cancel, prepare=prepare)
        return Turn(self, chat, action, job, reply, prefix, undo, answered=answered, reasoning=kept_reasoning)


def stats_dict(stats: GenerationStats) -> dict:
    return {
        "tokens": stats.completion_tokens,
        "tokens_per_second": round(stats.tokens_per_second, 1),
        "ttft": round(stats.ttft_seconds, 3) if stats.ttft_seconds is not None else None,
        "model": stats.model,
        "seed": stats.seed,
        "finish_reason": stats.finish_reason,
    }


def greeting_message(character: Character, user: str) -> Message | None:
    """The message that opens a chat: the greeting, with the alternate greetings as its other versions."""
    greetings = character.greetings(user)
    if not greetings:
        return None
    return Message("assistant", greetings[0], versions=greetings)


def remove_last(chat: Chat) -> str:
    """Remove the last exchange (the last reply and the user message before it).

    Returns the removed user text, so the UI can put it back in the input box.
    """
    removed = ""
    if chat.messages and chat.messages[-1].role == "assistant":
        chat.messages.pop()
    if chat.messages and chat.messages[-1].role == "user":
        removed = chat.messages.pop().content
    chat.context_start = min(chat.context_start, max(0, len(chat.messages) - 1))
    return removed


def edit_message(chat: Chat, index: int, text: str) -> None:
    """Change one message in place; the messages after it stay."""
    if not 0 <= index < len(chat.messages):
        raise MessageNotFoundError(f"There is no message number {index + 1} in this chat.")
    chat.messages[index].set_text(text)


def switch_version(chat: Chat, index: int, delta: int) -> Message:
    """Show the previous (-1) or next (+1) version of a regenerated reply."""
    if not 0 <= index < len(chat.messages):
        raise MessageNotFoundError(f"There is no message number {index + 1} in this chat.")
    message = chat.messages[index]
    message.select(message.active + delta)
    return message


class _RecordingTemplate:
    """A template that remembers the messages of its last render (for a server that takes messages)."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.messages: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.template, name)

    def render(self, messages: list[dict[str, Any]], **kwargs: Any) -> str:
        self.messages = [dict(m) for m in messages]
        return self.template.render(messages, **kwargs)
