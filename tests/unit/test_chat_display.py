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


def test_stats_and_versions_go_in_the_metadata_not_the_text():
    # the edit box and Copy show a message's content: a reply's stats stay out of it
    chat = chat_of(4)
    reply = chat.messages[-1]
    reply.stats = {"tokens": 38, "tokens_per_second": 55.1, "ttft": 0.21, "model": "m.gguf", "seed": 7}
    reply.add_version("m3 again")
    reply.stats = {"tokens": 12, "tokens_per_second": 50.0, "ttft": 0.2, "model": "m.gguf", "seed": 8}
    shown = to_display(chat, "en")
    assert shown[-1]["content"] == "m3 again" and "<sub>" not in shown[-1]["content"]
    assert (
        shown[-1]["metadata"]["log"]
        == "version 2 of 2 · 12 tokens · 50.0 tokens/s · first token 0.20 s · m.gguf · seed 8"
    )
    assert "metadata" not in shown[0] and "metadata" not in shown[1]  # a user message, a reply with no stats
    assert "версия 2 из 2" in to_display(chat, "ru")[-1]["metadata"]["log"]
    # a shown window still maps back to the chat
    assert shown_offset(4, to_display(chat, "en", window=2)) == (2, True)


def test_each_version_keeps_its_own_figures_through_a_save_and_a_reload():
    """The line under a reply showed the last version's tokens and seed under "version 1 of 2": a student
    reproducing version 1 with that seed got another text."""
    from webui.ui.chat_page import stats_line

    reply = Message("assistant", "Helium, neon, argon.")
    reply.set_stats({"tokens": 9, "tokens_per_second": 50.0, "ttft": 0.1, "model": "m", "seed": 11})
    reply.add_version("")
    assert reply.stats is None  # the new version has none until it ends
    reply.set_text("Argon, krypton, xenon.")
    reply.set_stats({"tokens": 12, "tokens_per_second": 49.0, "ttft": 0.1, "model": "m", "seed": 7})
    reply.select(0)
    assert reply.stats["seed"] == 11 and "seed 11" in stats_line(reply) and "version 1 of 2" in stats_line(reply)
    back = Message(**reply.to_json())
    assert back.stats["seed"] == 11
    back.select(1)
    assert back.stats["seed"] == 7 and "12" in stats_line(back)
    back.drop_last_version(0)  # a Regenerate that never ran takes its version back
    assert back.versions == ["Helium, neon, argon."] and back.stats["seed"] == 11
    assert "stats_versions" not in back.to_json()  # one version: ``stats`` says it all


def test_a_file_from_before_the_figures_were_kept_per_version_keeps_the_active_ones():
    old = {"role": "assistant", "content": "b", "versions": ["a", "b"], "active": 1, "stats": {"seed": 3}}
    reply = Message(**old)
    assert reply.stats == {"seed": 3} and reply.stats_versions == [None, {"seed": 3}]
    reply.select(0)
    assert reply.stats is None


def test_a_one_token_reply_shows_no_speed_rather_than_zero():
    """Seen by hand: a grammar answering "yes" read "1 tokens · 0.0 tokens/s" (speed is measured after the
    first token, so one token has none)."""
    from webui.ui.chat_page import stats_line

    reply = Message("assistant", "yes")
    reply.set_stats({"tokens": 1, "tokens_per_second": 0.0, "ttft": 0.4, "model": "m", "seed": 3})
    assert "- tokens/s" in stats_line(reply) and "0.0 tokens/s" not in stats_line(reply)
    reply.set_stats({"tokens": 2, "tokens_per_second": 31.5, "ttft": 0.4, "model": "m", "seed": 3})
    assert "31.5 tokens/s" in stats_line(reply)
