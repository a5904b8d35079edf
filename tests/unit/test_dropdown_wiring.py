"""Every dropdown of the built UI reacts to a person's pick through ``on_pick`` (webui/ui/common.py).

Gradio 6.31's dropdown sends ``.input`` twice for a mouse pick and again whenever it only loses focus,
and no ``.select`` for a keyboard pick (tests/browser/test_dropdown_picks.py shows what that did to
users). A handler wired straight to ``.input`` or ``.select`` of a dropdown brings that back, unless a
repeat changes nothing: a handler that saves the values on the page (the chat set-up, the Compare rows)
with no outputs but the note saying whether that failed, or one that shows facts recomputed from them.
"""

from __future__ import annotations

import gradio as gr

from webui.services import Services
from webui.settings import Settings
from webui.ui import build_ui

#: Dropdowns whose plain .input handler only shows facts computed from the values on the page.
SAME_ANSWER_TWICE = {"opt-mmproj"}  # the model's facts (RAM, vision) for the projector shown


def notes_only(demo: gr.Blocks, dep: dict) -> bool:
    """A save that only says whether it failed (``save_note``): the same note for the same values."""
    return all("save-note" in (demo.blocks[out].elem_classes or []) for out in dep["outputs"])


def test_no_dropdown_handler_bypasses_on_pick(user_dir):
    demo = build_ui(Services.build(Settings(user_data_dir=user_dir)))
    dropdowns = {block_id for block_id, block in demo.blocks.items() if isinstance(block, gr.Dropdown)}
    picked, wrong = set(), []
    for dep in demo.config["dependencies"]:
        for target, event in dep["targets"]:
            if target not in dropdowns or event not in ("input", "select"):
                continue
            name = demo.blocks[target].elem_id
            if "webuiPick" in (dep.get("js") or ""):
                picked.add(name)
            elif event == "select" or (dep["outputs"] and name not in SAME_ANSWER_TWICE and not notes_only(demo, dep)):
                wrong.append(f"#{name} .{event}")
    assert not wrong, f"dropdown handlers not wired with on_pick: {wrong}"
    # the ones users pick in most, as a check that this test sees the handlers at all
    assert {"preset-dropdown", "chat-character", "model-dropdown", "ui-language"} <= picked, picked


def test_a_closed_page_leaves_no_entry_in_the_chat_pages_record(user_dir):
    """ChatPage.showing (which chat each page has open) forgets a page when Gradio unloads it (closed or
    reloaded), so the record does not grow by one entry per page opened for as long as the server runs."""
    from types import SimpleNamespace

    demo = build_ui(Services.build(Settings(user_data_dir=user_dir)))
    unloads = [fn for fn in demo.fns.values() if any(target[1] == "unload" for target in fn.targets)]
    assert len(unloads) == 1, unloads
    page = unloads[0].fn.__self__
    page.showing.update({"page-1": ("Assistant", "a"), "page-2": ("Assistant", "b")})
    unloads[0].fn(SimpleNamespace(session_hash="page-1"))
    assert page.showing == {"page-2": ("Assistant", "b")}
