"""A reasoning model's thinking in chat turns on the real SmolLM2: split from the reply as it streams,
stored apart, never sent back.

SmolLM2 is no reasoning model, and a greedy tiny model does not close a think block by itself: the
turns use a ChatML template whose generation prompt opens ``<think>`` (as Qwen3's and DeepSeek-R1's
do) and a reply prefix that ends the thinking, so the model writes the answer; or a prefix that
only opens the block, so everything it writes is thinking.
"""

from __future__ import annotations

import pytest

from harness import smollm_generator
from webui.chat.history import ChatStore
from webui.chat.prompt import Character, ChatOptions
from webui.chat.service import ChatService
from webui.params import SamplingParams
from webui.templates.chat_template import ChatTemplate

pytestmark = pytest.mark.integration

THINKING_CHATML = ChatTemplate.compile(
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}",
    "thinking-chatml",
)
THOUGHT = "A geography question: answer in one short sentence."


@pytest.fixture(scope="module")
def service(smollm_path, tmp_path_factory):
    for gen in smollm_generator(smollm_path, tmp_path_factory, n_ctx=1024):
        yield ChatService(gen, ChatStore(tmp_path_factory.mktemp("chats")), lambda loaded: (THINKING_CHATML, ""))


def run(service, chat, text, *, prefix="", max_tokens=24, template=None, thinking=None):
    turn = service.turn(
        chat,
        "send",
        text=text,
        character=Character("Assistant", ""),
        options=ChatOptions(system_prompt="You are a helpful assistant.", thinking=thinking),
        params=SamplingParams(do_sample=False, max_tokens=max_tokens),
        template=template,
        reply_prefix=prefix,
    )
    shown = list(turn)
    return turn, shown


def test_thinking_is_stored_apart_and_the_next_prompt_has_only_the_answer(service):
    chat = service.store.new("Assistant")
    turn, shown = run(service, chat, "What is the capital of France?", prefix=f"{THOUGHT}\n</think>\n\n")
    assert turn.prompt.thinking_open  # the template opened the block
    assert turn.reasoning == THOUGHT
    # (the model may well say the same sentence again in its answer: the thought itself is not in the text)
    assert "Paris" in turn.text and "think>" not in turn.text and not turn.text.startswith(THOUGHT + "\n")
    assert all("think>" not in s for s in shown)  # never on screen, not even while streaming

    saved = service.store.load("Assistant", chat.id).messages[-1]
    assert saved.reasoning == THOUGHT and saved.content == turn.text.rstrip()

    second, _ = run(service, chat, "And of Italy?")
    sent = second.prompt.text
    assert saved.content in sent  # the answer goes back to the model...
    assert THOUGHT not in sent  # ...its thinking does not
    assert sent.endswith("<|im_start|>assistant\n<think>\n")


def test_a_block_that_never_closes_is_all_thinking(service):
    from testdata import PROJECT_DIR
    from webui.templates.chat_template import InstructionTemplateStore, choose_template

    loaded = service.generator.models.current
    own, _ = choose_template(
        loaded.backend.chat_template, None, InstructionTemplateStore(PROJECT_DIR / "instruction-templates")
    )
    chat = service.store.new("Assistant")
    # the model's own template: the prefix opens the block, the reply is cut before anything closes it
    turn, _ = run(service, chat, "Why is the sky blue?", prefix="<think>\n", max_tokens=12, template=own)
    assert not turn.prompt.thinking_open and turn.prompt.text.endswith("<think>\n")
    saved = service.store.load("Assistant", chat.id).messages[-1]
    # (it ends with the length limit or its end-of-turn token: either way the block never closed)
    assert saved.content == "" and len(saved.reasoning) > 10 and "<think>" not in saved.reasoning


def test_thinking_switched_off_reaches_the_template(service):
    chat = service.store.new("Assistant")
    turn, _ = run(service, chat, "What is the capital of France?", thinking=False)
    assert turn.prompt.text.endswith("<think>\n\n</think>\n\n") and not turn.prompt.thinking_open
    saved = service.store.load("Assistant", chat.id).messages[-1]
    assert saved.reasoning == "" and "Paris" in saved.content
