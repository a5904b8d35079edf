"""The request pipeline: a job is prepared on the generation thread, for the model that runs it.

Fast tests on the scripted FakeBackend; tests/integration/test_chat_real.py has the same on SmolLM2.
"""

from __future__ import annotations

import threading
import time
from itertools import pairwise

import pytest

from fakes import FakeBackend
from webui.characters.character import Character
from webui.chat.history import ChatStore, Message
from webui.chat.prompt import ChatOptions
from webui.chat.service import ChatService
from webui.errors import PromptTooLongError
from webui.generation.cancel import Cancels
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams


class NamedTemplate:
    """A template that writes which model it was rendered for, so a test can see who prepared a prompt."""

    stop_strings: list[str] = []

    def __init__(self, model: str) -> None:
        self.model = model

    def render(self, messages, *, add_generation_prompt=True, **extra):
        body = "".join(f"[{m['role']}] {m['content']}\n" for m in messages)
        return f"<for {self.model}>\n{body}[assistant] "


@pytest.fixture
def models(tmp_path, loaders):
    d = tmp_path / "models"
    d.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (d / name).write_bytes(b"GGUF ok")
    manager = ModelManager(d, LoadOptions(n_ctx=400), loaders=loaders)
    manager.load("a.gguf", "fake")
    return manager


@pytest.fixture
def service(models, tmp_path):
    return ChatService(
        Generator(models),
        ChatStore(tmp_path / "chats"),
        lambda loaded: (NamedTemplate(loaded.name), f"template of {loaded.name}"),
    )


def wait_until(condition, timeout=5.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_a_load_queued_before_the_turn_runs_gets_a_prompt_for_the_new_model(service, models):
    gen = service.generator
    FakeBackend.gate = threading.Event()
    busy = gen.submit("someone else's long request", SamplingParams(max_tokens=2))  # holds the worker
    wait_until(lambda: gen.active is busy)
    switch = threading.Thread(target=lambda: gen.call(lambda: models.load("b.gguf", "fake")))
    switch.start()  # a model switch waits behind the running request
    wait_until(lambda: gen.waiting() == 1)
    chat = service.store.new("Bot")
    turn = service.turn(
        chat,
        "send",
        text="Hello",
        character=Character("Bot"),
        options=ChatOptions(),
        params=SamplingParams(max_tokens=3),
    )  # sent while a.gguf is still loaded
    FakeBackend.gate.set()
    reply = list(turn)[-1]
    switch.join(5)
    assert turn.stats.model == "b.gguf"
    assert turn.prompt.text.startswith("<for b.gguf>") and turn.prompt.template_note == "template of b.gguf"
    assert reply.strip() == "0 1 2" and chat.messages[-1].content == reply.strip()


def test_two_people_chatting_at_once_each_get_their_own_prompt_and_meter(service):
    FakeBackend.gate = threading.Event()
    short_chat, long_chat = service.store.new("Bot"), service.store.new("Bot")
    for i in range(40):  # far more than the 400-character context: old turns must be dropped
        long_chat.messages += [Message("user", f"question {i} " * 3), Message("assistant", f"answer {i} " * 3)]
    params = SamplingParams(max_tokens=2)
    first = service.turn(
        short_chat, "send", text="Hi", character=Character("Bot"), options=ChatOptions(), params=params
    )
    second = service.turn(
        long_chat, "send", text="And now?", character=Character("Bot"), options=ChatOptions(), params=params
    )
    done = threading.Thread(target=lambda: list(second))
    done.start()
    FakeBackend.gate.set()
    list(first)
    done.join(5)
    assert first.prompt.dropped == 0 and first.prompt.note == "" and "Hi" in first.prompt.text
    assert second.prompt.dropped > 0 and second.prompt.note and "And now?" in second.prompt.text
    assert first.prompt.tokens == len(first.prompt.text) and second.prompt.tokens == len(second.prompt.text)
    assert not hasattr(service, "last_prompt")


def test_truncation_length_shrinks_the_chat_budget_instead_of_cutting_the_prompt(service):
    chat = service.store.new("Bot")
    options = ChatOptions(system_prompt="RULES: answer in French.")
    params = SamplingParams(max_tokens=2, truncation_length=200)  # the context (400) is larger
    prompts = []
    for i in range(8):
        turn = service.turn(
            chat, "send", text=f"message number {i} " * 2, character=Character("Bot"), options=options, params=params
        )
        list(turn)
        prompts.append(turn.prompt)
        assert turn.stats.prompt_cut == 0  # the loader never cut it from the front
        assert turn.stats.prompt_tokens == turn.prompt.tokens <= 200
        assert turn.prompt.text.startswith("<for a.gguf>\n[system] RULES: answer in French.")
    assert prompts[-1].dropped > 0 and prompts[-1].n_ctx == 200
    # between two drops the next prompt starts with the whole previous one (the KV cache prefix is reused)
    stable = [(a, b) for a, b in pairwise(prompts) if a.dropped == b.dropped]
    assert stable and all(b.text.startswith(a.text) for a, b in stable)


def test_raw_text_longer_than_truncation_length_is_cut_from_the_front_with_a_count(service):
    job = service.generator.submit("x" * 150, SamplingParams(max_tokens=1, truncation_length=100))
    job.result()
    assert job.stats.prompt_cut == 50 and job.stats.prompt_tokens == 100


def test_a_turn_that_cannot_run_leaves_no_empty_reply(service, models):
    chat = service.store.new("Bot")
    list(
        service.turn(
            chat,
            "send",
            text="Hi",
            character=Character("Bot"),
            options=ChatOptions(),
            params=SamplingParams(max_tokens=2),
        )
    )
    huge = "y" * 1000  # cannot fit the 400-token context whatever is dropped
    with pytest.raises(PromptTooLongError):
        list(
            service.turn(
                chat,
                "send",
                text=huge,
                character=Character("Bot"),
                options=ChatOptions(),
                params=SamplingParams(max_tokens=2),
            )
        )
    saved = service.store.load("Bot", chat.id)
    assert [m.role for m in saved.messages] == ["user", "assistant", "user"]  # the message, no empty reply


def test_one_page_stop_cancels_only_that_pages_generations():
    cancels = Cancels()
    mine, other = cancels.start("page-1"), cancels.start("page-2")
    assert cancels.stop("page-1") and mine.is_set() and not other.is_set()
    cancels.end("page-1", mine)
    assert not cancels.stop("page-1") and cancels.running("page-2") == 1


@pytest.mark.parametrize(
    "action,text,says",
    [("send", "", "Type a message first"), ("regenerate", "", "no reply to regenerate"), ("continue", "", "no reply")],
)
def test_a_chat_action_the_chat_is_not_ready_for_is_a_typed_error(service, action, text, says):
    """Stable code for the page and the API, and nothing saved."""
    from webui.errors import ChatActionError

    chat = service.store.new("Bot")
    with pytest.raises(ChatActionError, match=says) as caught:
        list(
            service.turn(
                chat,
                action,
                text=text,
                character=Character("Bot"),
                options=ChatOptions(),
                params=SamplingParams(max_tokens=2),
            )
        )
    assert caught.value.code == "invalid_chat_action"
    assert not chat.messages
