"""Conversations: prompt building per mode, context truncation, and one chat turn.

Modes, as text-generation-webui defines them:
- ``instruct``: the messages go through the model's chat template (system prompt first).
- ``chat``: a plain transcript ``Name: text`` after the character's context; the model
  writes the character's next line.
- ``chat-instruct``: that transcript wrapped in an instruction ("Continue the chat dialogue
  below...") sent through the chat template.

Truncation drops whole old turns, in steps, and remembers where the kept part starts
(``Chat.context_start``), so the prompt prefix stays the same from one turn to the next and
llama.cpp reuses its KV cache (DESIGN.md rule 7). The system prompt and character are
always kept.

A character card adds to this: its ``system_prompt`` replaces the System prompt box (unless
empty), fired lorebook entries go before/after the character's description, and its
``post_history_instructions`` go after the history, right before the reply. ``Prompt.lore``
says which lorebook entries fired, for the prompt view.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from .catalogue import Keyed
from .characters import Character
from .errors import PromptTooLongError, WebUIError
from .generation import Generator, GenerationStats
from .history import Chat, ChatStore, Message
from .lorebook import MAX_SCAN_DEPTH, NOTHING, Activation, activate
from .params import SamplingParams

Mode = Literal["instruct", "chat", "chat-instruct"]
MODES: tuple[str, ...] = ("instruct", "chat", "chat-instruct")
DEFAULT_CHAT_INSTRUCT = ('Continue the chat dialogue below. Write a single reply for the character '
                         '"<|character|>".\n\n<|prompt|>')


class Template(Protocol):
    def render(self, messages: list[dict], *, add_generation_prompt: bool = True, **extra: object) -> str: ...


@dataclass
class Persona:
    """Who the user is in a chat: a name and, optionally, a short description."""

    name: str = "You"
    description: str = ""


@dataclass
class ChatOptions:
    mode: Mode = "instruct"
    system_prompt: str = ""
    persona: Persona = field(default_factory=Persona)
    chat_instruct_command: str = DEFAULT_CHAT_INSTRUCT


@dataclass
class Prompt:
    text: str
    stop: list[str]
    tokens: int
    #: Messages of the chat left out because the context is full (the oldest ones).
    dropped: int
    #: The lorebook entries that fired for this prompt.
    lore: Activation = field(default_factory=lambda: NOTHING)

    @property
    def note(self) -> str:
        if not self.dropped:
            return ""
        return Keyed(f"{self.dropped} oldest messages no longer fit in the context and are not sent.",
                     "chat.note_dropped", n=self.dropped)


def _system_text(character: Character, options: ChatOptions, lore: Activation = NOTHING) -> str:
    user = options.persona.name
    parts = [character.system_prompt_with(options.system_prompt, user).strip(),
             character.system_text(user, lore_before=lore.text("before"), lore_after=lore.text("after"))]
    if options.persona.description.strip():
        parts.append(f"{user}: {options.persona.description.strip()}")
    return "\n\n".join(p for p in parts if p)


def _transcript(messages: list[Message], character: Character, options: ChatOptions, lore: Activation,
                system: str) -> str:
    """``Name: text`` lines after the character (and ``system`` on top, which may be empty)."""
    user = options.persona.name
    names = {"user": user, "assistant": character.name}
    lines = [f"{names[m.role]}: {m.content}" for m in messages if m.role in names]
    head = "\n\n".join(p for p in (system.strip(), _system_text(replace(character, system_prompt=""),
                                                                ChatOptions(persona=options.persona), lore)) if p)
    after = character.fill(character.post_history_instructions, user).strip()
    return "\n".join(([head] if head else []) + lines + ([after] if after else []))


def render(messages: list[Message], character: Character, options: ChatOptions, template: Template,
           reply_prefix: str = "", lore: Activation = NOTHING) -> tuple[str, list[str]]:
    """The prompt text and the stop strings for ``messages`` (the kept part of a chat)."""
    user, char = options.persona.name, character.name
    if options.mode == "instruct":
        msgs = [{"role": "system", "content": s} for s in [_system_text(character, options, lore)] if s]
        msgs += [{"role": m.role, "content": m.content} for m in messages if m.role in ("user", "assistant")]
        after = character.fill(character.post_history_instructions, user).strip()
        if after:
            _add_after_history(msgs, after)
        return _render_folding_system(template, msgs) + reply_prefix, []
    stops = [f"\n{user}:", f"\n{char}:"]
    if options.mode == "chat":
        # The System prompt box is not used in chat mode (as before); a card's own system prompt is.
        transcript = _transcript(messages, character, options, lore, character.system_prompt_with("", user))
        return f"{transcript}\n{char}:" + (f" {reply_prefix}" if reply_prefix else ""), stops
    transcript = _transcript(messages, character, options, lore, "")
    command = options.chat_instruct_command.replace("<|character|>", char).replace("<|prompt|>", transcript)
    system = character.system_prompt_with(options.system_prompt, user).strip()
    msgs = [{"role": "system", "content": s} for s in [system] if s]
    msgs.append({"role": "user", "content": command})
    return _render_folding_system(template, msgs) + reply_prefix, stops


def _add_after_history(msgs: list[dict], text: str) -> None:
    """Put ``text`` after the history: appended to the last user message (every template accepts that)."""
    for m in reversed(msgs):
        if m["role"] == "user":
            m["content"] = f"{m['content']}\n\n{text}"
            return
        if m["role"] == "assistant":
            break
    msgs.append({"role": "user", "content": text})


def _render_folding_system(template: Template, msgs: list[dict]) -> str:
    """Render; a template that refuses system messages gets the system text in the first user turn."""
    try:
        return template.render(msgs, add_generation_prompt=True)
    except WebUIError as exc:
        if getattr(exc, "code", "") != "conversation_rejected" or not msgs or msgs[0]["role"] != "system":
            raise
        system, rest = msgs[0]["content"], msgs[1:]
        for i, m in enumerate(rest):
            if m["role"] == "user":
                rest = [*rest[:i], {"role": "user", "content": f"{system}\n\n{m['content']}"}, *rest[i + 1:]]
                break
        return template.render(rest, add_generation_prompt=True)


def build_prompt(chat: Chat, history: list[Message], character: Character, options: ChatOptions,
                 template: Template, *, n_ctx: int, max_new_tokens: int, tokenize: Callable[[str], list[int]],
                 reply_prefix: str = "") -> Prompt:
    """Render the prompt for ``history`` (the chat's messages up to the reply being written).

    When it does not fit in ``n_ctx - max_new_tokens``, the oldest whole turns are dropped
    in steps of about a quarter of the kept messages, and ``chat.context_start`` remembers
    the new start so the next turns begin with the same prefix.
    """
    # Room for the reply: max_new_tokens, but never more than half the context (a long reply is
    # then cut at the context end instead of making every prompt impossible).
    budget = max(1, n_ctx - min(max_new_tokens, n_ctx // 2))
    start = min(chat.context_start, _last_user_index(history))
    # The lorebook looks at the newest messages only, which truncation never drops.
    lore = activate(character.character_book, [m.content for m in history[-MAX_SCAN_DEPTH:]],
                    count_tokens=lambda t: len(tokenize(t)), default_budget=max(64, n_ctx // 4))
    while True:
        text, stops = render(history[start:], character, options, template, reply_prefix, lore)
        n = len(tokenize(text))
        if n <= budget:
            chat.context_start = start
            return Prompt(text, stops, n, start, lore)
        nxt = _next_turn(history, start + max(2, (len(history) - start) // 4))
        if nxt is None or nxt > _last_user_index(history):
            raise PromptTooLongError(n, n_ctx)
        start = nxt


def _last_user_index(history: list[Message]) -> int:
    for i in range(len(history) - 1, -1, -1):
        if history[i].role == "user":
            return i
    return 0


def _next_turn(history: list[Message], index: int) -> int | None:
    """The first user message at or after ``index`` (a turn boundary)."""
    for i in range(index, len(history)):
        if history[i].role == "user":
            return i
    return None


Action = Literal["send", "regenerate", "continue", "impersonate"]


class ChatService:
    """Runs chat turns: edits the chat, builds the prompt, streams the reply, saves as it goes."""

    #: Seconds between saves while a reply streams (the user message is saved at once).
    SAVE_EVERY = 1.0

    def __init__(self, generator: Generator, store: ChatStore) -> None:
        self.generator = generator
        self.store = store

    def turn(self, chat: Chat, action: Action, *, text: str = "", character: Character, options: ChatOptions,
             template: Template, params: SamplingParams, cancel: threading.Event | None = None,
             reply_prefix: str = "") -> Iterator[str]:
        """Do one action and stream the reply text as it grows (the whole reply each time).

        ``send`` adds ``text`` as a user message first (saved before anything is generated);
        ``regenerate`` writes a new version of the last reply (older versions are kept);
        ``continue`` extends the last reply; ``impersonate`` writes the user's next message
        and returns it without adding it to the chat.
        """
        if action == "send":
            if not text.strip():
                raise WebUIError("Type a message first.")
            chat.messages.append(Message("user", text))
            if chat.title == "New chat":
                chat.title = text.strip().splitlines()[0][:60]
            self.store.save(chat)
        last = chat.messages[-1] if chat.messages else None
        if action in ("regenerate", "continue") and (last is None or last.role != "assistant"):
            raise WebUIError("There is no reply to regenerate or continue yet.")
        if action in ("send",) or (action == "regenerate" and last is None):
            reply = Message("assistant", reply_prefix)
            history = list(chat.messages)
            chat.messages.append(reply)
            prefix = reply_prefix
        elif action == "regenerate":
            assert last is not None
            last.add_version(reply_prefix)
            reply, history, prefix = last, chat.messages[:-1], reply_prefix
        elif action == "continue":
            assert last is not None
            reply, history, prefix = last, chat.messages[:-1], last.content
        else:  # impersonate: the model writes as the user
            reply, history, prefix = Message("user", reply_prefix), list(chat.messages), reply_prefix
        current = self.generator.models.current
        if current is None:
            from .errors import NoModelLoadedError

            raise NoModelLoadedError()
        backend = current.backend
        if action == "impersonate":
            swapped = Character(options.persona.name, options.persona.description)
            persona = Persona(character.name, character.fill(character.context, options.persona.name))
            opts = ChatOptions("chat", "", persona, options.chat_instruct_command)
            prompt = build_prompt(chat, history, swapped, opts, template, n_ctx=backend.n_ctx,
                                  max_new_tokens=params.max_tokens, tokenize=backend.tokenize, reply_prefix=prefix)
        else:
            prompt = build_prompt(chat, history, character, options, template, n_ctx=backend.n_ctx,
                                  max_new_tokens=params.max_tokens, tokenize=backend.tokenize, reply_prefix=prefix)
        params = params.model_copy(update={"stop": [*params.stop, *prompt.stop]})
        job = self.generator.submit(prompt.text, params, cancel)
        self.last_prompt = prompt
        generated = ""
        shown = prefix
        last_save = time.monotonic()
        try:
            for chunk in job:
                if not chunk.text:
                    continue
                generated += chunk.text
                # "Name: text" puts a space after the colon; the reply itself starts at the text.
                shown = prefix + (generated if prefix else generated.lstrip())
                if action != "impersonate":
                    reply.set_text(shown)
                    if time.monotonic() - last_save > self.SAVE_EVERY:
                        self.store.save(chat)
                        last_save = time.monotonic()
                yield shown
        finally:
            if action != "impersonate":
                reply.set_text(shown.rstrip())
                if job.stats is not None:
                    reply.stats = stats_dict(job.stats)
                self.store.save(chat)


def stats_dict(stats: GenerationStats) -> dict:
    return {"tokens": stats.completion_tokens, "tokens_per_second": round(stats.tokens_per_second, 1),
            "ttft": round(stats.ttft_seconds, 3) if stats.ttft_seconds is not None else None,
            "model": stats.model, "seed": stats.seed, "finish_reason": stats.finish_reason}


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
        raise WebUIError(f"There is no message number {index + 1} in this chat.")
    chat.messages[index].set_text(text)


def switch_version(chat: Chat, index: int, delta: int) -> Message:
    """Show the previous (-1) or next (+1) version of a regenerated reply."""
    if not 0 <= index < len(chat.messages):
        raise WebUIError(f"There is no message number {index + 1} in this chat.")
    message = chat.messages[index]
    message.select(message.active + delta)
    return message
