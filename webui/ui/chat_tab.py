"""Chat tab: streaming chat with modes, characters, persona, templates and saved history."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from webui.catalogue import in_language
from webui.chat.prompt import MODES, ChatOptions, Persona
from webui.chat.service import edit_message, greeting_message, remove_last, switch_version
from webui.characters.character import DEFAULT_CHARACTER, Character
from webui.errors import WebUIError
from webui.chat.history import Chat, ChatNotFoundError, Message
from webui.characters.modelfile import export_modelfile
from webui.services import Services
from webui.storage import atomic_write_bytes, safe_name
from webui.ui.common import Frames, error_text, ui_errors
from webui.ui.i18n import page_language, t, tr
from webui.ui.parameters_tab import params_from_values, values_of

MODEL_TEMPLATE = "(model's own template)"


def stats_line(message: Message, lang: str | None = None) -> str:
    """The small line under a reply: its stats and, after a Regenerate, which version is shown."""
    lang = lang or page_language()
    parts = []
    if len(message.versions) > 1:
        parts.append(tr("chat.version_of", lang, n=message.active + 1, total=len(message.versions)))
    stats = message.stats
    if stats:
        ttft = f"{stats['ttft']:.2f} s" if stats.get("ttft") is not None else "-"
        parts += [tr("chat.stat_tokens", lang, n=stats["tokens"]),
                  tr("chat.stat_speed", lang, speed=stats["tokens_per_second"]),
                  tr("chat.stat_ttft", lang, ttft=ttft), str(stats.get("model", "")),
                  tr("chat.stat_seed", lang, seed=stats.get("seed", ""))]
    return f"\n\n<sub>{' · '.join(parts)}</sub>" if parts else ""


#: Messages shown in the chat box by default (settings.yaml ``chat_window``); older ones are one
#: click away ("Show all messages"). The browser re-renders the whole box on every streamed update:
#: a 500-message chat streamed 4.7 x slower than a 10-message one with every message shown
#: (bench/ui.py, docs/performance.md).
DISPLAY_WINDOW = 60
EARLIER_MARK = "<!--earlier-->"
_window: int | None = DISPLAY_WINDOW
_DEFAULT = object()


def configure_window(messages: int) -> None:
    """Set how many messages the chat box shows (0: all). One process serves one UI."""
    global _window
    _window = messages or None


def to_display(chat: Chat | None, lang: str | None = None, window: Any = _DEFAULT) -> list[dict[str, Any]]:
    """The chat as gr.Chatbot messages: stats under each reply, version arrows where there are versions.

    With ``window``, only the newest ``window`` messages are shown, after a first line saying how
    many earlier ones are hidden; the shown ones are always the newest (a suffix), which is how
    :func:`shown_offset` maps a clicked message back to the chat.
    """
    if chat is None:
        return []
    lang = lang or page_language()
    window = _window if window is _DEFAULT else window
    visible = [m for m in chat.messages if m.role in ("user", "assistant")]
    hidden = max(0, len(visible) - window) if window else 0
    out = []
    if hidden:
        out.append({"role": "assistant", "content": EARLIER_MARK + tr("chat.earlier_hidden", lang, n=hidden)})
    for m in visible[hidden:]:
        out.append({"role": m.role, "content": m.content + (stats_line(m, lang) if m.role == "assistant" else "")})
    return out


def shown_offset(n_visible: int, shown: list[Any] | None) -> tuple[int, bool]:
    """(chat index of the first shown message, whether the box starts with the 'earlier' line)."""
    shown = list(shown or [])
    first = shown[0] if shown else None
    content = first.get("content") if isinstance(first, dict) else getattr(first, "content", None)
    marked = isinstance(content, str) and content.startswith(EARLIER_MARK)
    return n_visible - (len(shown) - marked), marked


def chat_choices(services: Services, character: str, search: str = "") -> list[tuple[str, str]]:
    infos = services.chats.list(character)
    if search.strip():
        needle = search.strip().lower()
        kept = []
        for info in infos:
            if info.unreadable:
                continue
            chat = services.chats.load(character, info.id)
            if needle in info.title.lower() or any(needle in m.content.lower() for m in chat.messages):
                kept.append(info)
        infos = kept
    return [(f"{i.title} · {time.strftime('%Y-%m-%d %H:%M', time.localtime(i.updated))}", i.id) for i in infos]


def to_markdown(chat: Chat, character: str, user: str) -> str:
    names = {"user": user, "assistant": character}
    lines = [f"# {chat.title}", ""]
    for m in chat.messages:
        if m.role in names:
            lines += [f"**{names[m.role]}:**", "", m.content, ""]
    return "\n".join(lines)


def notes_text(character: Character, lang: str | None = None) -> str:
    """The card's creator notes, for the person (never sent to the model)."""
    lang = lang or page_language()
    notes = character.creator_notes.strip()
    extras = []
    if len(character.alternate_greetings):
        extras.append(tr("chat.alternate_greetings", lang, n=len(character.alternate_greetings)))
    if character.character_book is not None:
        extras.append(tr("chat.lorebook_entries", lang, n=len(character.character_book.entries)))
    parts = ([f"{tr('chat.creator_notes', lang)}\n\n{notes}"] if notes else []) + extras
    return "\n\n".join(parts)


def build_chat_tab(services: Services) -> dict[str, Any]:
    characters = services.characters
    configure_window(services.settings.chat_window)
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label=t("chat.chat"), elem_id="chat-box", height=520, editable="all",
                                 buttons=["copy", "copy_all"], render_markdown=True, group_consecutive_messages=False)
            with gr.Row():
                # lines=1 (growing to max_lines): Enter sends, Shift+Enter adds a line (Gradio's rule)
                message = gr.Textbox(lines=1, max_lines=12, show_label=False, elem_id="chat-input", scale=5,
                                     placeholder=t("chat.placeholder"))
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
            start_with = gr.Textbox(label=t("chat.start_with"), elem_id="chat-start-with", max_lines=2,
                                    info=t("chat.start_with_info"))
            meter = gr.Markdown("", elem_id="chat-meter")
            with gr.Accordion(t("chat.show_prompt"), open=False):
                show_prompt = gr.Button(t("chat.show_prompt_button"), elem_id="chat-show-prompt", size="sm")
                prompt_view = gr.Code(label=t("chat.rendered_prompt"), elem_id="chat-prompt", language=None, lines=8)
                lore_view = gr.Markdown("", elem_id="chat-lore")
        with gr.Column(scale=2):
            mode = gr.Radio(list(MODES), value="instruct", label=t("chat.mode"), elem_id="chat-mode",
                            info=t("chat.mode_info"))
            character_dd = gr.Dropdown(choices=characters.names(), value=DEFAULT_CHARACTER, label=t("chat.character"),
                                       elem_id="chat-character")
            creator_notes = gr.Markdown("", elem_id="chat-creator-notes")
            system_prompt = gr.Textbox(label=t("chat.system_prompt"), lines=3, elem_id="chat-system",
                                       info=t("chat.system_prompt_info"))
            with gr.Row():
                user_name = gr.Textbox(value="You", label=t("chat.user_name"), elem_id="chat-user-name")
                user_bio = gr.Textbox(label=t("chat.user_bio"), elem_id="chat-user-bio", info=t("chat.user_bio_info"))
            template_dd = gr.Dropdown(choices=[(t("chat.template_own"), MODEL_TEMPLATE),
                                               *services.instruction_templates.names()],
                                      value=MODEL_TEMPLATE, label=t("chat.template"), elem_id="chat-template")
            template_note = gr.Markdown("", elem_id="chat-template-note")
            with gr.Accordion(t("chat.chats"), open=True):
                search = gr.Textbox(label=t("chat.search"), elem_id="chat-search", max_lines=1)
                chats_dd = gr.Dropdown(choices=[], label=t("chat.past_chats"), elem_id="chat-list")
                with gr.Row():
                    new_chat = gr.Button(t("chat.new_chat"), elem_id="chat-new", size="sm")
                    delete_chat = gr.Button(t("common.delete"), variant="stop", elem_id="chat-delete", size="sm")
                with gr.Row(visible=False) as confirm_row:
                    confirm_delete = gr.Button(t("chat.delete_confirm"), variant="stop", elem_id="chat-delete-confirm",
                                               size="sm")
                    cancel_delete = gr.Button(t("common.cancel"), size="sm")
                with gr.Row():
                    title = gr.Textbox(label=t("chat.title"), elem_id="chat-title", max_lines=1, scale=3)
                    rename = gr.Button(t("chat.rename"), elem_id="chat-rename", size="sm", scale=1)
                branch_at = gr.Number(value=None, label=t("chat.branch_at"), precision=0, elem_id="chat-branch-at",
                                      info=t("chat.branch_at_info"))
                branch = gr.Button(t("chat.branch"), elem_id="chat-branch", size="sm")
                with gr.Row():
                    download_json = gr.DownloadButton(t("chat.download_json"), elem_id="chat-download-json", size="sm")
                    download_md = gr.DownloadButton(t("chat.download_md"), elem_id="chat-download-md", size="sm")
                upload = gr.UploadButton(t("chat.upload_json"), file_types=[".json"], elem_id="chat-upload", size="sm")
            with gr.Accordion(t("chat.cards"), open=False):
                gr.Markdown(t("chat.cards_intro"))
                card_upload = gr.UploadButton(t("chat.card_import"), elem_id="char-import", size="sm")
                with gr.Row():
                    export_png = gr.DownloadButton(t("chat.export_png"), elem_id="char-export-png", size="sm")
                    export_json = gr.DownloadButton(t("chat.export_json"), elem_id="char-export-json", size="sm")
                    export_mf = gr.DownloadButton(t("chat.export_modelfile"), elem_id="char-export-modelfile", size="sm")
                import_message = gr.Markdown("", elem_id="char-import-message")
            with gr.Accordion(t("chat.editor"), open=False):
                ed_file = gr.Textbox(label=t("chat.ed_file"), elem_id="char-file")
                ed_name = gr.Textbox(label=t("chat.ed_name"), elem_id="char-name")
                ed_greeting = gr.Textbox(label=t("chat.ed_greeting"), lines=2, elem_id="char-greeting")
                ed_context = gr.Textbox(label=t("chat.ed_context"), lines=4, elem_id="char-context",
                                        info=t("chat.ed_context_info"))
                ed_examples = gr.Textbox(label=t("chat.ed_examples"), lines=4, elem_id="char-examples")
                examples_file = gr.UploadButton(t("chat.ed_examples_upload"), file_types=[".txt"], size="sm",
                                                elem_id="char-examples-upload")
                ed_picture = gr.Image(label=t("chat.ed_picture"), type="filepath", height=120, elem_id="char-picture")
                with gr.Row():
                    ed_save = gr.Button(t("chat.ed_save"), variant="primary", elem_id="char-save", size="sm")
                    ed_delete = gr.Button(t("chat.ed_delete"), variant="stop", elem_id="char-delete", size="sm")
                char_message = gr.Markdown("", elem_id="char-message")

    # The open chat of this browser session: (character, chat id).
    current = gr.State(None)

    # ------------------------------------------------------------------------------------------
    def options_of(mode_v: str, system: str, name: str, bio: str) -> ChatOptions:
        return ChatOptions(mode=mode_v, system_prompt=system or "", persona=Persona(name or "You", bio or ""))

    def template_for(choice: str | None) -> tuple[Any, str]:
        loaded = services.models.current
        override = None if not choice or choice == MODEL_TEMPLATE else choice
        template, note = services.choose_template(loaded.backend.chat_template if loaded else None, override)
        return template, in_language(note, page_language())

    def open_chat(state: Any, character: str) -> Chat:
        if state and state[0] == character:
            try:
                return services.chats.load(character, state[1])
            except ChatNotFoundError:
                return fresh_chat(character, state[1])  # a new chat is written with its first message
        return fresh_chat(character)

    def fresh_chat(character: str, chat_id: str | None = None) -> Chat:
        """A new chat (opened by the character's greeting). Not on disk until its first message."""
        chat = services.chats.new(character)
        if chat_id:
            chat.id = chat_id
        first = greeting_message(characters.load(character), "You")
        if first is not None:
            chat.messages.append(first)  # alternate greetings are its other versions
        return chat

    def remember_open(chat: Chat) -> tuple[str, str]:
        services.remember_chat(chat.character, chat.id)
        return (chat.character, chat.id)

    def meter_text(chat: Chat, prompt: Any = None) -> str:
        lang = page_language()
        loaded = services.models.current
        if loaded is None:
            return tr("chat.meter_no_model", lang)
        if prompt is None:
            return tr("chat.meter_size", lang, n_ctx=loaded.backend.n_ctx)
        key = "chat.meter_used_about" if loaded.backend.tokens_estimated else "chat.meter_used"
        used = tr(key, lang, n=prompt.tokens, n_ctx=loaded.backend.n_ctx)
        return used + (f" ⚠ {in_language(prompt.note, lang)}" if prompt.note else "")

    cancels: dict[str, threading.Event] = {}

    @ui_errors
    def act(action: str, request: gr.Request, state: Any, text: str, character: str, mode_v: str, system: str,
            name: str, bio: str, tpl: str, prefix: str, *values: Any) -> Any:
        params = params_from_values(values)
        chat = open_chat(state, character)
        state = remember_open(chat)
        template, note = template_for(tpl)
        session = request.session_hash or "anonymous"
        cancel = cancels[session] = threading.Event()
        box = "" if action == "send" else text  # a sent message leaves the input box at once
        if action == "send" and text.strip():
            yield to_display(chat) + [{"role": "user", "content": text}], box, state, gr.update(), note
        stream = services.chat_service.turn(chat, action, text=text, character=characters.load(character),
                                            options=options_of(mode_v, system, name, bio), template=template,
                                            params=params, cancel=cancel, reply_prefix=prefix or "")
        try:
            frames = Frames()
            for partial in stream:
                if action == "impersonate":
                    box = partial  # the model writes your next message into the input box
                if frames.due():  # the last text is sent after the loop in any case
                    yield to_display(chat), box, state, gr.update(), note
        finally:
            if cancels.get(session) is cancel:
                del cancels[session]
        prompt = getattr(services.chat_service, "last_prompt", None)
        yield to_display(chat), box, state, meter_text(chat, prompt), note

    def on_stop(request: gr.Request) -> None:
        cancel = cancels.get(request.session_hash or "anonymous")
        if cancel is not None:
            cancel.set()

    param_inputs: list[Any] = []

    def wire(param_components: list[Any]) -> None:
        param_inputs.extend(param_components)
        common = [current, message, character_dd, mode, system_prompt, user_name, user_bio, template_dd, start_with,
                  *param_components]
        outs = [chatbot, message, current, meter, template_note]
        for trigger, action in ((send.click, "send"), (message.submit, "send"), (regenerate.click, "regenerate"),
                                (cont.click, "continue"), (impersonate.click, "impersonate")):
            trigger(_bind(act, action), common, outs, concurrency_limit=None, show_progress="hidden").then(
                lambda c, st: [listed(c, st[1] if st else None),
                               services.chats.load(c, st[1]).title if st and listed_ok(c, st[1]) else gr.update()],
                [character_dd, current], [chats_dd, title], queue=False)
        card_upload.upload(on_import, [card_upload, *param_components],
                           [character_dd, *character_outs, import_message, *param_components, template_dd,
                            template_note])

    stop.click(on_stop, None, None, queue=False)

    @ui_errors
    def on_remove(state: Any, character: str) -> Any:
        chat = open_chat(state, character)
        text = remove_last(chat)
        services.chats.save(chat)
        return to_display(chat), text, remember_open(chat)

    remove.click(on_remove, [current, character_dd], [chatbot, message, current], queue=False)

    @ui_errors
    def on_version(delta: int, state: Any, character: str) -> Any:
        chat = open_chat(state, character)
        for i in range(len(chat.messages) - 1, -1, -1):
            if chat.messages[i].role == "assistant":
                switch_version(chat, i, delta)
                services.chats.save(chat)
                break
        return to_display(chat)

    prev_version.click(lambda s, c: on_version(-1, s, c), [current, character_dd], chatbot, show_progress="hidden")
    next_version.click(lambda s, c: on_version(1, s, c), [current, character_dd], chatbot, show_progress="hidden")

    @ui_errors
    def on_edit(state: Any, character: str, shown: Any, data: gr.EditData) -> Any:
        chat = open_chat(state, character)
        visible = [i for i, m in enumerate(chat.messages) if m.role in ("user", "assistant")]
        offset, marked = shown_offset(len(visible), shown)
        index = data.index if isinstance(data.index, int) else data.index[0]
        if marked and index == 0:  # the "earlier messages" line is not a message
            return to_display(chat)
        value = data.value if isinstance(data.value, str) else str(data.value)
        # the display adds a stats line under replies; editing keeps only the text above it
        value = value.split("\n\n<sub>")[0]
        edit_message(chat, visible[offset + index - marked], value)
        services.chats.save(chat)
        return to_display(chat, window=None) if offset == 0 and not marked else to_display(chat)

    chatbot.edit(on_edit, [current, character_dd, chatbot], chatbot, queue=False)
    show_all.click(ui_errors(lambda state, character: to_display(open_chat(state, character), window=None)),
                   [current, character_dd], chatbot, queue=False)

    @ui_errors
    def on_show_prompt(state: Any, character: str, mode_v: str, system: str, name: str, bio: str, tpl: str,
                       prefix: str) -> list[str]:
        from webui.chat.prompt import build_prompt

        loaded = services.models.current
        if loaded is None:
            return [tr("chat.no_model", page_language()), ""]
        chat = open_chat(state, character)
        template, _ = template_for(tpl)
        history = list(chat.messages) + [Message("user", tr("chat.next_message", page_language()))]
        prompt = build_prompt(chat, history, characters.load(character), options_of(mode_v, system, name, bio),
                              template, n_ctx=loaded.backend.n_ctx, max_new_tokens=0,
                              tokenize=loaded.backend.tokenize, reply_prefix=prefix or "")
        return [prompt.text, prompt.lore.summary()]

    def on_template(choice: str | None) -> str:
        loaded = services.models.current
        if loaded is not None:
            overrides = dict(services.settings.template_overrides)
            if not choice or choice == MODEL_TEMPLATE:
                overrides.pop(loaded.name, None)
            else:
                overrides[loaded.name] = choice
            services.remember(template_overrides=overrides)
        return template_for(choice)[1]

    template_dd.input(ui_errors(on_template), template_dd, template_note, queue=False)

    show_prompt.click(on_show_prompt, [current, character_dd, mode, system_prompt, user_name, user_bio, template_dd,
                                       start_with], [prompt_view, lore_view], queue=False)

    # --- chats list ----------------------------------------------------------------------------
    def listed(character: str, chat_id: str | None) -> Any:
        choices = chat_choices(services, character)
        return gr.update(choices=choices, value=chat_id if any(v == chat_id for _, v in choices) else None)

    def listed_ok(character: str, chat_id: str) -> bool:
        return any(v == chat_id for _, v in chat_choices(services, character))

    def show(chat: Chat) -> list[Any]:
        return [to_display(chat), remember_open(chat), listed(chat.character, chat.id), chat.title]

    list_outs = [chatbot, current, chats_dd, title]

    @ui_errors
    def on_new(character: str) -> list[Any]:
        return show(fresh_chat(character))

    @ui_errors
    def on_pick(chat_id: str | None, character: str) -> list[Any]:
        if not chat_id:
            return [gr.update()] * 4
        return show(services.chats.load(character, chat_id))

    @ui_errors
    def on_character(character: str) -> list[Any]:
        chat = services.chats.newest(character) or fresh_chat(character)
        ch = characters.load(character)
        shown = show(chat)
        shown[0] = gr.update(value=shown[0], avatar_images=(None, str(ch.picture) if ch.picture else None))
        return [*shown, "", character, ch.name, ch.greeting,
                ch.context, ch.examples, str(ch.picture) if ch.picture else None, notes_text(ch),
                *export_files(character)]

    editor = [ed_file, ed_name, ed_greeting, ed_context, ed_examples, ed_picture]
    exports = [export_png, export_json, export_mf]
    character_outs = [*list_outs, system_prompt, *editor, creator_notes, *exports]
    new_chat.click(on_new, character_dd, list_outs, queue=False)
    chats_dd.input(on_pick, [chats_dd, character_dd], list_outs, queue=False)
    character_dd.input(on_character, character_dd, character_outs, queue=False).then(
        lambda: "", None, system_prompt, queue=False)
    search.input(lambda q, c: gr.update(choices=chat_choices(services, c, q)), [search, character_dd], chats_dd,
                 queue=False, trigger_mode="always_last")

    @ui_errors
    def on_rename(state: Any, character: str, new_title: str) -> list[Any]:
        chat = open_chat(state, character)
        chat = services.chats.rename(character, chat.id, new_title)
        return show(chat)

    rename.click(on_rename, [current, character_dd, title], list_outs, queue=False)
    delete_chat.click(lambda: gr.update(visible=True), None, confirm_row, queue=False)
    cancel_delete.click(lambda: gr.update(visible=False), None, confirm_row, queue=False)

    @ui_errors
    def on_delete(state: Any, character: str) -> list[Any]:
        if state and state[0] == character:
            services.chats.delete(character, state[1])
        chat = services.chats.newest(character) or fresh_chat(character)
        return [gr.update(visible=False), *show(chat)]

    confirm_delete.click(on_delete, [current, character_dd], [confirm_row, *list_outs], queue=False)

    @ui_errors
    def on_branch(state: Any, character: str, at: float | None) -> list[Any]:
        chat = open_chat(state, character)
        n = int(at or len(chat.messages))
        if not 1 <= n <= len(chat.messages):
            raise WebUIError(f"Pick a message number from 1 to {len(chat.messages)}.", key="chat.branch_range",
                             n=len(chat.messages))
        branch_chat = services.chats.new(character, chat.mode)
        branch_chat.messages = [Message(**{**m.__dict__, "versions": list(m.versions)}) for m in chat.messages[:n]]
        branch_chat.title = f"{chat.title} (branch)"
        services.chats.save(branch_chat)
        return show(branch_chat)

    branch.click(on_branch, [current, character_dd, branch_at], list_outs, queue=False)

    @ui_errors
    def on_download(state: Any, character: str, name: str, kind: str) -> str:
        chat = open_chat(state, character)
        folder = services.export_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{chat.id}.{kind}"
        if kind == "json":
            path.write_text(json.dumps(chat.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
        else:
            path.write_text(to_markdown(chat, characters.load(character).name, name or "You"), encoding="utf-8")
        return str(path)

    download_json.click(lambda s, c, n: on_download(s, c, n, "json"), [current, character_dd, user_name],
                        download_json, queue=False)
    download_md.click(lambda s, c, n: on_download(s, c, n, "md"), [current, character_dd, user_name], download_md,
                      queue=False)

    @ui_errors
    def on_upload(file: Any, character: str) -> list[Any]:
        raw = Path(file if isinstance(file, str) else file.name).read_bytes()
        return show(services.chats.import_file(character, raw))

    upload.upload(on_upload, [upload, character_dd], list_outs)

    # --- import / export of cards and Modelfiles ------------------------------------------------
    @ui_errors
    def on_import(file: Any, *values: Any) -> list[Any]:
        path = Path(file if isinstance(file, str) else file.name)
        result = services.import_character(path, original_name=path.name)
        lang = page_language()
        lines = [tr("chat.imported", lang, name=result.character.name, file=result.file_name)]
        warnings = list(result.warnings)
        param_updates = [gr.update() for _ in values]
        if result.params is not None:
            services.remember(preset=result.preset, params=result.params.non_default())
            param_updates = values_of(result.params)
            lines.append(tr("chat.imported_preset", lang, preset=result.preset))
        if result.model_ref and result.model is None:
            warnings.append(tr("chat.from_missing", lang, model=result.model_ref))
        loaded = services.models.current
        if result.model and (loaded is None or loaded.name != result.model):
            try:
                services.load_model(result.model)
                lines.append(tr("chat.from_loaded", lang, model=result.model))
            except WebUIError as exc:
                warnings.append(tr("chat.from_failed", lang, model=result.model, error=error_text(exc, lang)))
        for warning in warnings:
            gr.Warning(warning)
        gr.Info(tr("chat.imported_info", lang, file=result.file_name))
        message = "\n\n".join(lines + [f"⚠ {w}" for w in warnings])
        return [gr.update(choices=characters.names(), value=result.file_name), *on_character(result.file_name),
                message, *param_updates, *on_model_changed()]

    def export_files(character: str) -> list[Any]:
        """The character written as a PNG card, a JSON card and a Modelfile, for the three download buttons.

        Written when a character is picked, imported or saved (a download button sends the file it
        holds when clicked); the Modelfile takes the current Parameters-tab values.
        """
        try:
            stem = safe_name(character or DEFAULT_CHARACTER, what="character name")
            loaded = services.models.current
            files = {f"{stem}.png": characters.export_card(character, "png"),
                     f"{stem}.json": characters.export_card(character, "json"),
                     f"{stem}.Modelfile": export_modelfile(characters.load(character), services.initial_params(),
                                                           loaded.name if loaded else None).encode("utf-8")}
        except WebUIError as exc:
            gr.Warning(tr("chat.export_failed", page_language(), error=error_text(exc, page_language())))
            return [None, None, None]
        paths = []
        for name, data in files.items():
            atomic_write_bytes(services.export_dir / name, data)
            paths.append(str(services.export_dir / name))
        return paths

    # --- character editor ----------------------------------------------------------------------
    @ui_errors
    def on_examples_file(file: Any) -> str:
        raw = Path(file if isinstance(file, str) else file.name).read_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WebUIError("The examples file must be UTF-8 text.", key="chat.examples_not_utf8") from exc

    examples_file.upload(on_examples_file, examples_file, ed_examples)

    @ui_errors
    def on_save_character(file_name: str, name: str, greeting: str, context: str, examples: str,
                          picture: str | None) -> list[Any]:
        file_name = (file_name or name or "").strip()
        if not file_name:
            raise WebUIError("Give the character a name first.", key="chat.name_first")
        existing = characters.picture_of(file_name) if characters.is_valid(file_name) else None
        data = None
        suffix = ".png"
        if picture and (existing is None or Path(picture).resolve() != existing.resolve()):
            data, suffix = Path(picture).read_bytes(), Path(picture).suffix or ".png"
        # Fields the editor does not show (a card's lorebook, notes, extensions...) are kept.
        base = characters.load(file_name) if file_name in characters.names() else Character()
        edited = replace(base, name=name.strip() or file_name, greeting=greeting, context=context, examples=examples)
        characters.save(file_name, edited, picture=data, picture_suffix=suffix)
        return [gr.update(choices=characters.names(), value=file_name),
                tr("chat.saved_character", page_language(), name=file_name),
                *export_files(file_name)]

    ed_save.click(on_save_character, editor, [character_dd, char_message, *exports], queue=False)

    @ui_errors
    def on_delete_character(file_name: str) -> list[Any]:
        characters.delete(file_name)
        return [gr.update(choices=characters.names(), value=DEFAULT_CHARACTER),
                tr("chat.deleted_character", page_language(), name=file_name)]

    ed_delete.click(on_delete_character, ed_file, [character_dd, char_message], queue=False)

    def on_model_changed() -> list[Any]:
        """After a load: the instruction template chosen for that model, and the note about it."""
        loaded = services.models.current
        override = services.template_override_for(loaded.name) if loaded else None
        choice = override if override in services.instruction_templates.names() else MODEL_TEMPLATE
        try:
            note = template_for(choice)[1] if loaded else ""
        except WebUIError as exc:
            note = error_text(exc, page_language())
        return [choice, note]

    def on_page_load() -> list[Any]:
        """A reload (or a restart) shows the chat that was open."""
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
        choice, note = on_model_changed()
        picture = characters.picture_of(character) if characters.is_valid(character) else None
        box = gr.update(value=to_display(chat) if chat else [],
                        avatar_images=(None, str(picture) if picture else None))
        # The list as it is now: characters imported or saved since the app started are in it too.
        picked = gr.update(choices=characters.names(), value=character)
        try:
            notes = notes_text(characters.load(character))
        except WebUIError as exc:
            notes = f"⚠ {error_text(exc, page_language())}"
        if chat is None:
            return [box, None, gr.update(choices=chat_choices(services, character), value=None), "", picked,
                    note, choice, notes, *export_files(character)]
        return [box, (character, chat.id), gr.update(choices=chat_choices(services, character), value=chat.id),
                chat.title, picked, note, choice, notes, *export_files(character)]

    return {"wire": wire, "page_load": on_page_load, "model_changed": on_model_changed,
            "model_changed_outputs": [template_dd, template_note],
            "page_load_outputs": [chatbot, current, chats_dd, title, character_dd, template_note, template_dd,
                                  creator_notes, export_png, export_json, export_mf],
            "stop": stop}


def _bind(fn: Any, action: str) -> Any:
    def handler(request: gr.Request, *args: Any) -> Any:
        yield from fn(action, request, *args)
    return handler

