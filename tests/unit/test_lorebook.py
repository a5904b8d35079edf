"""Lorebook entries: which fire, in what order, within what budget, and where they land in the prompt."""

import pytest

from cardkit import lorebook
from webui.characters.character import Character
from webui.characters.lorebook import Lorebook, activate
from webui.chat.history import Chat, Message
from webui.chat.prompt import ChatOptions, Persona, build_prompt, render


def book(*entries, **kw) -> Lorebook:
    return Lorebook.model_validate(lorebook(*entries, **kw))


def fired(b: Lorebook, *messages: str, budget: int = 10_000) -> list[str]:
    act = activate(b, list(messages), count_tokens=lambda t: len(t.split()), default_budget=budget)
    return [f.entry.content for f in act.fired]


def test_keys_case_whole_words_constant_disabled():
    b = book(
        {"keys": ["Kraken"], "content": "K"},
        {"keys": ["cat"], "content": "C"},
        {"keys": ["Moon"], "content": "M", "case_sensitive": True},
        {"keys": ["never"], "content": "D", "enabled": False},
        {"keys": [], "content": "A", "constant": True},
        {"keys": ["C++"], "content": "P"},
    )
    assert fired(b, "the KRAKEN wakes") == ["K", "A"]
    assert fired(b, "a category of things") == ["A"]  # "cat" is not a whole word here
    assert fired(b, "my cat, never mind") == ["C", "A"]
    assert fired(b, "the moon is up") == ["A"] and fired(b, "the Moon is up") == ["M", "A"]
    assert fired(b, "I write C++ daily") == ["A", "P"]


def test_partial_word_matching_when_the_entry_asks_for_it():
    b = book({"keys": ["cat"], "content": "C", "extensions": {"match_whole_words": False}})
    assert fired(b, "a category") == ["C"]


def test_scan_depth_only_looks_at_recent_messages():
    b = book({"keys": ["kraken"], "content": "K"}, scan_depth=2)
    assert fired(b, "kraken!", "hello", "how are you") == []
    assert fired(b, "hello", "kraken!", "how are you") == ["K"]
    assert fired(book({"keys": ["kraken"], "content": "K"}, scan_depth=0), "kraken") == []


def test_selective_entries_need_a_secondary_key():
    b = book({"keys": ["ship"], "secondary_keys": ["storm"], "selective": True, "content": "S"})
    assert fired(b, "the ship sails") == []
    assert fired(b, "the ship in the storm") == ["S"]


def test_insertion_order_and_token_budget():
    b = book(
        {"keys": ["a"], "content": "one two three", "insertion_order": 30, "priority": 1},
        {"keys": ["b"], "content": "four five", "insertion_order": 10, "priority": 5},
        {"keys": ["c"], "content": "six", "insertion_order": 20, "priority": 9},
        token_budget=4,
    )
    act = activate(b, ["a b c"], count_tokens=lambda t: len(t.split()), default_budget=999)
    # budget 4: the most important (c, then b) fit; a (priority 1) is left out; kept ones by insertion_order
    assert [f.entry.content for f in act.fired] == ["four five", "six"]
    assert [f.entry.content for f in act.left_out] == ["one two three"]
    assert "left out: over the token budget" in act.summary()


def test_many_entries_match_in_one_pass():
    entries = [{"keys": [f"word{i}", f"other{i}"], "content": f"entry {i}"} for i in range(2000)]
    b = book(*entries)
    assert fired(b, "word1999 and other7 and word12345") == ["entry 7", "entry 1999"]


def test_world_info_mapping_and_string_keys_load():
    b = Lorebook.model_validate({"entries": {"0": {"keys": "dragon, wyrm", "content": "D", "insertion_order": None}}})
    assert b.entries[0].keys == ["dragon", "wyrm"] and b.entries[0].insertion_order == 100
    assert fired(b, "a wyrm!") == ["D"]


class ChatML:
    stop_strings = ["<|im_end|>"]

    def render(self, messages, *, add_generation_prompt=True, **extra):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def card_character() -> Character:
    return Character(
        name="Aria",
        context="Aria keeps the lighthouse.",
        system_prompt="Card rules. {{original}}",
        post_history_instructions="Answer as {{char}}, briefly.",
        creator_notes="SECRET NOTES",
        character_book=book(
            {"keys": ["kraken"], "content": "The kraken sleeps.", "insertion_order": 1},
            {"keys": ["storm"], "content": "Storms come at night.", "position": "after_char"},
        ),
    )


@pytest.mark.parametrize("mode", ["instruct", "chat", "chat-instruct"])
def test_prompt_has_fired_entries_around_the_character_and_post_history_last(mode):
    chat = Chat(id="c", character="Aria")
    history = [Message("user", "Tell me about the kraken and the storm.")]
    prompt = build_prompt(
        chat,
        history,
        card_character(),
        ChatOptions(mode=mode, system_prompt="Global."),
        ChatML(),
        n_ctx=4000,
        max_new_tokens=100,
        tokenize=lambda t: t.split(),
    )
    text = prompt.text
    assert (
        text.index("The kraken sleeps.")
        < text.index("Aria keeps the lighthouse.")
        < text.index("Storms come at night.")
    )
    assert text.index("Tell me about the kraken") < text.index("Answer as Aria, briefly.")
    assert "SECRET NOTES" not in text
    assert [f.entry.content for f in prompt.lore.fired] == ["The kraken sleeps.", "Storms come at night."]
    assert "key 'kraken'" in prompt.lore.summary()
    if mode != "chat":  # the card's system prompt replaces the box, {{original}} keeps the box's text
        assert "Card rules. Global." in text


def test_no_lorebook_entries_without_keys_in_the_chat_and_default_system_prompt():
    chat = Chat(id="c", character="Aria")
    character = card_character()
    character.system_prompt = ""
    prompt = build_prompt(
        chat,
        [Message("user", "Hello")],
        character,
        ChatOptions(system_prompt="Global."),
        ChatML(),
        n_ctx=4000,
        max_new_tokens=100,
        tokenize=lambda t: t.split(),
    )
    assert "kraken" not in prompt.text and prompt.lore.fired == [] and prompt.lore.summary() == ""
    assert "Global." in prompt.text


def test_post_history_goes_after_the_last_user_message_in_instruct_mode():
    text, _ = render(
        [Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Go on")],
        card_character(),
        ChatOptions(persona=Persona("Bob")),
        ChatML(),
    )
    assert text.endswith("Go on\n\nAnswer as Aria, briefly.<|im_end|>\n<|im_start|>assistant\n")
