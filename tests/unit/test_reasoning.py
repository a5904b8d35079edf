"""Reasoning split from the answer: styles by template, prompts that open the block, streaming splits."""

from __future__ import annotations

import pytest

from webui.agents.reasoning import (
    COMMAND_R7B,
    HARMONY,
    KIMI,
    MAGISTRAL,
    STYLES,
    THINK,
    ReasoningSplitter,
    ReasoningStyle,
    closes_in_prompt,
    opens_in_prompt,
    reasoning_style,
    split,
    template_has_thinking_switch,
    thinking_kwargs,
)
from webui.errors import UnsupportedFeatureError
from webui.templates.chat_template import ChatTemplate

# Shortened, but with the parts that matter, from the families' own templates.
QWEN3 = (
    "{%- for message in messages %}{%- if message.role == 'assistant' %}{%- set content = "
    "message.content.split('</think>')[-1].lstrip('\\n') %}{%- else %}{%- set content = message.content %}"
    "{%- endif %}{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}{%- endif %}"
)
R1_DISTILL = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{'<｜User｜>' + message['content']}}"
    "{% elif message['role'] == 'assistant' %}{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
)
MAGISTRAL_TPL = "{{ '[SYSTEM_PROMPT]First draft your thinking process ([THINK]...[/THINK])[/SYSTEM_PROMPT]' }}"
KIMI_TPL = "{%- if add_generation_prompt -%}<|im_assistant|>assistant<|im_middle|>◁think▷{%- endif -%}"
COMMAND_TPL = "{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|>' }}{{ '<|END_THINKING|>' }}"
GPT_OSS_TPL = (
    "{%- if reasoning_effort is defined %}Reasoning: {{ reasoning_effort }}{% endif %}"
    "{{- '<|start|>assistant<|channel|>analysis<|message|>' + thinking + '<|end|>' }}"
    "{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def stream(text: str, style: ReasoningStyle, started: bool = False, cuts: list[int] | None = None) -> tuple[str, str]:
    """Feed ``text`` in pieces cut at ``cuts`` (every character when None)."""
    splitter = ReasoningSplitter(style, started)
    bounds = [0, *(cuts if cuts is not None else range(1, len(text))), len(text)]
    reasoning = content = ""
    for a, b in zip(bounds, bounds[1:], strict=False):
        r, c = splitter.feed(text[a:b])
        reasoning, content = reasoning + r, content + c
    r, c = splitter.finish()
    return reasoning + r, content + c


@pytest.mark.parametrize(
    ("source", "style"),
    [
        (QWEN3, THINK),
        (R1_DISTILL, THINK),
        (MAGISTRAL_TPL, MAGISTRAL),
        (KIMI_TPL, KIMI),
        (COMMAND_TPL, COMMAND_R7B),
        (GPT_OSS_TPL, HARMONY),
    ],
)
def test_style_is_read_off_the_template(source, style):
    assert reasoning_style(source) is style
    assert reasoning_style(source, fallback=False) is style


def test_any_other_template_gets_the_think_style_unless_asked_not_to():
    assert reasoning_style(CHATML) is THINK and reasoning_style(None) is THINK
    assert reasoning_style(CHATML, fallback=False) is None


def test_a_prompt_that_opens_the_block_is_seen():
    r1 = ChatTemplate.compile(R1_DISTILL, "r1").render([{"role": "user", "content": "Hi"}])
    assert opens_in_prompt(THINK, r1)
    qwen = ChatTemplate.compile(QWEN3, "qwen3")
    assert not opens_in_prompt(THINK, qwen.render([{"role": "user", "content": "Hi"}]))
    # thinking switched off: the template writes an empty, closed block (the output is all answer)
    off = qwen.render([{"role": "user", "content": "Hi"}], enable_thinking=False)
    assert not opens_in_prompt(THINK, off) and closes_in_prompt(THINK, off)
    assert not closes_in_prompt(THINK, r1)
    assert opens_in_prompt(KIMI, "<|im_assistant|>assistant<|im_middle|>◁think▷")


# Realistic outputs: (style, started by the prompt, output, thinking, answer).
TRANSCRIPTS = [
    # an R1 distill: the prompt opened <think>, the output has only its end
    (
        THINK,
        True,
        "Okay, the user asks for 2+2.\nThat is 4.\n</think>\n\nThe answer is **4**.",
        "Okay, the user asks for 2+2.\nThat is 4.",
        "The answer is **4**.",
    ),
    # Qwen3 with thinking switched off answers after an empty block... or the model writes one itself
    (THINK, False, "<think>\n\n</think>\n\nHello! How can I help?", "", "Hello! How can I help?"),
    (THINK, False, "<think>\nThe user greets me.\n</think>\n\nHi there!", "The user greets me.", "Hi there!"),
    # text that looks like a nested block is thinking up to the first end marker
    (
        THINK,
        False,
        "<think>I could write <think> in HTML.</think>Use `<think>` tags.",
        "I could write <think> in HTML.",
        "Use `<think>` tags.",
    ),
    # a marker after the answer began is the answer's own text
    (THINK, False, "Tags like <think>x</think> mark thinking.", "", "Tags like <think>x</think> mark thinking."),
    # never closed (cut by max_tokens or Stop): all thinking
    (THINK, False, "<think>\nLet me count: one, two,", "Let me count: one, two,", ""),
    (THINK, True, "Hmm, first I need", "Hmm, first I need", ""),
    # a model that repeats the marker the prompt opened
    (THINK, True, "<think>\nSo x = 3.\n</think>\nx = 3", "So x = 3.", "x = 3"),
    (MAGISTRAL, False, "[THINK]Square of 12: 144.[/THINK]\n12² = 144.", "Square of 12: 144.", "12² = 144."),
    (KIMI, True, "The user wants a haiku.◁/think▷Autumn moonlight", "The user wants a haiku.", "Autumn moonlight"),
    (
        COMMAND_R7B,
        False,
        "<|START_THINKING|>No tool is needed.<|END_THINKING|><|START_RESPONSE|>Paris.",
        "No tool is needed.",
        "Paris.",
    ),
    (
        HARMONY,
        False,
        "<|channel|>analysis<|message|>User wants a joke.<|end|><|start|>assistant<|channel|>final<|message|>Why did",
        "User wants a joke.",
        "Why did",
    ),
    (HARMONY, False, "<|channel|>final<|message|>Just the answer.", "", "Just the answer."),
    # no thinking at all: the text comes through untouched (leading space too)
    (THINK, False, " Hello <b>world</b>", "", " Hello <b>world</b>"),
]


@pytest.mark.parametrize(("style", "started", "output", "thinking", "answer"), TRANSCRIPTS)
def test_transcripts_split_whole_and_streamed_a_character_at_a_time(style, started, output, thinking, answer):
    assert split(output, style, started) == (thinking, answer)
    assert stream(output, style, started) == (thinking, answer)


@pytest.mark.parametrize(("style", "started", "output", "thinking", "answer"), TRANSCRIPTS)
def test_every_two_piece_cut_gives_the_same_split(style, started, output, thinking, answer):
    for i in range(len(output) + 1):
        for j in range(i, len(output) + 1):
            assert stream(output, style, started, [i, j]) == (thinking, answer), (i, j)


@pytest.mark.parametrize("style", STYLES)
def test_markers_never_leak_while_streaming(style):
    output = f"{style.start}\nthinking about it\n{style.end}\n\nthe answer"
    splitter = ReasoningSplitter(style)
    seen_r = seen_c = ""
    for ch in output:
        r, c = splitter.feed(ch)
        seen_r, seen_c = seen_r + r, seen_c + c
        # at no moment does either side show a piece of a marker
        for marker in (style.start, style.end):
            for n in range(2, len(marker) + 1):
                assert marker[:n] not in seen_r and marker[:n] not in seen_c
    r, c = splitter.finish()
    assert (seen_r + r, seen_c + c) == ("thinking about it", "the answer")
    assert splitter.had_reasoning and splitter.closed


def test_thinking_streams_as_it_comes():
    splitter = ReasoningSplitter(THINK, started=True)
    assert splitter.feed("First, ") == ("First,", "")  # the space waits: it may end the block
    assert splitter.feed("the sum") == (" the sum", "")
    assert splitter.feed(".\n</th") == (".", "")
    assert splitter.feed("ink>\n\nIt is") == ("", "It is")
    assert splitter.feed(" 5.") == ("", " 5.")
    assert splitter.finish() == ("", "")


def test_answered_splitter_passes_everything_as_answer():
    splitter = ReasoningSplitter(THINK, answered=True)
    assert splitter.feed("<think>x</think>") == ("", "<think>x</think>")


def test_thinking_switch_and_kwargs():
    assert template_has_thinking_switch(QWEN3) and template_has_thinking_switch(GPT_OSS_TPL)
    assert not template_has_thinking_switch(CHATML) and not template_has_thinking_switch(None)
    assert thinking_kwargs(QWEN3) == {}
    assert thinking_kwargs(QWEN3, enable_thinking=False) == {"enable_thinking": False}
    assert thinking_kwargs(GPT_OSS_TPL, reasoning_effort="high") == {"reasoning_effort": "high"}
    assert thinking_kwargs(GPT_OSS_TPL, enable_thinking=False) == {"reasoning_effort": "low"}
    assert thinking_kwargs(GPT_OSS_TPL, enable_thinking=True) == {}
    with pytest.raises(UnsupportedFeatureError):
        thinking_kwargs(CHATML, enable_thinking=False)
    with pytest.raises(UnsupportedFeatureError):
        thinking_kwargs(QWEN3, reasoning_effort="low")


# --- the chat turn: thinking split, stored apart, never sent back (scripted FakeBackend: "0 1 2 ...") ---


class ThinkingChatML:
    """ChatML whose generation prompt opens a think block unless enable_thinking is false (as Qwen3's
    and DeepSeek-R1's templates do)."""

    source = "... enable_thinking ... <think> ..."
    stop_strings = ["<|im_end|>"]

    def __init__(self) -> None:
        self.extras: list[dict] = []

    def render(self, messages, *, add_generation_prompt=True, **extra):
        self.extras.append(extra)
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        opened = "<think>\n" if extra.get("enable_thinking", True) else "<think>\n\n</think>\n\n"
        return text + ("<|im_start|>assistant\n" + opened if add_generation_prompt else "")


@pytest.fixture
def chat_service(tmp_path, loaders):
    from webui.chat.history import ChatStore
    from webui.chat.service import ChatService
    from webui.generation.scheduler import Generator
    from webui.models.manager import ModelManager
    from webui.params import LoadOptions

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF")
    models = ModelManager(tmp_path / "models", LoadOptions(n_ctx=4000), loaders=loaders)
    models.load("m.gguf", "fake")
    template = ThinkingChatML()
    service = ChatService(Generator(models), ChatStore(tmp_path / "chats"), lambda loaded: (template, ""))
    service.template = template  # type: ignore[attr-defined]
    return service


def chat_turn(service, chat, action, text="", *, thinking=None, max_tokens=3, prefix=""):
    from webui.chat.prompt import Character, ChatOptions
    from webui.params import SamplingParams

    return service.turn(
        chat,
        action,
        text=text,
        character=Character("Bot", ""),
        options=ChatOptions(thinking=thinking),
        params=SamplingParams(max_tokens=max_tokens),
        reply_prefix=prefix,
    )


def test_a_turn_splits_thinking_from_the_reply_and_never_sends_it_back(chat_service):
    store = chat_service.store
    chat = store.new("Bot")
    # the template opened <think>; the reply prefix closes it, the model then answers
    turn = chat_turn(chat_service, chat, "send", "Hi", prefix="The user says hi.\n</think>\n\n")
    shown = list(turn)
    assert turn.prompt.thinking_open and turn.reasoning == "The user says hi."
    assert shown[-1].strip() == "0 1 2" and all("think" not in s for s in shown)
    saved = store.load("Bot", chat.id).messages[-1]
    assert (saved.reasoning, saved.content) == ("The user says hi.", "0 1 2")

    second = chat_turn(chat_service, chat, "send", "And now?")
    second.result()
    assert "The user says hi." not in second.prompt.text and "0 1 2" in second.prompt.text
    # nothing closed the block this time: all thinking, no reply (and the turn said it was thinking)
    saved = store.load("Bot", chat.id).messages[-1]
    assert (saved.reasoning, saved.content) == ("0 1 2", "")


def test_continue_goes_on_thinking_and_regenerate_keeps_each_versions_thinking(chat_service):
    store = chat_service.store
    chat = store.new("Bot")
    chat_turn(chat_service, chat, "send", "Hi", max_tokens=2).result()
    assert (chat.messages[-1].reasoning, chat.messages[-1].content) == ("0 1", "")
    cont = chat_turn(chat_service, chat, "continue", max_tokens=2)
    cont.result()
    # the prompt ends inside the block with the thinking so far; the new text adds to it
    assert cont.prompt.text.endswith("<think>\n0 1")
    assert chat.messages[-1].reasoning == "0 10 1" and chat.messages[-1].content == ""

    chat_turn(chat_service, chat, "regenerate", prefix="ok</think>Answer: ", max_tokens=1).result()
    reply = store.load("Bot", chat.id).messages[-1]
    assert (reply.reasoning, reply.content) == ("ok", "Answer: 0")
    reply.select(0)
    assert reply.reasoning == "0 10 1" and reply.content == ""

    # a Continue of a reply whose thinking is done: all new text is reply, the thinking stays
    chat_turn(chat_service, chat, "continue", max_tokens=1).result()
    assert (chat.messages[-1].reasoning, chat.messages[-1].content) == ("ok", "Answer: 00")


def test_the_chats_thinking_choice_reaches_a_template_that_reads_it(chat_service):
    chat = chat_service.store.new("Bot")
    turn = chat_turn(chat_service, chat, "send", "Hi", thinking=False)
    turn.result()
    assert chat_service.template.extras[-1] == {"enable_thinking": False}
    assert not turn.prompt.thinking_open and turn.prompt.thinking_closed and chat.messages[-1].content == "0 1 2"
    assert chat.messages[-1].reasoning == ""


def test_files_without_reasoning_load_and_stay_without_it(tmp_path):
    import json

    from webui.chat.history import ChatStore, Message

    store = ChatStore(tmp_path)
    chat = store.new("Bot")
    chat.messages = [Message("user", "Hi"), Message("assistant", "Hello")]
    store.save(chat)
    raw = json.loads(store.path_of("Bot", chat.id).read_text())
    assert "reasoning" not in raw["messages"][1]  # an older reader sees the file it knows
    chat.messages[1].set_reasoning("Greet back.")
    store.save(chat)
    raw = json.loads(store.path_of("Bot", chat.id).read_text())
    assert raw["messages"][1]["reasoning"] == "Greet back." and raw["internal"] == [["Hi", "Hello"]]
    assert store.load("Bot", chat.id).messages[1].reasoning == "Greet back."


def test_the_chat_box_shows_thinking_as_a_block_above_the_reply():
    from webui.chat.history import Chat, Message
    from webui.ui.chat_page import shown_offset, shown_target, to_display

    chat = Chat(id="c", character="Bot")
    chat.messages = [Message("user", "Hi"), Message("assistant", "Hello", reasoning="Greet back.")]
    shown = to_display(chat, "en")
    assert shown[1] == {
        "role": "assistant",
        "content": "Greet back.",
        "metadata": {"title": "Thinking", "status": "done"},
    }
    assert shown[2]["content"] == "Hello"
    assert to_display(chat, "en", thinking=True)[1]["metadata"]["status"] == "pending"
    assert shown_offset(2, shown) == (0, False)
    assert [shown_target(2, shown, i) for i in range(3)] == [(0, False), (1, True), (1, False)]
    windowed = to_display(chat, "en", window=1)  # "1 earlier message", the thinking, the reply
    assert shown_offset(2, windowed) == (1, True)
    assert [shown_target(2, windowed, i) for i in range(3)] == [None, (1, True), (1, False)]
