"""Chat tab: the conversation (box, input, buttons, Send/Stop, context meter, prompt view) and its layout.

The chats list lives in ``chat_history_panel``, the character picker, cards and editor in
``character_panel``; what all three share (how a chat is shown, the page's open chat) in
``chat_page``. ``to_display``, ``shown_offset`` and ``DISPLAY_WINDOW`` are re-exported here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import gradio as gr

from webui.agents.types import ToolChoice
from webui.catalogue import in_language
from webui.characters.character import DEFAULT_CHARACTER
from webui.chat.history import Chat
from webui.chat.prompt import MODES, ChatOptions, Mode, Persona, Prompt
from webui.chat.service import Action, Turn, edit_message, remove_last, switch_version
from webui.errors import ChatActionError, ChatBusyError, WebUIError
from webui.services import Services
from webui.ui.attachments_ui import TOO_BIG_KEY, AttachmentsPanel
from webui.ui.character_panel import CharacterPanel, notes_text
from webui.ui.chat_history_panel import HistoryPanel
from webui.ui.chat_page import (
    DISPLAY_WINDOW,
    EARLIER_MARK,
    MODEL_TEMPLATE,
    ChatPage,
    entry_targets,
    shown_offset,
    stats_line,
    to_display,
)
from webui.ui.common import (
    Frames,
    error_text,
    error_toast,
    inform,
    on_pick,
    save_note,
    save_note_box,
    save_or_warn,
    ui_errors,
    warn,
)
from webui.ui.i18n import page_language, t, tr
from webui.ui.parameters_tab import params_from_values
from webui.ui.queue_panel import place_of
from webui.ui.session import keep_request
from webui.ui.tools_panel import ToolsPanel, apply_panel, call_parts

__all__ = [
    "DISPLAY_WINDOW",
    "EARLIER_MARK",
    "MODEL_TEMPLATE",
    "build_chat_tab",
    "meter_text",
    "shown_offset",
    "stats_line",
    "to_display",
]

log = logging.getLogger(__name__)

#: The approval row's buttons: what ``act`` does with the call it asked about.
DECISIONS = ("run", "skip", "always")

#: Client-side, on every change of the chat box: the line under it shows the stats of the last reply
#: (``to_display`` keeps them in the message's metadata, out of its text: the edit box, Copy).
LAST_STATS_JS = """
(messages) => {
  const list = messages || [];
  const last = list[list.length - 1];
  const text = last && last.role === 'assistant' && last.metadata && last.metadata.log || '';
  return text ? '<sub>' + text.replace(/&/g, '&amp;').replace(/</g, '&lt;') + '</sub>' : '';
}
"""


def failure_text(exc: Exception, lang: str) -> str:
    """What a pop-up says about an error (the words ``ui_errors`` would raise it with)."""
    if isinstance(exc, WebUIError):
        return error_text(exc, lang)
    log.exception("Unexpected error in a chat turn")
    return tr("error.unexpected", lang, kind=type(exc).__name__, detail=str(exc))


def meter_text(prompt: Prompt | None, lang: str) -> str:
    """The context meter under the chat: this turn's prompt size (from the turn, never shared)."""
    if prompt is None:
        return tr("chat.meter_no_model", lang)
    key = "chat.meter_used_about" if prompt.tokens_estimated else "chat.meter_used"
    used = tr(key, lang, n=prompt.tokens, n_ctx=prompt.n_ctx)
    return used + (f" ⚠ {in_language(prompt.note, lang)}" if prompt.note else "")


def build_chat_tab(services: Services) -> dict[str, Any]:
    page = ChatPage(services)
    display, open_chat, remember_open = page.display, page.open_chat, page.remember_open
    attachments = AttachmentsPanel(services)

    def keep_draft(text: Any, lang: str | None = None) -> None:
        """Keep what the message box holds now (typed, or put back there), so a reload or a restart shows it;
        a value that is no text (the box left as it is) changes nothing."""
        if isinstance(text, str):
            save_or_warn(lambda: services.save_box("chat-draft", text), lang)

    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(
                label=t("chat.chat"),
                elem_id="chat-box",
                height=520,
                editable="all",
                buttons=["copy", "copy_all"],
                render_markdown=True,
                group_consecutive_messages=False,
            )
            reply_stats = gr.Markdown("", elem_id="chat-reply-stats")
            tools_panel = ToolsPanel(services, page)
            tools_panel.build_approval()
            attachments.build()
            with gr.Row():
                # lines=1 (growing to max_lines): Enter sends, Shift+Enter adds a line (Gradio's rule)
                message = gr.Textbox(
                    lines=1,
                    max_lines=12,
                    show_label=False,
                    elem_id="chat-input",
                    scale=5,
                    placeholder=t("chat.placeholder"),
                )
                send = gr.Button(t("chat.send"), variant="primary", elem_id="chat-send", scale=1, min_width=80)
                stop = gr.Button(t("common.stop"), variant="stop", elem_id="chat-stop", scale=1, min_width=80)
            draft_failed = save_note_box("chat-save-note")
            with gr.Row():
                regenerate = gr.Button(t("chat.regenerate"), elem_id="chat-regenerate", size="sm")
                cont = gr.Button(t("common.continue"), elem_id="chat-continue", size="sm")
                remove = gr.Button(t("chat.remove"), elem_id="chat-remove", size="sm")
                impersonate = gr.Button(t("chat.impersonate"), elem_id="chat-impersonate", size="sm")
                prev_version = gr.Button(t("chat.prev_version"), elem_id="chat-prev-version", size="sm")
                next_version = gr.Button(t("chat.next_version"), elem_id="chat-next-version", size="sm")
                show_all = gr.Button(t("chat.show_all"), elem_id="chat-show-all", size="sm")
            with gr.Row():
                start_with = gr.Textbox(
                    label=t("chat.start_with"),
                    elem_id="chat-start-with",
                    max_lines=2,
                    info=t("chat.start_with_info"),
                    scale=3,
                )
                window_box = gr.Number(
                    value=services.settings.chat_window,
                    label=t("chat.window"),
                    info=t("chat.window_info"),
                    precision=0,
                    minimum=0,
                    maximum=100_000,
                    elem_id="chat-window",
                    scale=1,
                    min_width=160,
                )
            meter = gr.Markdown("", elem_id="chat-meter")
            with gr.Accordion(t("chat.show_prompt"), open=False):
                show_prompt = gr.Button(t("chat.show_prompt_button"), elem_id="chat-show-prompt", size="sm")
                prompt_view = gr.Code(label=t("chat.rendered_prompt"), elem_id="chat-prompt", language=None, lines=8)
                lore_view = gr.Markdown("", elem_id="chat-lore")
        with gr.Column(scale=2):
            mode = gr.Radio(
                list(MODES), value="instruct", label=t("chat.mode"), elem_id="chat-mode", info=t("chat.mode_info")
            )
            people = CharacterPanel(services, page)
            people.build_picker()
            character_dd = people.dropdown
            system_prompt = gr.Textbox(
                label=t("chat.system_prompt"), lines=3, elem_id="chat-system", info=t("chat.system_prompt_info")
            )
            with gr.Row():
                user_name = gr.Textbox(value="You", label=t("chat.user_name"), elem_id="chat-user-name")
                user_bio = gr.Textbox(label=t("chat.user_bio"), elem_id="chat-user-bio", info=t("chat.user_bio_info"))
            setup_failed = save_note_box("chat-setup-save-note")
            template_dd = gr.Dropdown(
                choices=[(t("chat.template_own"), MODEL_TEMPLATE), *services.instruction_templates.names()],
                value=MODEL_TEMPLATE,
                label=t("chat.template"),
                elem_id="chat-template",
            )
            template_note = gr.Markdown("", elem_id="chat-template-note")
            # Shown only for a template that reads enable_thinking (page.thinking_switch).
            thinking = gr.Checkbox(
                value=True,
                label=t("chat.thinking_switch"),
                info=t("chat.thinking_switch_info"),
                elem_id="chat-thinking",
                visible=False,
            )
            tools_panel.build()
            history = HistoryPanel(services, page)
            people.build_cards_and_editor()

    # The open chat of this browser session: (character, chat id).
    current = gr.State(None)
    # The error a chat turn ended with, for the pop-up that follows it (None: none).
    turn_error = gr.State(None)

    # ------------------------------------------------------------------------------------------
    def options_of(mode_v: str, system: str, name: str, bio: str, think: bool | None = None) -> ChatOptions:
        mode = cast(Mode, mode_v if mode_v in MODES else "instruct")
        persona = Persona(name or "You", bio or "")
        return ChatOptions(mode=mode, system_prompt=system or "", persona=persona, thinking=think)

    template_for = page.template_for

    # A page's "is a reply being written?" and the start of its reply are one step, so two quick
    # Sends (a double click, Enter and the button) cannot both start one.
    starting = threading.Lock()
    keep = gr.update()

    def act(
        action: str,
        request: gr.Request,
        state: Any,
        asking: str | None,
        text: str,
        character: str,
        mode_v: str,
        system: str,
        name: str,
        bio: str,
        tpl: str,
        think: bool,
        prefix: str,
        tool_names: list[str] | None,
        force: bool,
        rounds: float | None,
        waiting: list[Any] | None,
        fit: bool,
        *values: Any,
    ) -> Any:
        """Send / Regenerate / Continue / Impersonate, and Run / Skip / Always allow of a tool call,
        streamed into the chat box.

        After a reply that made tool calls, the calls that may run without asking run at once and the
        others wait in the approval row (the handler ends there; Run / Skip / Always come back here with
        the call they answer). Once every call of a reply has its result the model answers them
        ("respond"), and so on until a reply makes no calls (the chat's round limit ends it too: its
        notice is shown). Stop ends the loop and a running tool (that call waits again).

        The message box is left alone while the reply streams (what the user types meanwhile stays):
        a Send empties it once at the start, an Impersonate writes into it. The files attached (``waiting``)
        go with a Send ( ``fit``: only the part that fits); their chips go when the message is in the chat,
        and stay, with the text, when the Send is refused (too big, an image for a model that cannot see).
        It never raises: an error goes out in ``turn_error`` for the next step to show as a pop-up, since
        a handler that raises puts Gradio's "Error" badge in place of its outputs - here, the whole chat.
        Outputs: chat box, message box, open chat, meter, template note, Send button, turn_error, tool
        notice, the approval row's four (:attr:`ToolsPanel.approval_outputs`) and the attachments' three
        (:attr:`AttachmentsPanel.outputs`).
        """
        lang = page_language(request)
        session = request.session_hash or "anonymous"
        with starting:
            cancel = None if services.cancels.running(session) else services.cancels.start(session)
        if cancel is None:  # this page is already writing a reply (or a notebook text, a comparison)
            warn(tr("chat.busy", lang), lang)
            yield keep, keep, keep, keep, keep, keep, None, keep, keep, keep, keep, keep, keep, keep, keep
            return
        ui: dict[str, Any] = {"box": keep, "opened": keep, "meter": keep, "note": keep, "tool_note": keep}
        attached: list[Any] = list(waiting or [])  # the files waiting to go with a Send
        sent: list[Any] = []
        files: list[Any] = [keep, keep, keep]  # the attachments' outputs
        approval: list[Any] = tools_panel.approval_values(None, lang)  # hidden while the turn runs
        error: str | None = None
        view: Any = keep
        chat: Chat | None = None
        turn: Turn | None = None
        notices: list[str] = []

        def out(view: Any, send_button: Any = keep) -> tuple[Any, ...]:
            # another chat opened on this page meanwhile: the reply goes on into its own chat, off screen
            # (and the lines about it - its prompt's size, template note, tool notice, a call waiting for Run -
            # are not drawn over the chat shown)
            away = chat is not None and not page.shows(session, chat)
            return (
                keep if away else view,
                ui["box"],
                keep if away else ui["opened"],
                keep if away else ui["meter"],
                keep if away else ui["note"],
                send_button,
                None,
                keep if away else ui["tool_note"],
                *([keep] * len(approval) if away else approval),
                *files,
            )

        try:
            chat = open_chat(state, character)
            # the chat keeps the set-up (and the Tools panel's values) it is sent with
            page.use_setup(chat, mode_v, system, name, bio, tpl, think)
            apply_panel(chat, tools_panel.usable(), tool_names, force, rounds)
            page.remember_tools(chat)
            specs = services.tools.specs(chat.tools)
            speaker = services.characters.load(character)
            options = options_of(mode_v, system, name, bio, think is not False)
            params = params_from_values(values)

            def start(kind: Action) -> Turn:
                # "make the model call a tool" holds for what the user asks, never for answering results
                forced = chat.force_tool and bool(specs) and kind in ("send", "regenerate")
                return services.chat_service.turn(
                    chat,
                    kind,
                    text=text if kind == "send" else "",
                    character=speaker,
                    options=options,
                    params=params,
                    cancel=cancel,
                    # Impersonate goes on from what you had begun to type (text-generation-webui's way); the
                    # "Start reply with" text is for the model's own replies
                    reply_prefix=(text or "") if kind == "impersonate" else (prefix or "") if kind != "respond" else "",
                    tools=specs if kind != "impersonate" else [],
                    tool_choice=ToolChoice("required") if forced else None,
                    uploads=attachments.uploads(attached) if kind == "send" else None,
                    fit="trim" if fit else "refuse",
                )

            def stream(turn: Turn, kind: Action, queued: bool = False) -> Any:
                frames = Frames(services.settings.ui_updates_per_second)
                for partial in turn:
                    if kind == "impersonate":
                        ui["box"] = partial  # the model writes your next message into the input box
                    if queued:  # its turn came: the button says it is generating now
                        queued = False
                        yield out(display(chat, lang, thinking=turn.thinking), generating)
                    elif frames.due():  # the last text is sent after the loop in any case
                        yield out(display(chat, lang, thinking=turn.thinking))

                if kind == "impersonate":  # kept as if typed
                    keep_draft(ui["box"], lang)
                # the files still waiting (attached before a Regenerate...) keep their line
                ui["meter"] = attachments.meter(meter_text(turn.prompt, lang), attached, lang)
                prompt = turn.prompt
                if prompt is not None and prompt.template_note:
                    ui["note"] = in_language(prompt.template_note, lang)
                if turn.notice:
                    notices.append(turn.notice)
                    ui["tool_note"] = "\n\n".join(f"ⓘ {n}" for n in notices)
                    inform(turn.notice, lang)

            def busy(turn: Turn) -> Any:
                """The Send button while the turn runs: how many requests run before it (the server takes
                turns between users), else generating."""
                ahead, wait = place_of(services, turn.job)
                if not ahead:
                    return generating
                text = tr("chat.waiting", lang, n=ahead, s=f"{max(1, round(wait)):d}")
                return gr.update(value=text, elem_classes=["generating"])

            generating = gr.update(value=tr("chat.generating", lang), elem_classes=["generating"])
            decision = (action, asking) if action in DECISIONS else None
            ui["tool_note"] = ""
            if decision is not None:
                if asking not in {c.get("id") for c in chat.pending_calls()}:
                    raise ChatActionError("That tool call has already been answered.", key="chat.tool_gone")
                ui["opened"] = remember_open(chat, session)
            else:
                kind = cast(Action, action)
                if kind == "continue" and chat.messages and chat.messages[-1].role == "tool":
                    kind = "respond"  # stopped after the results: Continue lets the model answer them
                turn = start(kind)
                ui["opened"] = remember_open(chat, session)
                if kind == "send":  # the message at once, before the reply starts; the box empties once
                    ui["box"] = ""
                    keep_draft("", lang)  # it is in the chat now
                    sent, attached = attached, []
                    files[:] = attachments.values([], lang, reset=True)  # the files went with it
                    yield out(display(chat, lang)[:-1], label := busy(turn))
                    ui["box"] = keep
                    files[:] = [keep, keep, keep]
                else:
                    yield out(display(chat, lang), label := busy(turn))
                yield from stream(turn, kind, queued=label is not generating)
            while action != "impersonate" and not cancel.is_set():
                pending = chat.pending_calls()
                if pending:
                    call_id, tool, arguments = call_parts(pending[0])
                    if decision is not None and decision[1] == call_id:
                        verdict = decision[0]
                    elif tools_panel.may_run(chat, tool):
                        verdict = "run"
                    else:
                        break  # it waits for the user (the approval row)
                    decision = None
                    if verdict == "always":
                        if tool not in chat.tools_always:
                            chat.tools_always.append(tool)
                            services.chats.save(chat, touch=False)
                        verdict = "run"
                    if verdict == "skip":
                        services.chat_service.resolve_call(chat, call_id, None)
                    else:
                        yield out(display(chat, lang), generating)
                        result = services.tools.run(tool, arguments, cancel)
                        if cancel.is_set():
                            break  # stopped: the call waits again for Run or Skip
                        services.chat_service.resolve_call(chat, call_id, result)
                    yield out(display(chat, lang))
                    continue
                if not chat.messages or chat.messages[-1].role != "tool":
                    break  # a reply without calls: the answer
                turn = start("respond")
                yield out(display(chat, lang), generating)
                yield from stream(turn, "respond")
            view = display(chat, lang)
        except Exception as exc:
            error = failure_text(exc, lang)
            if isinstance(exc, WebUIError) and exc.key == TOO_BIG_KEY:
                # refused whole: the chips stay, and "Send only what fits" is pointed at
                error = f"{error} {tr('attach.fit_hint', lang)}"
                files[:] = attachments.values(attached, lang, offer=True)
            if turn is not None and chat is not None:
                if action == "send" and turn.action == "send" and turn.unanswered:
                    # The model never answered it (unloaded meanwhile, a remote server down...): take the message
                    # back into the box, and its files back into the chips, so a second Send does not leave it
                    # twice in the chat.
                    ui["box"] = remove_last(chat) or ui["box"]
                    keep_draft(ui["box"], lang)
                    save_or_warn(lambda: services.chats.save(chat), lang)
                    services.chats.prune_files(chat)
                    attached = sent
                    files[:] = attachments.values(attached, lang)
                view = display(chat, lang)
        finally:
            services.cancels.end(session, cancel)
        if chat is not None:
            calls = chat.pending_calls()
            approval[:] = tools_panel.approval_values(calls[0] if calls else None, lang)
        yield (*out(view)[:6], error, *out(view)[7:])

    def after_turn(request: gr.Request, character: str, state: Any) -> list[Any]:
        """The chats list and title after a turn, and the Send button back to normal once nothing runs."""
        lang = page_language(request)
        idle = not services.cancels.running(request.session_hash or "anonymous")
        saved = bool(state) and history.listed_ok(character, state[1])
        return [
            history.listed(character, state[1] if state else None),
            services.chats.load(character, state[1]).title if saved else keep,
            gr.update(value=tr("chat.send", lang), elem_classes=[]) if idle else keep,
        ]

    def report(error: str | None) -> None:
        if error:
            raise error_toast(error)

    def on_stop(request: gr.Request) -> None:
        services.cancels.stop(request.session_hash or "anonymous")

    param_inputs: list[Any] = []

    def after_build(demo: gr.Blocks) -> None:
        show_stats_after_writes(demo, chatbot, reply_stats)
        demo.unload(page.forget_page)  # (ChatPage.showing keeps no entry of a closed page)

    def wire(param_components: list[Any], preset_state: tuple[Any, list[Any]] | None = None) -> None:
        param_inputs.extend(param_components)
        common = [
            current,
            message,
            character_dd,
            mode,
            system_prompt,
            user_name,
            user_bio,
            template_dd,
            thinking,
            start_with,
            tools_panel.tools,
            tools_panel.force,
            tools_panel.rounds,
            attachments.pending,
            attachments.fit,
            *param_components,
        ]
        common.insert(1, tools_panel.asking)
        outs = [
            chatbot,
            message,
            current,
            meter,
            template_note,
            send,
            turn_error,
            tools_panel.note,
            *tools_panel.approval_outputs,
            *attachments.outputs,
        ]
        for trigger, action in (
            (send.click, "send"),
            (message.submit, "send"),
            (regenerate.click, "regenerate"),
            (cont.click, "continue"),
            (impersonate.click, "impersonate"),
            (tools_panel.run.click, "run"),
            (tools_panel.skip.click, "skip"),
            (tools_panel.always.click, "always"),
        ):
            # the last reply's stats line goes at once (the new reply's comes when it ends: after_build)
            trigger(None, None, reply_stats, js="() => ''", queue=False, show_progress="hidden")
            # .then follows a turn that ended in an error too: Send is back to normal, then the pop-up.
            trigger(_bind(act, action), common, outs, concurrency_limit=None, show_progress="hidden").then(
                after_turn, [character_dd, current], [history.chats_dd, history.title, send], queue=False
            ).then(report, turn_error, None, concurrency_limit=None, show_progress="hidden")  # queued: a pop-up
        people.wire_import(
            param_components,
            model_changed=on_model_changed,
            model_changed_outputs=[template_dd, template_note, thinking],
            preset_state=preset_state,
        )

    stop.click(on_stop, None, None, queue=False)
    attachments.wire(meter)

    def on_typed(text: str) -> Any:
        return save_note(lambda: services.save_box("chat-draft", text))

    for edited in (message.input, message.blur):
        edited(on_typed, message, draft_failed, queue=False, show_progress="hidden", trigger_mode="always_last")

    def not_busy(step: Callable[[], object], lang: str) -> bool:
        """Run ``step`` of a change to the open chat; False (and a warning: nothing changed) if a reply being
        written into the chat refuses it (``ChatBusyError``: the reply's next save would undo the change)."""
        try:
            step()
        except ChatBusyError as exc:
            warn(error_text(exc, lang), lang)
            return False
        return True

    def idle(state: Any, character: str, lang: str) -> bool:
        """Wait a moment for a reply being written into the open chat (a Stop just pressed) before a change
        loads it; False (and a warning) if it still runs."""
        if not (state and state[0] == character):
            return True
        return not_busy(lambda: services.chats.require_idle(services.chats.path_of(character, state[1])), lang)

    def save_change(chat: Chat, lang: str) -> bool:
        """Save a change to the open chat's messages; False (and a warning) while a reply is written into it."""
        return not_busy(lambda: services.chats.save_change(chat), lang)

    @ui_errors
    def on_remove(state: Any, character: str, waiting: list[Any] | None, meter_now: str | None) -> Any:
        """Remove the last exchange; its message goes back into the box, and its files back into the chips."""
        lang = page_language()
        if not idle(state, character, lang):
            return (gr.skip(),) * (3 + len(tools_panel.approval_outputs) + len(attachments.outputs) + 1)
        chat = open_chat(state, character)
        kept = chat.messages[:]
        text = remove_exchange(chat)
        taken = [a for m in kept[len(chat.messages) :] if m.role == "user" for a in m.attachments]
        if not save_change(chat, lang):
            return (gr.skip(),) * (3 + len(tools_panel.approval_outputs) + len(attachments.outputs) + 1)
        now = attachments.reattach(chat, taken, list(waiting or []), lang) if taken else list(waiting or [])
        if taken:
            services.chats.prune_files(chat)  # the chips hold the files now; the stored copies go
        if text:
            keep_draft(text, lang)  # back in the box: kept as if typed
        return (
            display(chat),
            text,
            remember_open(chat),
            *tools_panel.approval_values(None, lang),
            *attachments.values(now, lang),
            attachments.meter(meter_now, now, lang),
        )

    remove.click(
        on_remove,
        [current, character_dd, attachments.pending, meter],
        [chatbot, message, current, *tools_panel.approval_outputs, *attachments.outputs, meter],
        concurrency_limit=None,  # queued: "a reply is being written into this chat" reaches the page
        show_progress="hidden",
    )

    @ui_errors
    def on_version(delta: int, state: Any, character: str) -> Any:
        if not idle(state, character, page_language()):
            return gr.skip()
        chat = open_chat(state, character)
        for i in range(len(chat.messages) - 1, -1, -1):
            if chat.messages[i].role == "assistant":
                switch_version(chat, i, delta)
                if not save_change(chat, page_language()):
                    return gr.skip()
                break
        return display(chat)

    prev_version.click(lambda s, c: on_version(-1, s, c), [current, character_dd], chatbot, show_progress="hidden")
    next_version.click(lambda s, c: on_version(1, s, c), [current, character_dd], chatbot, show_progress="hidden")

    @ui_errors
    def on_edit(state: Any, character: str, shown: Any, data: gr.EditData) -> Any:
        if not idle(state, character, page_language()):
            return gr.skip()  # the reply streaming into the box shows the chat as it stays
        chat = open_chat(state, character)
        targets = entry_targets(chat, shown)
        whole = not (targets and targets[0] is None) and len(targets) == len(display(chat, all_messages=True))
        index = data.index if isinstance(data.index, int) else data.index[0]
        target = targets[index] if 0 <= index < len(targets) else None
        if target is None or target[1] in ("tool", "attachment"):  # the "earlier" line, a call's block, a file
            return display(chat, all_messages=whole)
        value = data.value if isinstance(data.value, str) else str(data.value)
        number, part = target
        if part == "thinking":  # a reply's Thinking block: its thinking is edited, the reply stays
            chat.messages[number].set_reasoning(value)
        else:
            edit_message(chat, number, value)
        if not save_change(chat, page_language()):
            return gr.skip()  # the reply streaming into the box shows the chat as it stays
        return display(chat, all_messages=whole)

    # queued: "a reply is being written into this chat" reaches the page
    chatbot.edit(on_edit, [current, character_dd, chatbot], chatbot, concurrency_limit=None, show_progress="hidden")
    show_all.click(
        ui_errors(lambda state, character: display(open_chat(state, character), all_messages=True)),
        [current, character_dd],
        chatbot,
        queue=False,
    )

    @ui_errors
    def on_window(value: Any, state: Any, character: str) -> Any:
        """This user's number of messages the chat box shows (0: all), kept for their next visits."""
        lang = page_language()
        try:
            count = int(value)
        except (TypeError, ValueError):
            raise error_toast(tr("chat.window_invalid", lang)) from None
        if not 0 <= count <= 100_000 or count != value:
            raise error_toast(tr("chat.window_invalid", lang))
        if count != services.settings.chat_window:
            save_or_warn(lambda: services.remember(chat_window=count), lang)
        return display(open_chat(state, character))

    for leave in (window_box.submit, window_box.blur):  # queued: a wrong number's error shows as a pop-up
        leave(on_window, [window_box, current, character_dd], chatbot, concurrency_limit=None, show_progress="hidden")

    @ui_errors
    def on_show_prompt(
        state: Any, character: str, mode_v: str, system: str, name: str, bio: str, tpl: str, think: bool, prefix: str
    ) -> list[str]:
        prompt = page.preview_prompt(
            state, character, options_of(mode_v, system, name, bio, think is not False), tpl, prefix
        )
        if prompt is None:
            return [tr("chat.no_model", page_language()), ""]
        return [prompt.text, prompt.lore.summary()]

    def on_template(choice: str | None) -> list[Any]:
        try:
            note = template_for(choice)[1]
        except WebUIError as exc:
            # A template file broken by hand: not taken. The dropdown goes back to the template in force and
            # the note under it says why (this event is unqueued: a pop-up would not show).
            before = page.template_choice()
            try:
                kept = template_for(before)[1]
            except WebUIError:
                kept = ""
            reason = f"⚠ {error_text(exc, page_language())}"
            return [gr.update(value=before), f"{reason}\n\n{kept}".strip(), page.thinking_switch(before)]
        page.use_template(choice)
        return [gr.update(), note, page.thinking_switch(choice)]

    on_pick(template_dd, ui_errors(on_template), [template_dd], [template_dd, template_note, thinking], queue=False)

    show_prompt.click(
        on_show_prompt,
        [current, character_dd, mode, system_prompt, user_name, user_bio, template_dd, thinking, start_with],
        [prompt_view, lore_view],
        queue=False,
    )

    # --- the chats list, the character panel ---------------------------------------------------
    setup_inputs: list[Any] = [mode, system_prompt, user_name, user_bio, template_dd, thinking]
    history.wire(
        chatbot=chatbot,
        current=current,
        character_dd=character_dd,
        user_name=user_name,
        setup=[*setup_inputs[:5], template_note, thinking],  # in page.setup_values' order
        extra_outputs=tools_panel.chat_outputs,
        extra_values=lambda chat: tools_panel.chat_values(chat),
    )
    tools_panel.wire(current=current, character_dd=character_dd, mode=mode)
    people.wire(history=history)

    def keep_setup(state: Any, character: str, *values: Any) -> Any:
        """A failed save is written under the boxes (an unqueued event's pop-up never shows)."""
        return save_note(lambda: page.keep_setup(state, character, *values))

    # The set-up goes into the open chat as it changes (and is remembered for new chats). A text box
    # also on blur: a paste or an autofill may change it without an input event reaching Gradio.
    for trigger in [*(box.input for box in setup_inputs), system_prompt.blur, user_name.blur, user_bio.blur]:
        trigger(
            keep_setup,
            [current, character_dd, *setup_inputs],
            setup_failed,
            queue=False,
            show_progress="hidden",
            trigger_mode="always_last",
        )

    def on_model_changed() -> list[Any]:
        """After a load: the instruction template chosen for that model, the note about it, and whether
        the Thinking switch is shown."""
        loaded = services.models.current
        choice = page.template_choice()
        try:
            note = template_for(choice)[1] if loaded else ""
        except WebUIError as exc:
            note = error_text(exc, page_language())
        return [choice, note, page.thinking_switch(choice)]

    def on_page_load() -> list[Any]:
        """A reload (or a restart) shows the chat that was open, with its set-up, and its character in the
        editor, as many messages as the user chose, and the message being written in the box."""
        return [*page_load_values(), services.settings.chat_window]

    def draft_for(chat: Chat | None) -> str:
        """The message that was being written (kept as it is typed), unless it has since been sent: a send
        empties the draft, but a blur that lands after it would put the sent text back."""
        draft = services.load_box("chat-draft")
        last = next((m.content for m in reversed(chat.messages) if m.role == "user"), None) if chat else None
        return "" if draft.strip() and draft == last else draft

    def page_load_values() -> list[Any]:
        character = services.settings.chat_character or DEFAULT_CHARACTER
        if character not in services.characters.names():
            character = DEFAULT_CHARACTER
        chat = None
        if services.settings.chat_id:
            try:
                chat = services.chats.load(character, services.settings.chat_id)
            except WebUIError:
                chat = None
        if chat is None:
            chat = services.chats.newest(character)
        *setup, choice, note, think = page.setup_values(chat, otherwise=lambda: on_model_changed()[:2])
        picture = services.characters.picture_of(character) if services.characters.is_valid(character) else None
        box = gr.update(value=display(chat) if chat else [], avatar_images=(None, str(picture) if picture else None))
        # The list as it is now: characters imported or saved since the app started are in it too.
        picked = gr.update(choices=services.characters.names(), value=character)
        try:
            notes = notes_text(services.characters.load(character))
            editor = [*people.editor_values(character), False]
        except WebUIError as exc:
            notes = f"⚠ {error_text(exc, page_language())}"
            editor = [gr.update()] * (len(people.editor) + 1)
        tools = [*tools_panel.chat_values(chat), *tools_panel.page_values(), draft_for(chat)]
        if chat is None:
            return [
                box,
                None,
                gr.update(choices=history.choices(character), value=None),
                "",
                picked,
                note,
                choice,
                notes,
                *people.export_files(character),
                *setup,
                think,
                *editor,
                *tools,
            ]
        return [
            box,
            (character, chat.id),
            gr.update(choices=history.choices(character), value=chat.id),
            chat.title,
            picked,
            note,
            choice,
            notes,
            *people.export_files(character),
            *setup,
            think,
            *editor,
            *tools,
        ]

    return {
        "wire": wire,
        "page_load": on_page_load,
        "model_changed": on_model_changed,
        "model_changed_outputs": [template_dd, template_note, thinking],
        "page_load_outputs": [
            chatbot,
            current,
            history.chats_dd,
            history.title,
            character_dd,
            template_note,
            template_dd,
            people.creator_notes,
            *people.exports,
            *setup_inputs[:4],
            thinking,
            *people.editor,
            people.editor_unsaved,
            *tools_panel.chat_outputs,
            *tools_panel.page_outputs,
            message,
            window_box,
        ],
        "stop": stop,
        "after_build": after_build,
    }


def show_stats_after_writes(demo: gr.Blocks, chatbot: Any, reply_stats: Any) -> None:
    """After every event that writes the chat box (once it has finished), the line under it shows the last
    reply's figures (tokens, tokens/s), in the browser alone. Called once the whole page is built, so it
    follows the events of every panel.

    Not ``chatbot.change``: that fires on every streamed update, and each firing costs the browser
    Gradio's whole event dispatch (a copy of the chat among it): ~10 ms a token, CPU that a 2-core
    laptop takes from the model (bench/ui.py).
    """
    for parent in [fn._id for fn in demo.fns.values() if chatbot in fn.outputs]:
        demo.default_config.set_event_trigger(
            [],
            None,
            chatbot,
            reply_stats,
            js=LAST_STATS_JS,
            trigger_after=parent,
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )


def remove_exchange(chat: Chat) -> str:
    """Remove the last exchange: the last reply and the user message before it, or, when tools were
    used, the user message and everything after it (replies, calls and results). The removed user text."""
    last_user = next((i for i in range(len(chat.messages) - 1, -1, -1) if chat.messages[i].role == "user"), None)
    tail = chat.messages[last_user if last_user is not None else 0 :]
    if not any(m.role == "tool" or m.tool_calls for m in tail):
        return remove_last(chat)
    if last_user is None:  # a greeting's calls (a hand-made file): the calls and results go
        while chat.messages and (chat.messages[-1].role == "tool" or chat.messages[-1].tool_calls):
            chat.messages.pop()
        return ""
    text = chat.messages[last_user].content
    del chat.messages[last_user:]
    chat.context_start = min(chat.context_start, max(0, len(chat.messages) - 1))
    return text


def _bind(fn: Any, action: str) -> Any:
    def handler(request: gr.Request, *args: Any) -> Any:
        # a reply cut short by a reload is saved in its user's chat, not nobody's (see keep_request)
        yield from keep_request(fn(action, request, *args))

    return handler
