"""The chat box shows a window of the newest messages; a clicked message maps back to the chat."""

from __future__ import annotations

from webui.chat.history import Chat, Message
from webui.ui.chat_tab import DISPLAY_WINDOW, shown_offset, to_display


def chat_of(n: int) -> Chat:
    chat = Chat(id="c", character="Assistant")
    chat.messages = [Message("system", "sys")] + [
        Message("user" if i % 2 == 0 else "assistant", f"m{i}") for i in range(n)
    ]
    return chat


def test_short_chat_is_shown_whole():
    shown = to_display(chat_of(10), "en")
    assert [m["content"] for m in shown] == [f"m{i}" for i in range(10)]
    assert shown_offset(10, shown) == (0, False)


def test_long_chat_shows_the_newest_window_after_a_line_counting_the_rest():
    shown = to_display(chat_of(500), "en")
    assert len(shown) == DISPLAY_WINDOW + 1
    assert "440 earlier messages" in shown[0]["content"]
    assert shown[-1]["content"] == "m499" and shown[1]["content"] == f"m{500 - DISPLAY_WINDOW}"
    offset, marked = shown_offset(500, shown)
    assert marked and offset == 500 - DISPLAY_WINDOW
    # box index 1 (the first real message) is chat message number offset
    assert shown[1]["content"] == f"m{offset + 1 - marked}"


def test_show_all_and_other_languages():
    every = to_display(chat_of(500), "en", window=None)
    assert len(every) == 500 and shown_offset(500, every) == (0, False)
    assert "440" in to_display(chat_of(500), "ru")[0]["content"]


def test_offset_reads_gradio_message_objects_too():
    class Msg:
        def __init__(self, content: str) -> None:
            self.content = content

    shown = [Msg(m["content"]) for m in to_display(chat_of(100), "en")]
    assert shown_offset(100, shown) == (100 - DISPLAY_WINDOW, True)


def test_window_size_is_passed_in():
    # build_chat_tab passes settings.yaml's chat_window (0: all) - no module-level setting
    assert len(to_display(chat_of(500), "en", window=None)) == 500
    assert len(to_display(chat_of(500), "en", window=10)) == 11
