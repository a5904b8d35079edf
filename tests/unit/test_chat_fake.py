"""Chat turns, history files and truncation on the scripted FakeBackend (fast)."""

import json

import pytest

from webui.chat.history import Chat, ChatStore, Message
from webui.chat.prompt import Character, ChatOptions, Persona, build_prompt, render
from webui.chat.service import ChatService, edit_message, remove_last, switch_version
from webui.errors import InvalidNameError, MessageNotFoundError, PromptTooLongError
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams


class ChatML:
    stop_strings = ["<|im_end|>\n<|im_start|>user", "<|im_end|>"]

    def render(self, messages, *, add_generation_prompt=True, **extra):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


@pytest.fixture
def service(tmp_path, loaders):
    d = tmp_path / "models"
    d.mkdir()
    (d / "m.gguf").write_bytes(b"GGUF")
    models = ModelManager(d, LoadOptions(n_ctx=4000), loaders=loaders)
    models.load("m.gguf", "fake")
    return ChatService(Generator(models), ChatStore(tmp_path / "chats"), lambda loaded: (ChatML(), ""))


def start(service, chat, action, text="", **kw):
    kw.setdefault("character", Character("Bot", "You are {{char}}, talking to {{user}}."))
    kw.setdefault("options", ChatOptions(persona=Persona("Ada")))
    kw.setdefault("params", SamplingParams(max_tokens=3))
    return service.turn(chat, action, text=text, **kw)


def run(service, chat, action, text="", **kw):
    return list(start(service, chat, action, text, **kw))


def test_send_saves_user_message_and_reply_with_stats(service):
    chat = service.store.new("Bot")
    turn = start(service, chat, "send", "Hello there")
    outs = list(turn)
    assert outs[-1].strip() == "0 1 2"
    saved = service.store.load("Bot", chat.id)
    assert [m.role for m in saved.messages] == ["user", "assistant"]
    assert saved.messages[1].content == "0 1 2" and saved.messages[1].stats["tokens"] == 3
    assert saved.title == "Hello there"
    raw = json.loads((service.store.folder / "Bot" / f"{chat.id}.json").read_text())
    assert raw["internal"] == [["Hello there", "0 1 2"]] and raw["visible"] == raw["internal"]
    prompt = turn.prompt.text  # the prompt travels on the turn (the model's template, chosen on the worker)
    assert "You are Bot, talking to Ada." in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_a_reply_that_fails_before_its_first_word_leaves_no_empty_reply(service, monkeypatch):
    """A remote server that is down fails after the prompt is made and before any text: no empty reply is
    saved (it was, as a finished reply of 0 tokens), and the turn says so, so the page can take the Send
    back into the box. A failure after some text keeps that text."""
    from webui.errors import GenerationError

    backend = service.generator.models.current.backend
    chat = service.store.new("Bot")
    run(service, chat, "send", "First")

    def down(prompt, params, cancel, extras=None):
        raise GenerationError("Cannot connect to http://peer: the connection was refused.")
        yield  # (a generator, as the loaders' streams are)

    monkeypatch.setattr(backend, "stream", down)
    turn = start(service, chat, "send", "Are you there?")
    with pytest.raises(GenerationError):
        list(turn)
    assert turn.unanswered
    saved = service.store.load("Bot", chat.id)
    assert [(m.role, m.content) for m in saved.messages] == [
        ("user", "First"),
        ("assistant", "0 1 2"),
        ("user", "Are you there?"),
    ]

    def cut(prompt, params, cancel, extras=None):
        yield from (c for c in type(backend).stream(backend, prompt, params, cancel) if c.finish_reason is None)
        raise GenerationError("The connection was cut.")

    assert remove_last(chat) == "Are you there?"  # (the page takes it back into the box)
    monkeypatch.setattr(backend, "stream", cut)
    turn = start(service, chat, "send", "Are you there?")
    with pytest.raises(GenerationError):
        list(turn)
    assert not turn.unanswered
    assert service.store.load("Bot", chat.id).messages[-1].content == "0 1 2"  # the text written is kept


def test_regenerate_keeps_versions_continue_extends_edit_and_remove(service):
    chat = service.store.new("Bot")
    run(service, chat, "send", "Hi")
    run(service, chat, "regenerate")
    reply = chat.messages[-1]
    assert len(reply.versions) == 2 and reply.active == 1
    switch_version(chat, 1, -1)
    assert reply.active == 0 and reply.content == reply.versions[0]
    run(service, chat, "continue")
    assert chat.messages[-1].content.startswith("0 1 2") and len(chat.messages[-1].content) > 5
    run(service, chat, "send", "Second")
    edit_message(chat, 0, "Hi (edited)")
    assert chat.messages[0].content == "Hi (edited)" and len(chat.messages) == 4
    assert remove_last(chat) == "Second"
    assert len(chat.messages) == 2
    with pytest.raises(MessageNotFoundError):
        edit_message(chat, 9, "x")


def test_impersonate_does_not_touch_the_chat(service):
    chat = service.store.new("Bot")
    run(service, chat, "send", "Hi")
    before = [m.content for m in chat.messages]
    turn = start(service, chat, "impersonate")
    out = list(turn)
    assert out and [m.content for m in chat.messages] == before
    assert turn.prompt.text.endswith("\nAda:")
    # what the user had begun to type is where the model goes on from (text-generation-webui's Impersonate)
    turn = start(service, chat, "impersonate", reply_prefix="Can you tell me how")
    out = list(turn)
    assert "Ada: Can you tell me how" in turn.prompt.text and out[-1].startswith("Can you tell me how")
    assert [m.content for m in chat.messages] == before


def test_chat_and_chat_instruct_modes():
    chat = Chat("x", "Bot", messages=[Message("user", "Hi"), Message("assistant", "Hello!")])
    ch, opts = Character("Bot", "{{char}} is kind."), ChatOptions(mode="chat", persona=Persona("Ada"))
    text, stops = render(chat.messages, ch, opts, ChatML())
    assert text == "Bot is kind.\nAda: Hi\nBot: Hello!\nBot:"
    assert stops == ["\nAda:", "\nBot:"]
    opts.mode = "chat-instruct"
    text, _ = render(chat.messages, ch, opts, ChatML())
    assert 'reply for the character "Bot"' in text and "Ada: Hi" in text and text.endswith("assistant\n")


def test_truncation_drops_whole_old_turns_in_steps_and_keeps_the_system_prompt():
    messages = []
    for i in range(40):
        messages += [Message("user", f"question {i} " + "x" * 40), Message("assistant", f"answer {i} " + "y" * 40)]
    chat = Chat("x", "Bot", messages=messages)
    history = messages + [Message("user", "last question")]
    tokenize = lambda s: list(s)  # one token per character
    ch, opts = Character("Bot", "SYSTEM PROMPT"), ChatOptions()
    p = build_prompt(chat, history, ch, opts, ChatML(), n_ctx=2000, max_new_tokens=200, tokenize=tokenize)
    assert p.tokens <= 1800 and p.dropped > 0 and p.note
    assert "SYSTEM PROMPT" in p.text and "last question" in p.text
    assert history[chat.context_start].role == "user"  # cut at a turn boundary
    start = chat.context_start
    # the next turn starts from the same place: the prefix is stable
    history2 = history + [Message("assistant", "short"), Message("user", "next")]
    p2 = build_prompt(chat, history2, ch, opts, ChatML(), n_ctx=2000, max_new_tokens=200, tokenize=tokenize)
    assert chat.context_start == start and p2.text.startswith(p.text[:-30])
    with pytest.raises(PromptTooLongError):
        build_prompt(
            Chat("y", "Bot"),
            [Message("user", "z" * 5000)],
            ch,
            opts,
            ChatML(),
            n_ctx=2000,
            max_new_tokens=200,
            tokenize=tokenize,
        )


def test_store_lists_renames_deletes_imports_and_lists_damaged_files_last(tmp_path):
    store = ChatStore(tmp_path)
    chat = store.new("Bot")
    chat.messages.append(Message("user", "hi"))
    store.save(chat)
    (tmp_path / "Bot" / "broken.json").write_text("{not json")
    assert [(i.id, i.unreadable is not None) for i in store.list("Bot")] == [(chat.id, False), ("broken", True)]
    store.rename("Bot", chat.id, "Renamed")
    assert store.load("Bot", chat.id).title == "Renamed"
    ooba = {"internal": [["<|BEGIN-VISIBLE-CHAT|>", "Greeting"], ["Hi", "Hello"]], "visible": []}
    imported = store.import_file("Bot", json.dumps(ooba).encode())
    assert [(m.role, m.content) for m in imported.messages] == [
        ("assistant", "Greeting"),
        ("user", "Hi"),
        ("assistant", "Hello"),
    ]
    store.delete("Bot", chat.id)
    assert [i.id for i in store.list("Bot")] == [imported.id, "broken"]
    assert store.newest("Bot").id == imported.id
    with pytest.raises(InvalidNameError):
        store.load("../etc", "passwd")


def test_characters_store_round_trip_examples_picture_and_bad_names(tmp_path):
    from webui.characters.character import Character
    from webui.characters.store import CharacterStore
    from webui.errors import InvalidNameError

    store = CharacterStore(tmp_path)
    store.save(
        "Tutor",
        Character(
            name="Tutor",
            greeting="Hi {{user}}",
            context="{{char}} teaches {{user}}.",
            examples="{{user}}: 1+1?\n{{char}}: 2",
        ),
        picture=b"\x89PNG fake",
        picture_suffix=".png",
    )
    ch = store.load("Tutor")
    assert ch.fill(ch.greeting, "Ada") == "Hi Ada"
    assert ch.system_text("Ada") == "Tutor teaches Ada.\n\nExamples of how the conversation goes:\nAda: 1+1?\nTutor: 2"
    assert ch.picture == tmp_path / "Tutor.png"
    assert "Tutor" in store.names() and "Assistant" in store.names()
    (tmp_path / "odd.yaml").write_text("name: Odd\ncontext: [1, 2]\n")
    with pytest.raises(Exception, match="must be text"):
        store.load("odd")
    with pytest.raises(InvalidNameError):
        store.save("../evil", Character())
    store.delete("Tutor")
    assert not (tmp_path / "Tutor.png").exists() and "Tutor" not in store.names()


def test_a_template_that_refuses_system_messages_gets_the_system_text_in_the_first_user_turn():
    from webui.templates.chat_template import ChatTemplate

    strict = ChatTemplate.compile(
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}",
        "strict",
    )
    text, _ = render([Message("user", "Hi")], Character("Bot", "Be brief."), ChatOptions(), strict)
    assert text == "[user] Be brief.\n\nHi\n"


def test_display_and_markdown_export():
    from webui.chat.export import chat_markdown
    from webui.ui.chat_tab import to_display

    reply = Message(
        "assistant", "Paris.", stats={"tokens": 3, "tokens_per_second": 50.0, "ttft": 0.1, "model": "m.gguf", "seed": 4}
    )
    reply.add_version("Paris!")
    reply.stats = {"tokens": 2, "tokens_per_second": 40.0, "ttft": 0.2, "model": "m.gguf", "seed": 5}
    chat = Chat("x", "Bot", title="Capitals", messages=[Message("user", "Capital of France?"), reply])
    shown = to_display(chat)
    assert shown[0] == {"role": "user", "content": "Capital of France?"}
    assert shown[1]["content"] == "Paris!"  # the stats are not in the text (the edit box, Copy)
    stats = shown[1]["metadata"]["log"]
    assert "version 2 of 2" in stats and "40.0 tokens/s" in stats and "seed 5" in stats
    md = chat_markdown(chat, "Bot", "Ada")
    assert md.startswith("# Capitals") and "**Ada:**\n\nCapital of France?" in md and "**Bot:**\n\nParis!" in md
