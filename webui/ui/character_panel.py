"""The Chat tab's character panel: the character picker, card import/export, the character editor.

Thin over the services: ``services.import_character`` (cards, character files, Modelfiles),
``CharacterStore.export_files`` (PNG card, JSON card, Modelfile) and the store's save/delete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from webui.characters.character import DEFAULT_CHARACTER, Character
from webui.errors import WebUIError
from webui.services import Services
from webui.ui.chat_history_panel import HistoryPanel
from webui.ui.chat_page import ChatPage
from webui.ui.common import error_text, save_or_warn, ui_errors
from webui.ui.i18n import page_language, t, tr
from webui.ui.parameters_tab import values_of


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
                self.ed_delete = gr.Button(t("chat.ed_delete"), variant="stop", elem_id="char-delete", size="sm")
            self.char_message = gr.Markdown("", elem_id="char-message")
        self.exports = [self.export_png, self.export_json, self.export_mf]

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
            gr.Warning(tr("chat.export_failed", page_language(), error=error_text(exc, page_language())))
            return [None, None, None]
        return [str(p) for p in paths]

    # --- events ---------------------------------------------------------------------------------
    def wire(self, *, history: HistoryPanel, system_prompt: Any) -> None:
        """Picking a character (it opens its newest chat), and the editor."""
        characters, page = self.services.characters, self.page
        editor = [self.ed_file, self.ed_name, self.ed_greeting, self.ed_context, self.ed_examples, self.ed_picture]
        self.outputs = [*history.outputs, system_prompt, *editor, self.creator_notes, *self.exports]
        export_files = self.export_files

        @ui_errors
        def on_character(character: str) -> list[Any]:
            chat = self.services.chats.newest(character) or page.fresh_chat(character)
            ch = characters.load(character)
            shown = history.show(chat)
            shown[0] = gr.update(value=shown[0], avatar_images=(None, str(ch.picture) if ch.picture else None))
            return [
                *shown,
                "",
                character,
                ch.name,
                ch.greeting,
                ch.context,
                ch.examples,
                str(ch.picture) if ch.picture else None,
                notes_text(ch),
                *export_files(character),
            ]

        self.on_character = on_character
        self.dropdown.input(on_character, self.dropdown, self.outputs, queue=False).then(
            lambda: "", None, system_prompt, queue=False
        )

        @ui_errors
        def on_examples_file(file: Any) -> str:
            raw = Path(file if isinstance(file, str) else file.name).read_bytes()
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise WebUIError("The examples file must be UTF-8 text.", key="chat.examples_not_utf8") from exc

        self.examples_file.upload(on_examples_file, self.examples_file, self.ed_examples)

        @ui_errors
        def on_save_character(
            file_name: str, name: str, greeting: str, context: str, examples: str, picture: str | None
        ) -> list[Any]:
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
            edited = replace(
                base, name=name.strip() or file_name, greeting=greeting, context=context, examples=examples
            )
            characters.save(file_name, edited, picture=data, picture_suffix=suffix)
            return [
                gr.update(choices=characters.names(), value=file_name),
                tr("chat.saved_character", page_language(), name=file_name),
                *export_files(file_name),
            ]

        self.ed_save.click(on_save_character, editor, [self.dropdown, self.char_message, *self.exports], queue=False)

        @ui_errors
        def on_delete_character(file_name: str) -> list[Any]:
            characters.delete(file_name)
            return [
                gr.update(choices=characters.names(), value=DEFAULT_CHARACTER),
                tr("chat.deleted_character", page_language(), name=file_name),
            ]

        self.ed_delete.click(on_delete_character, self.ed_file, [self.dropdown, self.char_message], queue=False)

    def wire_import(
        self, param_components: list[Any], *, model_changed: Callable[[], list[Any]], model_changed_outputs: list[Any]
    ) -> None:
        """Card / character file / Modelfile import: it may also set the Parameters tab and load a model."""
        services = self.services

        @ui_errors
        def on_import(file: Any, *values: Any) -> list[Any]:
            path = Path(file if isinstance(file, str) else file.name)
            result = services.import_character(path, original_name=path.name)
            lang = page_language()
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
                gr.Warning(warning)
            gr.Info(tr("chat.imported_info", lang, file=result.file_name))
            message = "\n\n".join(lines + [f"⚠ {w}" for w in warnings])
            return [
                gr.update(choices=services.characters.names(), value=result.file_name),
                *self.on_character(result.file_name),
                message,
                *param_updates,
                *model_changed(),
            ]

        self.card_upload.upload(
            on_import,
            [self.card_upload, *param_components],
            [self.dropdown, *self.outputs, self.import_message, *param_components, *model_changed_outputs],
        )
