"""ChatService: one chat turn (edit the chat, prepare the prompt on the worker, stream, save)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Literal

from webui.characters.character import Character
from webui.errors import WebUIError
from webui.generation.scheduler import Generator, GenerationStats
from webui.chat.history import Chat, ChatStore, Message
from webui.params import SamplingParams

from webui.chat.prompt import ChatOptions, Persona, Template, build_prompt


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
            from webui.errors import NoModelLoadedError

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
