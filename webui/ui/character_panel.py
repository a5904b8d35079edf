"""The Chat tab's character panel: the character picker, card import/export, the character editor.

Thin over the services: ``services.import_character`` (cards, character files, Modelfiles),
``CharacterStore.export_files`` (PNG card, JSON card, Modelfile) and the store's save/delete.

Unsaved edits in the editor are never dropped without a word: picking another character keeps
them (with a warning toast; "Discard edits" shows the picked one), and reloading or closing the
page asks the browser's "leave the page?" question. They are not kept across a reload: a kept
draft would look like the character the chat uses while the chat uses the saved file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from webui.characters.character import DEFAULT_CHARACTER, Character
from webui.errors import CardError, InvalidNameError, WebUIError
from webui.services import Services
from webui.ui.chat_history_panel import HistoryPanel
from webui.ui.chat_page import ChatPage
from webui.ui.common import error_line, error_text, inform, on_pick, save_or_warn, ui_errors, warn
from webui.ui.i18n import page_language, t, tr
from webui.ui.parameters_tab import values_of

#: Typing in the editor marks the page as having unsaved edits; the browser asks before a reload or
#: a close loses them (``beforeunload``, set up once by the first edit).
MARK_EDITED_JS = """() => {
  window.webuiUnsavedCharacter = true;
  if (!window.webuiUnloadGuard) {
    window.webuiUnloadGuard = true;
    window.addEventListener('beforeunload', (e) => {
      if (window.webuiUnsavedCharacter) { e.preventDefault(); e.returnValue = ''; }
    });
  }
}"""
#: After the server said whether the editor still holds unsaved edits.
MARK_JS = "(unsaved) => { window.webuiUnsavedCharacter = !!unsaved; }"


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


class CharacterPanel:
    """The character parts of the Chat tab. The picker and the accordions stand in different places
    of the layout, so each has its own build step; :meth:`wire` and :meth:`wire_import` follow."""

    def __init__(self, services: Services, page: ChatPage) -> None:
        self.services = services
        self.page = page
        #: What picking a character fills in (set by wire).
        self.outputs: list[Any] = []

    def build_picker(self) -> None:
        self.dropdown = gr.Dropdown(
            choices=self.services.characters.names(),
            value=DEFAULT_CHARACTER,
            label=t("chat.character"),
            elem_id="chat-character",
        )
        self.creator_notes = gr.Markdown("", elem_id="chat-creator-notes")

    def build_cards_and_editor(self) -> None:
        with gr.Accordion(t("chat.cards"), open=False):
            gr.Markdown(t("chat.cards_intro"))
            self.card_upload = gr.UploadButton(t("chat.card_import"), elem_id="char-import", size="sm")
            with gr.Row():
                self.export_png = gr.DownloadButton(t("chat.export_png"), elem_id="char-export-png", size="sm")
                self.export_json = gr.DownloadButton(t("chat.export_json"), elem_id="char-export-json", size="sm")
                self.export_mf = gr.DownloadButton(
                    t("chat.export_modelfile"), elem_id="char-export-modelfile", size="sm"
                )
            self.import_message = gr.Markdown("", elem_id="char-import-message")
        with gr.Accordion(t("chat.editor"), open=False):
            self.ed_file = gr.Textbox(label=t("chat.ed_file"), elem_id="char-file")
            self.ed_name = gr.Textbox(label=t("chat.ed_name"), elem_id="char-name")
            self.ed_greeting = gr.Textbox(label=t("chat.ed_greeting"), lines=2, elem_id="char-greeting")
            self.ed_context = gr.Textbox(
                label=t("chat.ed_context"), lines=4, elem_id="char-context", info=t("chat.ed_context_info")
            )
            self.ed_examples = gr.Textbox(label=t("chat.ed_examples"), lines=4, elem_id="char-examples")
            self.examples_file = gr.UploadButton(
                t("chat.ed_examples_upload"), file_types=[".txt"], size="sm", elem_id="char-examples-upload"
            )
            self.ed_picture = gr.Image(label=t("chat.ed_picture"), type="filepath", height=120, elem_id="char-picture")
            with gr.Row():
                self.ed_save = gr.Button(t("chat.ed_save"), variant="primary", elem_id="char-save", size="sm")
                self.ed_discard = gr.Button(t("chat.ed_discard"), elem_id="char-discard", size="sm")
                self.ed_delete = gr.Button(t("chat.ed_delete"), variant="stop", elem_id="char-delete", size="sm")
            self.char_message = gr.Markdown("", elem_id="char-message")
        self.exports = [self.export_png, self.export_json, self.export_mf]
        self.editor: list[Any] = [
            self.ed_file,
            self.ed_name,
            self.ed_greeting,
            self.ed_context,
            self.ed_examples,
            self.ed_picture,
        ]
        #: Whether the editor holds edits that are not in a file, for the page's "leave?" guard (a
        #: component, not a gr.State: the browser reads it).
        self.editor_unsaved = gr.Checkbox(False, visible="hidden", elem_id="char-unsaved")

    # --- what the other parts of the tab use ----------------------------------------------------
    def export_files(self, character: str) -> list[Any]:
        """The character written as a PNG card, a JSON card and a Modelfile, for the three download buttons.

        Written when a character is picked, imported or saved (a download button sends the file it
        holds when clicked); the Modelfile takes the current Parameters-tab values.
        """
        services = self.services
        loaded = services.models.current
        try:
            paths = services.characters.export_files(
                character, services.export_dir, services.initial_params(), loaded.name if loaded else None
            )
        except WebUIError as exc:
            warn(tr("chat.export_failed", page_language(), error=error_text(exc, page_language())))
            return [None, None, None]
        return [str(p) for p in paths]

    def editor_values(self, character: str) -> list[Any]:
        """The editor showing the saved ``character`` (values for :attr:`editor`)."""
        ch = self.services.characters.load(character)
        return [character, ch.name, ch.greeting, ch.context, ch.examples, str(ch.picture) if ch.picture else None]

    def unsaved(self, file_name: str, name: str, greeting: str, context: str, examples: str) -> str | None:
        """The name of the character whose edits the editor holds unsaved, or None if nothing would be lost."""
        characters = self.services.characters
        file_name = (file_name or "").strip()
        edited = (name or "", greeting or "", context or "", examples or "")
        if file_name in characters.names():
            try:
                saved = characters.load(file_name)
            except WebUIError:  # a broken file: what the editor holds is all there is
                return file_name
            return None if (saved.name, saved.greeting, saved.context, saved.examples) == edited else file_name
        return (file_name or edited[0].strip() or "?") if file_name or any(f.strip() for f in edited) else None

    # --- events ---------------------------------------------------------------------------------
    def wire(self, *, history: HistoryPanel) -> None:
        """Picking a character (it opens its newest chat, with that chat's set-up), and the editor."""
        page = self.page
        editor = self.editor
        self.outputs = [*history.outputs, *editor, self.creator_notes, *self.exports, self.editor_unsaved]
        export_files = self.export_files

        @ui_errors
        def on_character(character: str, *edited: str) -> list[Any]:
            """Open ``character``'s newest chat; the editor shows it, unless it holds unsaved edits
            (then they are kept, with a warning)."""
            kept = self.unsaved(*edited) if edited else None
            chat = self.services.chats.newest(character) or page.fresh_chat(character)
            ch = self.services.characters.load(character)
            shown = history.show(chat)
            shown[0] = gr.update(value=shown[0], avatar_images=(None, str(ch.picture) if ch.picture else None))
            if kept:
                warn(tr("chat.editor_kept", page_language(), name=kept, picked=character))
            return [
                *shown,
                *([gr.update()] * len(editor) if kept else self.editor_values(character)),
                notes_text(ch),
                *export_files(character),
                bool(kept),
            ]

        self.on_character = on_character
        current = history.outputs[1]  # the open chat: (character, chat id)

        @ui_errors
        def on_pick_character(character: str, state: Any, *edited: str) -> list[Any]:
            """A character file broken by hand is not opened: the open chat stays, the dropdown goes back to
            its character (left on the broken one, every Send would fail on it), and the reason stays
            under the dropdown after its pop-up has gone."""
            try:
                self.services.characters.load(character)
            except WebUIError as exc:
                updates: list[Any] = [gr.update() for _ in self.outputs]
                updates[self.outputs.index(self.creator_notes)] = error_line(exc)
                # No chat opened on this page yet: the character the page opened with (as on page load).
                before = state[0] if state else self.services.settings.chat_character
                if before == character or before not in self.services.characters.names():
                    before = DEFAULT_CHARACTER
                return [*updates, gr.update(value=before)]
            return [*on_character(character, *edited), gr.update()]

        # Once per pick (on_pick: Gradio's dropdown repeats .input, and sends no .select for a keyboard
        # pick). Queued: a warning toast needs the queue's connection to reach the page.
        on_pick(
            self.dropdown, on_pick_character, [self.dropdown, current, *editor[:5]], [*self.outputs, self.dropdown]
        ).then(None, self.editor_unsaved, None, js=MARK_JS)
        for box in editor[:5]:
            box.input(None, None, None, js=MARK_EDITED_JS)

        @ui_errors
        def on_discard(character: str) -> list[Any]:
            return [*self.editor_values(character), False]

        self.ed_discard.click(on_discard, self.dropdown, [*editor, self.editor_unsaved], queue=False).then(
            None, self.editor_unsaved, None, js=MARK_JS
        )

        @ui_errors
        def on_examples_file(file: Any) -> str:
            raw = Path(file if isinstance(file, str) else file.name).read_bytes()
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CardError("The examples file must be UTF-8 text.", key="chat.examples_not_utf8") from exc

        self.examples_file.upload(on_examples_file, self.examples_file, self.ed_examples)

        @ui_errors
        def on_save_character(
            file_name: str,
            name: str,
            greeting: str,
            context: str,
            examples: str,
            picture: str | None,
            shown: str | None = None,
        ) -> list[Any]:
            """Save the editor as ``file_name``. A character other than the one ``shown`` (a new one, or a copy
            under another name) is then opened, as if picked: the character menu and the chat box never
            show two different characters (a message sent then went to the new character's chat)."""
            file_name = (file_name or name or "").strip()
            if not file_name:
                raise InvalidNameError("Give the character a name first.", key="chat.name_first")
            existing = (
                self.services.characters.picture_of(file_name) if self.services.characters.is_valid(file_name) else None
            )
            data = None
            suffix = ".png"
            if picture and (existing is None or Path(picture).resolve() != existing.resolve()):
                data, suffix = Path(picture).read_bytes(), Path(picture).suffix or ".png"
            # Fields the editor does not show (a card's lorebook, notes, extensions...) are kept.
            base = (
                self.services.characters.load(file_name)
                if file_name in self.services.characters.names()
                else Character()
            )
            edited = replace(
                base, name=name.strip() or file_name, greeting=greeting, context=context, examples=examples
            )
            self.services.characters.save(file_name, edited, picture=data, picture_suffix=suffix)
            menu = gr.update(choices=self.services.characters.names(), value=file_name)
            message = tr("chat.saved_character", page_language(), name=file_name)
            if file_name != shown:
                return [menu, message, *on_character(file_name)]
            # self.outputs: the chat and its set-up, the editor and the notes as they are; then the exports, unsaved
            kept = [gr.update()] * (len(self.outputs) - len(self.exports) - 1)
            return [menu, message, *kept, *export_files(file_name), False]

        # Queued: an error (a name with ../ in it) is a pop-up, which needs the queue's connection.
        self.ed_save.click(
            on_save_character,
            [*editor, self.dropdown],
            [self.dropdown, self.char_message, *self.outputs],
            show_progress="hidden",
        ).success(None, None, None, js="() => { window.webuiUnsavedCharacter = false; }")

        @ui_errors
        def on_delete_character(file_name: str) -> list[Any]:
            # this page's user's characters: with log-in a user who is not the admin deletes only their own
            # (a shared one raises PermissionDeniedError, shown as a pop-up)
            own = self.services.characters
            own.delete(file_name)
            return [
                gr.update(choices=own.names(), value=DEFAULT_CHARACTER),
                tr("chat.deleted_character", page_language(), name=file_name),
            ]

        # Queued, as Save: a pop-up (a shared character that only the admin may delete) needs the queue.
        self.ed_delete.click(
            on_delete_character, self.ed_file, [self.dropdown, self.char_message], show_progress="hidden"
        )

    def wire_import(
        self,
        param_components: list[Any],
        *,
        model_changed: Callable[[], list[Any]],
        model_changed_outputs: list[Any],
        preset_state: tuple[Callable[[], list[Any]], list[Any]] | None = None,
    ) -> None:
        """Card / character file / Modelfile import: it may also set the Parameters tab and load a model.

        ``preset_state``: the Parameters tab's refresh (function, outputs), run after an import so its
        preset dropdown and name box show the preset a Modelfile's PARAMETER lines were saved as."""
        services = self.services

        @ui_errors
        def on_import(file: Any, *values: Any) -> list[Any]:
            path = Path(file if isinstance(file, str) else file.name)
            lang = page_language()
            try:
                result = services.import_character(path, original_name=path.name)
            except WebUIError as exc:
                # Written under the button as well as in the pop-up (which goes after 10 s), and in place
                # of an earlier import's "Imported ..." line, which would otherwise read as this file's.
                unchanged = [gr.update() for _ in range(1 + len(self.outputs))]
                return [*unchanged, error_line(exc, lang), *(gr.update() for _ in [*values, *model_changed_outputs])]
            lines = [tr("chat.imported", lang, name=result.character.name, file=result.file_name)]
            warnings = list(result.warnings)
            param_updates = [gr.update() for _ in values]
            if result.params is not None:
                params = result.params
                save_or_warn(lambda: services.remember(preset=result.preset, params=params.non_default()), lang)
                param_updates = values_of(params)
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
                warn(warning, lang)
            inform(tr("chat.imported_info", lang, file=result.file_name), lang)
            message = "\n\n".join(lines + [f"⚠ {w}" for w in warnings])
            return [
                gr.update(choices=services.characters.names(), value=result.file_name),
                *self.on_character(result.file_name),
                message,
                *param_updates,
                *model_changed(),
            ]

        imported = self.card_upload.upload(
            on_import,
            [self.card_upload, *param_components],
            [self.dropdown, *self.outputs, self.import_message, *param_components, *model_changed_outputs],
        )
        imported.then(None, self.editor_unsaved, None, js=MARK_JS)
        if preset_state is not None:
            refresh, outputs = preset_state
            imported.then(refresh, None, outputs, queue=False, show_progress="hidden")
