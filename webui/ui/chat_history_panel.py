"""The Chat tab's chats list: search, new, delete, rename, branch, download and upload.

Thin over the services: the list and the search come from the chat index
(``webui/chat/search.py``), branching from ``ChatStore.branch``, downloads from
``webui/chat/export.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from webui.chat.export import ExportKind, export_chat
from webui.chat.history import Chat
from webui.errors import ChatBusyError, SaveError
from webui.services import Services
from webui.ui.chat_page import ChatPage
from webui.ui.common import error_text, on_pick, ui_errors, warn
from webui.ui.i18n import page_language, t


def chat_choices(services: Services, character: str, search: str = "") -> list[tuple[str, str]]:
    """The chats list's (label, chat id) pairs, newest first; only matches when ``search`` is given."""
    return [
        (f"{i.title} · {time.strftime('%Y-%m-%d %H:%M', time.localtime(i.updated))}", i.id)
        for i in services.chat_index.search(character, search)
    ]


#: Downloads the file a DownloadButton was just given (its value as the page holds it).
DOWNLOAD_JS = """(file) => {
  if (!file || !file.url) return;
  const a = document.createElement('a');
  a.href = file.url;
  a.download = file.orig_name || '';
  document.body.appendChild(a);
  a.click();
  a.remove();
}"""


class HistoryPanel:
    """The "Chats" accordion. Built where it stands in the layout; :meth:`wire` once the tab is built."""

    def __init__(self, services: Services, page: ChatPage) -> None:
        self.services = services
        self.page = page
        with gr.Accordion(t("chat.chats"), open=True):
            self.search = gr.Textbox(label=t("chat.search"), elem_id="chat-search", max_lines=1)
            self.chats_dd = gr.Dropdown(choices=[], label=t("chat.past_chats"), elem_id="chat-list")
            with gr.Row():
                self.new_chat = gr.Button(t("chat.new_chat"), elem_id="chat-new", size="sm")
                self.delete_chat = gr.Button(t("common.delete"), variant="stop", elem_id="chat-delete", size="sm")
            with gr.Row(visible=False) as self.confirm_row:
                self.confirm_delete = gr.Button(
                    t("chat.delete_confirm"), variant="stop", elem_id="chat-delete-confirm", size="sm"
                )
                self.cancel_delete = gr.Button(t("common.cancel"), size="sm")
            with gr.Row():
                self.title = gr.Textbox(label=t("chat.title"), elem_id="chat-title", max_lines=1, scale=3)
                self.rename = gr.Button(t("chat.rename"), elem_id="chat-rename", size="sm", scale=1)
            # 0 means all messages: Gradio 6.31's number box shows 0 for an empty value (placeholder or not).
            self.branch_at = gr.Number(
                value=0,
                label=t("chat.branch_at"),
                precision=0,
                minimum=0,
                elem_id="chat-branch-at",
                info=t("chat.branch_at_info"),
            )
            self.branch = gr.Button(t("chat.branch"), elem_id="chat-branch", size="sm")
            with gr.Row():
                self.download_json = gr.DownloadButton(t("chat.download_json"), elem_id="chat-download-json", size="sm")
                self.download_md = gr.DownloadButton(t("chat.download_md"), elem_id="chat-download-md", size="sm")
                self.download_zip = gr.DownloadButton(t("chat.download_zip"), elem_id="chat-download-zip", size="sm")
            self.upload = gr.UploadButton(
                t("chat.upload_json"), file_types=[".json", ".zip"], elem_id="chat-upload", size="sm"
            )
        #: What :meth:`show` fills in: the chat box, the open chat, the list, the title, the chat's
        #: set-up inputs and its tool settings (set by wire).
        self.outputs: list[Any] = []
        self._extra_values: Callable[[Chat], list[Any]] = lambda chat: []

    # --- what the other parts of the tab use ----------------------------------------------------
    def choices(self, character: str, search: str = "") -> list[tuple[str, str]]:
        return chat_choices(self.services, character, search)

    def listed(self, character: str, chat_id: str | None) -> Any:
        """The list, with ``chat_id`` picked if it is in it."""
        choices = self.choices(character)
        return gr.update(choices=choices, value=chat_id if any(v == chat_id for _, v in choices) else None)

    def listed_ok(self, character: str, chat_id: str) -> bool:
        return any(v == chat_id for _, v in self.choices(character))

    def show(self, chat: Chat) -> list[Any]:
        """Open ``chat`` on the page, with its set-up: values for :attr:`outputs`."""
        return [
            self.page.display(chat),
            self.page.remember_open(chat),
            self.listed(chat.character, chat.id),
            chat.title,
            *self.page.setup_values(chat),
            *self._extra_values(chat),
        ]

    # --- events ---------------------------------------------------------------------------------
    def wire(
        self,
        *,
        chatbot: Any,
        current: Any,
        character_dd: Any,
        user_name: Any,
        setup: list[Any],
        extra_outputs: list[Any] | None = None,
        extra_values: Callable[[Chat], list[Any]] | None = None,
    ) -> None:
        """``setup``: the set-up inputs a chat restores (mode, system prompt, name, about you, template, its
        note); ``extra_outputs``: more that opening a chat fills in, with ``extra_values(chat)`` (the Tools
        panel's tool settings and approval row)."""
        services, page = self.services, self.page
        list_outs = self.outputs = [chatbot, current, self.chats_dd, self.title, *setup, *(extra_outputs or [])]
        if extra_values is not None:
            self._extra_values = extra_values
        show = self.show

        @ui_errors
        def on_new(character: str) -> list[Any]:
            return show(page.fresh_chat(character))

        @ui_errors
        def pick_chat(chat_id: str | None, character: str) -> list[Any]:
            if not chat_id:
                return [gr.update()] * len(list_outs)
            return show(services.chats.load(character, chat_id))

        # The chat box's trash icon starts a new chat too (the old one stays in the list): clearing
        # only the screen would bring the whole old chat back with the next Send.
        for new_chat_event in (self.new_chat.click, chatbot.clear):
            new_chat_event(on_new, character_dd, list_outs, queue=False).then(
                # the page's own signal that the new chat is on screen (what drives the page waits for it)
                None,
                js="() => { const d = document.body.dataset; d.webuiNewChats = (+d.webuiNewChats || 0) + 1; }",
                queue=False,
                show_progress="hidden",
            )
        # Queued, as the buttons below: a damaged chat file says so in a pop-up (an unqueued event's never shows).
        on_pick(self.chats_dd, pick_chat, [self.chats_dd, character_dd], list_outs, show_progress="hidden")
        self.search.input(
            lambda q, c: gr.update(choices=self.choices(c, q)),
            [self.search, character_dd],
            self.chats_dd,
            queue=False,
            trigger_mode="always_last",
        )

        @ui_errors
        def on_rename(state: Any, character: str, new_title: str) -> list[Any]:
            chat = page.open_chat(state, character)
            chat = services.chats.rename(character, chat.id, new_title)
            return show(chat)

        self.rename.click(on_rename, [current, character_dd, self.title], list_outs, show_progress="hidden")
        self.delete_chat.click(lambda: gr.update(visible=True), None, self.confirm_row, queue=False)
        self.cancel_delete.click(lambda: gr.update(visible=False), None, self.confirm_row, queue=False)

        @ui_errors
        def on_delete(state: Any, character: str) -> list[Any]:
            if state and state[0] == character:
                try:
                    services.chats.delete(character, state[1])
                except ChatBusyError as exc:  # a reply is being written into it: it stays, on screen too
                    lang = page_language()
                    warn(error_text(exc, lang), lang)
                    return [gr.update(visible=False), *(gr.skip() for _ in list_outs)]
            chat = services.chats.newest(character) or page.fresh_chat(character)
            return [gr.update(visible=False), *show(chat)]

        self.confirm_delete.click(
            on_delete, [current, character_dd], [self.confirm_row, *list_outs], show_progress="hidden"
        )

        @ui_errors
        def on_branch(state: Any, character: str, at: float | None) -> list[Any]:
            chat = page.open_chat(state, character)
            return show(services.chats.branch(chat, int(at) if at else None))  # 0 (or empty): all messages

        self.branch.click(on_branch, [current, character_dd, self.branch_at], list_outs, show_progress="hidden")

        def download_as(kind: ExportKind) -> Callable[..., str]:
            @ui_errors
            def on_download(state: Any, character: str, name: str) -> str:
                chat = page.open_chat(state, character)
                character_name = services.characters.load(character).name if kind == "md" else character
                files = services.chats.files(chat.character, chat.id)  # the zip holds the attached files too
                try:
                    path = export_chat(
                        chat,
                        services.export_dir,
                        kind,
                        character_name=character_name,
                        user_name=name or "You",
                        files=files,
                    )
                except OSError as exc:
                    message = "Could not write the download into {path}: {detail}. The chat itself is unchanged."
                    raise SaveError.writing(exc, services.export_dir, message, "error.export_chat") from exc
                return str(path)

            return on_download

        buttons: list[tuple[gr.DownloadButton, ExportKind]] = [
            (self.download_json, "json"),
            (self.download_md, "md"),
            (self.download_zip, "zip"),
        ]
        for button, kind in buttons:
            # A DownloadButton downloads the file it holds *before* its click handler runs: the chat is
            # written on the click, then downloaded by the page, and the button emptied again (else the
            # next click would first download the old file). Queued, so a failure shows as a pop-up.
            button.click(
                download_as(kind),
                [current, character_dd, user_name],
                button,
                concurrency_limit=None,
                show_progress="hidden",
            ).then(None, button, None, js=DOWNLOAD_JS).then(lambda: None, None, button, queue=False)

        @ui_errors
        def on_upload(file: Any, character: str) -> list[Any]:
            raw = Path(file if isinstance(file, str) else file.name).read_bytes()
            return show(services.chats.import_file(character, raw))

        self.upload.upload(on_upload, [self.upload, character_dd], list_outs)
