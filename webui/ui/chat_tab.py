"""Chat tab: the conversation (box, input, buttons, Send/Stop, context meter, prompt view) and its layout.

The chats list lives in ``chat_history_panel``, the character picker, cards and editor in
``character_panel``; what all three share (how a chat is shown, the page's open chat) in
``chat_page``. ``to_display``, ``shown_offset`` and ``DISPLAY_WINDOW`` are re-exported here.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

import gradio as gr

from webui.catalogue import in_language
from webui.characters.character import DEFAULT_CHARACTER
from webui.chat.history import Chat, Message
from webui.chat.prompt import MODES, ChatOptions, Mode, Persona, Prompt
from webui.chat.service import Action, Turn, edit_message, remove_last, switch_version
from webui.errors import WebUIError
from webui.services import Services
from webui.ui.character_panel import CharacterPanel, notes_text
from webui.ui.chat_history_panel import HistoryPanel
from webui.ui.chat_page import (
    DISPLAY_WINDOW,
    EARLIER_MARK,
    MODEL_TEMPLATE,
    ChatPage,
    shown_offset,
    shown_target,
    stats_line,
    to_display,
)
from webui.ui.common import Frames, error_text, error_toast, save_or_warn, ui_errors, warn
from webui.ui.i18n import page_language, t, tr
from webui.ui.parameters_tab import params_from_values

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
    characters = services.characters
    page = ChatPage(services)
    display, open_chat, remember_open = page.display, page.open_chat, page.remember_open
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
            with gr.Row():
                regenerate = gr.Button(t("chat.regenerate"), elem_id="chat-regenerate", size="sm")
                cont = gr.Button(t("common.continue"), elem_id="chat-continue", size="sm")
                remove = gr.Button(t("chat.remove"), elem_id="chat-remove", size="sm")
                impersonate = gr.Button(t("chat.impersonate"), elem_id="chat-impersonate", size="sm")
                prev_version = gr.Button(t("chat.prev_version"), elem_id="chat-prev-version", size="sm")
                next_version = gr.Button(t("chat.next_version"), elem_id="chat-next-version", size="sm")
                show_all = gr.Button(t("chat.show_all"), elem_id="chat-show-all", size="sm")
            start_with = gr.Textbox(
                label=t("chat.start_with"), elem_id="chat-start-with", max_lines=2, info=t("chat.start_with_info")
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
        action: Action,
        request: gr.Request,
        state: Any,
        text: str,
        character: str,
        mode_v: str,
        system: str,
        name: str,
        bio: str,
        tpl: str,
        think: bool,
        prefix: str,
        *values: Any,
    ) -> Any:
        """Send / Regenerate / Continue / Impersonate, streamed into the chat box.

        The message box is left alone while the reply streams (what the user types meanwhile stays):
        a Send empties it once at the start, an Impersonate writes into it. It never raises: an error
        goes out in the last value (``turn_error``) for the next step to show as a pop-up, since a handler
        that raises puts Gradio's "Error" badge in place of its outputs - here, the whole chat.
        Outputs: chat box, message box, open chat, meter, template note, Send button, turn_error.
        """
        lang = page_language(request)
        session = request.session_hash or "anonymous"
        with starting:
            cancel = None if services.cancels.running(session) else services.cancels.start(session)
        if cancel is None:  # this page is already writing a reply (or a notebook text, a comparison)
            warn(tr("chat.busy", lang), lang)
            yield keep, keep, keep, keep, keep, keep, None
            return
        view: Any = keep
        box: Any = keep
        opened: Any = keep
        meter: Any = keep
        note: Any = keep
        error: str | None = None
        chat: Chat | None = None
        turn: Turn | None = None
        try:
            chat = open_chat(state, character)
            # the chat keeps the set-up it is sent with
            page.use_setup(chat, mode_v, system, name, bio, tpl, think)
            turn = services.chat_service.turn(
                chat,
                action,
                text=text,
                character=characters.load(character),
                options=options_of(mode_v, system, name, bio, think is not False),
                params=params_from_values(values),
                cancel=cancel,
                reply_prefix=prefix or "",
            )
            opened = remember_open(chat)
            generating = gr.update(value=tr("chat.generating", lang), elem_classes=["generating"])
            if action == "send":  # the message at once, before the reply starts; the box empties once
                yield display(chat, lang)[:-1], "", opened, keep, keep, generating, None
            else:
                yield display(chat, lang), keep, opened, keep, keep, generating, None
            frames = Frames()
            for partial in turn:
                if action == "impersonate":
                    box = partial  # the model writes your next message into the input box
                if frames.due():  # the last text is sent after the loop in any case
                    yield display(chat, lang, thinking=turn.thinking), box, opened, keep, keep, keep, None
            view, meter = display(chat, lang), meter_text(turn.prompt, lang)
            prompt = turn.prompt
            if prompt is not None and prompt.template_note:
                note = in_language(prompt.template_note, lang)
        except Exception as exc:
            error = failure_text(exc, lang)
            if turn is not None and chat is not None:
                if action == "send" and turn.job.prepared is None:
                    # The model never saw it (unloaded meanwhile...): take the message back into the box,
                    # so a second Send does not leave it twice in the chat.
                    box = remove_last(chat) or box
                    save_or_warn(lambda: services.chats.save(chat), lang)
                view = display(chat, lang)
        finally:
            services.cancels.end(session, cancel)
        yield view, box, opened, meter, note, keep, error

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
            *param_components,
        ]
        outs = [chatbot, message, current, meter, template_note, send, turn_error]
        for trigger, action in (
            (send.click, "send"),
            (message.submit, "send"),
            (regenerate.click, "regenerate"),
            (cont.click, "continue"),
            (impersonate.click, "impersonate"),
        ):
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
    chatbot.change(None, chatbot, reply_stats, js=LAST_STATS_JS, queue=False, show_progress="hidden")

    @ui_errors
    def on_remove(state: Any, character: str) -> Any:
        chat = open_chat(state, character)
        text = remove_last(chat)
        services.chats.save(chat)
        return display(chat), text, remember_open(chat)

    remove.click(on_remove, [current, character_dd], [chatbot, message, current], queue=False)

    @ui_errors
    def on_version(delta: int, state: Any, character: str) -> Any:
        chat = open_chat(state, character)
        for i in range(len(chat.messages) - 1, -1, -1):
            if chat.messages[i].role == "assistant":
                switch_version(chat, i, delta)
                services.chats.save(chat)
                break
        return display(chat)

    prev_version.click(lambda s, c: on_version(-1, s, c), [current, character_dd], chatbot, show_progress="hidden")
    next_version.click(lambda s, c: on_version(1, s, c), [current, character_dd], chatbot, show_progress="hidden")

    @ui_errors
    def on_edit(state: Any, character: str, shown: Any, data: gr.EditData) -> Any:
        chat = open_chat(state, character)
        visible = [i for i, m in enumerate(chat.messages) if m.role in ("user", "assistant")]
        offset, marked = shown_offset(len(visible), shown)
        index = data.index if isinstance(data.index, int) else data.index[0]
        target = shown_target(len(visible), shown, index)
        if target is None:  # the "earlier messages" line is not a message
            return display(chat)
        value = data.value if isinstance(data.value, str) else str(data.value)
        number, of_thinking = target
        if of_thinking:  # a reply's Thinking block: its thinking is edited, the reply stays
            chat.messages[visible[number]].set_reasoning(value)
        else:
            edit_message(chat, visible[number], value)
        services.chats.save(chat)
        return display(chat, all_messages=True) if offset == 0 and not marked else display(chat)

    chatbot.edit(on_edit, [current, character_dd, chatbot], chatbot, queue=False)
    show_all.click(
        ui_errors(lambda state, character: display(open_chat(state, character), all_messages=True)),
        [current, character_dd],
        chatbot,
        queue=False,
    )

    @ui_errors
    def on_show_prompt(
        state: Any, character: str, mode_v: str, system: str, name: str, bio: str, tpl: str, think: bool, prefix: str
    ) -> list[str]:
        from webui.chat.prompt import build_prompt

        loaded = services.models.current
        if loaded is None:
            return [tr("chat.no_model", page_language()), ""]
        chat = open_chat(state, character)
        template, _ = template_for(tpl)
        history_messages = list(chat.messages) + [Message("user", tr("chat.next_message", page_language()))]
        prompt = build_prompt(
            chat,
            history_messages,
            characters.load(character),
            options_of(mode_v, system, name, bio, think is not False),
            template,
            n_ctx=loaded.backend.n_ctx,
            max_new_tokens=0,
            tokenize=loaded.backend.tokenize,
            reply_prefix=prefix or "",
        )
        return [prompt.text, prompt.lore.summary()]

    def on_template(choice: str | None) -> list[Any]:
        page.use_template(choice)
        return [template_for(choice)[1], page.thinking_switch(choice)]

    template_dd.input(ui_errors(on_template), template_dd, [template_note, thinking], queue=False)

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
    )
    people.wire(history=history)
    # The set-up goes into the open chat as it changes (and is remembered for new chats). A text box
    # also on blur: a paste or an autofill may change it without an input event reaching Gradio.
    for trigger in [*(box.input for box in setup_inputs), system_prompt.blur, user_name.blur, user_bio.blur]:
        trigger(
            ui_errors(page.keep_setup),
            [current, character_dd, *setup_inputs],
            None,
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
        """A reload (or a restart) shows the chat that was open, with its set-up, and its character in the editor."""
        character = services.settings.chat_character or DEFAULT_CHARACTER
        if character not in characters.names():
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
        picture = characters.picture_of(character) if characters.is_valid(character) else None
        box = gr.update(value=display(chat) if chat else [], avatar_images=(None, str(picture) if picture else None))
        # The list as it is now: characters imported or saved since the app started are in it too.
        picked = gr.update(choices=characters.names(), value=character)
        try:
            notes = notes_text(characters.load(character))
            editor = [*people.editor_values(character), False]
        except WebUIError as exc:
            notes = f"⚠ {error_text(exc, page_language())}"
            editor = [gr.update()] * (len(people.editor) + 1)
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
        ],
        "stop": stop,
    }


def _bind(fn: Any, action: str) -> Any:
    def handler(request: gr.Request, *args: Any) -> Any:
        yield from fn(action, request, *args)

    return handler
