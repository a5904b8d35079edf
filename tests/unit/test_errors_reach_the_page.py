"""A handler that turns errors into pop-ups (``ui_errors``) must run in a queued event: Gradio 6.31 drops the
error of a ``queue=False`` event without a word. Picking a damaged chat file, saving a character called
``../evil`` or a tools folder that does not exist did nothing at all on the page (the error was only in the
server's log). The handlers left unqueued below cannot fail on what the user typed, or must keep up with
typing (a queued save per keystroke breaks their order), and say so."""

from __future__ import annotations

from webui.services import Services
from webui.settings import Settings
from webui.ui import build_ui

#: Handlers that stay unqueued, and why (qualified names of the functions ui_errors wraps).
UNQUEUED = {
    # saves as the user types or picks: must run in the order typed, on every keystroke
    "ToolsPanel.wire.<locals>.keep": "a save per tick",
    "ToolsPanel.wire.<locals>.on_read_only": "a save per tick",
    "build_ui.<locals>.on_language": "the language pick (it cannot fail on input)",
    # fill in or redraw from what the app already holds; nothing the user typed can make them fail
    "build_download_panel.<locals>.<lambda>": "shows the projector choice of a listing already fetched",
    "build_model_tab.<locals>.<lambda>": "fills the load options of the model picked",
    "build_chat_tab.<locals>.<lambda>": "redraws the chat box",
    "build_chat_tab.<locals>.on_template": "a template from the list (a broken file: the reason goes in the note)",
    "build_chat_tab.<locals>.on_show_prompt": "shows the prompt (its own errors go in the box)",
    "HistoryPanel.wire.<locals>.on_new": "a new empty chat",
    "CharacterPanel.wire.<locals>.on_discard": "shows the saved character again",
}


def test_every_handler_that_can_fail_on_input_runs_queued_so_its_error_shows(user_dir):
    demo = build_ui(Services.build(Settings(user_data_dir=user_dir)))
    handlers = [f for f in demo.fns.values() if getattr(f.fn, "shows_errors", False)]
    silent = sorted({f.fn.__wrapped__.__qualname__ for f in handlers if not f.queue} - set(UNQUEUED))
    assert silent == [], f"queue these (their errors never reach the page): {silent}"
    # the ones this change queued, as a check that this test sees the handlers at all
    queued = {f.fn.__wrapped__.__qualname__ for f in handlers if f.queue}
    assert {"HistoryPanel.wire.<locals>.pick_chat", "CharacterPanel.wire.<locals>.on_save_character"} <= queued


def test_a_pop_up_shows_angle_brackets_as_text():
    """Gradio shows a pop-up's text as HTML: "<|im_end|>" or a parser's "<stream end>" would vanish as tags."""
    from webui.ui.common import error_toast

    toast = error_toast("stop strings must not be empty: '<|im_end|>', '' & <b>")
    assert toast.message == "stop strings must not be empty: '&lt;|im_end|&gt;', '' &amp; &lt;b&gt;"
