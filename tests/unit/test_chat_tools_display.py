"""Tool calls in the Chat tab's box (fast, no browser): each call is a collapsible block after the reply
that made it (arguments, then the result; pending until it has one; skipped and failed ones marked), the
tool messages are not bubbles, a clicked entry maps back to its message (edits skip the blocks, as they
skip Thinking), Remove takes a whole tool exchange, the Markdown export shows calls and results, and
the Tools panel's helpers (the approval question, the panel's values into a chat, the folder box).

The same in Chromium on the real SmolLM2: tests/browser/test_chat_tools.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from webui.chat.export import chat_markdown
from webui.chat.history import DECLINED, Chat, Message
from webui.errors import SettingsError
from webui.tools.types import ToolInfo
from webui.ui.chat_page import TOOL_MARK, entry_targets, fenced, is_thought, to_display
from webui.ui.chat_tab import remove_exchange
from webui.ui.tools_panel import apply_panel, ask_text, set_folder, tool_label


def call(call_id: str, expression: str = "6*7", name: str = "calculate") -> dict:
    arguments = json.dumps({"expression": expression})
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_chat(*, status: str | None = "done", text: str = "") -> Chat:
    """What 6*7? -> a reply calling calculate (``text`` before the call) -> its result (``status``) -> the answer."""
    chat = Chat(id="c", character="Assistant")
    chat.messages = [Message("user", "What is 6 times 7?"), Message("assistant", text, tool_calls=[call("c1")])]
    if status is not None:
        content = {"done": "42", "skipped": DECLINED, "error": "The tool calculate failed: ZeroDivisionError"}[status]
        chat.messages.append(Message("tool", content, tool_call_id="c1", name="calculate", status=status))
        chat.messages.append(Message("assistant", "It is 42."))
    return chat


def test_a_call_is_a_block_with_its_arguments_and_result_and_the_tool_message_is_no_bubble():
    shown = to_display(tool_chat(), "en")
    assert [e["role"] for e in shown] == ["user", "assistant", "assistant"]
    user, block, answer = shown
    assert user["content"] == "What is 6 times 7?" and answer["content"] == "It is 42."
    assert block["metadata"] == {"title": f"{TOOL_MARK}calculate", "status": "done"}
    body = block["content"]
    assert body.index("Arguments") < body.index('"expression": "6*7"') < body.index("Result") < body.index("42")
    assert is_thought(block) and not is_thought(answer)
    # the reply's text (when it wrote any) comes first, then its calls
    with_text = to_display(tool_chat(text="Let me compute."), "en")
    assert [e["content"] for e in with_text[:2]][0] == "What is 6 times 7?"
    assert with_text[1]["content"] == "Let me compute." and with_text[2]["metadata"]["title"] == f"{TOOL_MARK}calculate"


def test_waiting_skipped_and_failed_calls_are_marked():
    waiting = to_display(tool_chat(status=None), "en")[-1]
    assert waiting["metadata"]["status"] == "pending" and "waiting" in waiting["metadata"]["title"]
    assert "Result" not in waiting["content"]
    skipped = to_display(tool_chat(status="skipped"), "en")[1]
    assert skipped["metadata"] == {"title": f"{TOOL_MARK}calculate · skipped", "status": "done"}
    assert DECLINED in skipped["content"]
    failed = to_display(tool_chat(status="error"), "en")[1]
    assert failed["metadata"]["title"] == f"{TOOL_MARK}calculate · ⚠ error" and "ZeroDivisionError" in failed["content"]
    assert "пропущен" in to_display(tool_chat(status="skipped"), "ru")[1]["metadata"]["title"]


def test_two_calls_of_one_reply_each_get_their_own_result():
    chat = Chat(id="c", character="Assistant")
    chat.messages = [
        Message("user", "a?"),
        Message("assistant", "", tool_calls=[call("c1", "1+1"), call("c2", "2+2")]),
        Message("tool", "2", tool_call_id="c1", name="calculate", status="done"),
        Message("tool", "4", tool_call_id="c2", name="calculate", status="done"),
    ]
    blocks = to_display(chat, "en")[1:]
    assert len(blocks) == 2
    assert '"1+1"' in blocks[0]["content"] and blocks[0]["content"].endswith("```\n2\n```")
    assert '"2+2"' in blocks[1]["content"] and blocks[1]["content"].endswith("```\n4\n```")


def test_a_result_with_backticks_cannot_break_out_of_its_block():
    assert fenced("a ``` b") == "````\na ``` b\n````"


def test_clicked_entries_map_to_their_messages_past_thinking_and_tool_blocks():
    chat = tool_chat(text="Let me compute.")
    chat.messages[1].set_reasoning("I should use the calculator.")
    chat.messages += [Message("user", "thanks"), Message("assistant", "You're welcome.")]
    shown = to_display(chat, "en")
    targets = entry_targets(chat, shown)
    assert targets == [
        (0, "text"),
        (1, "thinking"),
        (1, "text"),
        (1, "tool"),
        (3, "text"),  # message 2 is the tool result: no entry of its own
        (4, "text"),
        (5, "text"),
    ]
    # a window of the newest messages: the line counting the hidden ones maps to nothing
    windowed = to_display(chat, "en", window=3)
    assert windowed[0]["content"].startswith("<!--earlier-->")
    assert entry_targets(chat, windowed) == [None, (3, "text"), (4, "text"), (5, "text")]
    # Gradio's message objects (the edit event's value) work too
    objects = [SimpleNamespace(content=e["content"], metadata=e.get("metadata")) for e in shown]
    assert entry_targets(chat, objects) == targets
    # ...and the box as the page sends it back (contents as lists of parts)
    import gradio as gr

    box = gr.Chatbot()
    assert entry_targets(chat, box.preprocess(box.postprocess(windowed))) == entry_targets(chat, windowed)
    assert entry_targets(chat, box.preprocess(box.postprocess(shown))) == targets


def test_remove_last_takes_the_whole_tool_exchange():
    chat = tool_chat()
    chat.messages.insert(0, Message("assistant", "Hello!"))
    assert remove_exchange(chat) == "What is 6 times 7?"
    assert [m.content for m in chat.messages] == ["Hello!"]
    plain = Chat(id="p", character="Assistant", messages=[Message("user", "hi"), Message("assistant", "hey")])
    assert remove_exchange(plain) == "hi" and plain.messages == []


def test_markdown_export_shows_each_call_and_its_result():
    md = chat_markdown(tool_chat(text="Let me compute."), "Assistant", "You")
    assert md.index("Let me compute.") < md.index("**Tool call: `calculate`**") < md.index('"expression": "6*7"')
    assert md.index('"expression"') < md.index("**Result:**") < md.index("42") < md.index("It is 42.")
    assert "**Result (skipped):**" in chat_markdown(tool_chat(status="skipped"), "Assistant", "You")
    assert "waiting for Run or Skip" in chat_markdown(tool_chat(status=None), "Assistant", "You")
    # a reply that is only calls has no empty speaker line
    assert chat_markdown(tool_chat(), "Assistant", "You").count("**Assistant:**") == 1


def test_the_approval_question_and_the_list_labels():
    assert ask_text(call("c1"), "en") == 'The model wants to run ` calculate({"expression": "6*7"}) `'
    odd = call("c2", "`rm -rf`")
    assert "``" in ask_text(odd, "en")  # a backtick in the arguments cannot close the code span
    long = ask_text(call("c3", "1+" * 500), "en")
    assert long.endswith("…) `") and len(long) < 400
    info = ToolInfo("calculate", "calculate.py", read_only=True)
    assert tool_label(info, "en") == "calculate - calculate.py (read-only)"


def test_the_panel_values_go_into_the_chat_and_a_missing_tool_stays_ticked():
    usable = [ToolInfo("calculate", "calculate.py"), ToolInfo("current_time", "current_time.py")]
    chat = Chat(id="c", character="Assistant", tools=["calculate", "web__search"])  # web__search: server down
    assert apply_panel(chat, usable, ["current_time"], True, 3)
    assert chat.tools == ["current_time", "web__search"] and chat.force_tool and chat.tool_rounds == 3
    assert not apply_panel(chat, usable, ["current_time"], True, 3)
    apply_panel(chat, usable, ["current_time"], False, None)  # an emptied number box keeps the limit
    assert chat.tool_rounds == 3 and not chat.force_tool
    apply_panel(chat, usable, [], False, 1000)
    assert chat.tool_rounds == 100


def test_the_folder_box_takes_only_a_folder(tmp_path):
    remembered: dict = {}
    services = SimpleNamespace(
        settings=SimpleNamespace(tools_folder=None),
        tool_context=SimpleNamespace(allowed_folder=None),
        remember=lambda **kw: remembered.update(kw),
    )
    assert set_folder(services, str(tmp_path)) == tmp_path.resolve()
    assert services.tool_context.allowed_folder == tmp_path.resolve()
    assert remembered == {"tools_folder": str(tmp_path.resolve())}
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SettingsError, match="is not a folder"):
        set_folder(services, str(tmp_path / "file.txt"))
    assert services.tool_context.allowed_folder == tmp_path.resolve()  # nothing changed
    assert set_folder(services, "") is None and remembered == {"tools_folder": None}
