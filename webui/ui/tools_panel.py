"""The Chat tab's tools: the Tools accordion (which tools the open chat offers the model, how they may
run, the shared folder, the MCP servers and their ``mcp.json``) and the approval row under the chat
("The model wants to run ...": Run / Skip / Always allow).

Thin over the services: the tools come from ``services.tools`` (tool files and MCP servers), the
servers from ``services.mcp``; a chat's tool settings are its own (``Chat.tools`` and the other
:data:`~webui.chat.history.TOOL_FIELDS`), saved with it. The loop that runs calls and answers them is
the Chat tab's ``act`` (``chat_tab``).

With log-in, the folder the tools read and ``mcp.json`` are the server's: an admin changes them (through
``services.require_admin``); anyone else sees their own files folder, read-only, and no ``mcp.json``
(it may hold the servers' keys).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from webui.chat.history import DEFAULT_TOOL_ROUNDS, Chat
from webui.errors import ChatNotFoundError, SaveError, SettingsError
from webui.services import Services
from webui.tools.types import ToolInfo
from webui.ui.chat_page import ChatPage
from webui.ui.common import save_note, save_note_box, save_or_warn, ui_errors
from webui.ui.i18n import page_language, t, tr

#: Longest arguments text the approval row quotes (the call block in the chat has them all).
ASK_ARGUMENTS_CHARS = 300


def call_parts(call: dict[str, Any]) -> tuple[str, str, str]:
    """(id, tool name, arguments JSON text) of an OpenAI-shaped call."""
    function = call.get("function") or {}
    return str(call.get("id", "")), str(function.get("name", "")), str(function.get("arguments", "") or "{}")


def tool_label(info: ToolInfo, lang: str) -> str:
    """How the list names a tool: "name - source", marked when it only reads."""
    label = f"{info.name} - {info.source}"
    return label + f" ({tr('chat.tools_read_only', lang)})" if info.read_only else label


def ask_text(call: dict[str, Any], lang: str) -> str:
    """The approval row's question: "The model wants to run tool(arguments)"."""
    _, name, arguments = call_parts(call)
    try:
        arguments = json.dumps(json.loads(arguments), ensure_ascii=False)
    except (json.JSONDecodeError, RecursionError):
        pass
    if len(arguments) > ASK_ARGUMENTS_CHARS:
        arguments = arguments[:ASK_ARGUMENTS_CHARS] + "…"
    # A code span that backticks inside the arguments cannot close.
    ticks = "``" if "`" in arguments else "`"
    return tr("chat.tool_ask", lang, call=f"{ticks} {name}({arguments}) {ticks}")


class ToolsPanel:
    """Built in two places (:meth:`build_approval` under the chat, :meth:`build` in the side column);
    :meth:`wire` once the tab is built."""

    def __init__(self, services: Services, page: ChatPage) -> None:
        self.services = services
        self.page = page

    # --- layout -----------------------------------------------------------------------------------
    def build_approval(self) -> None:
        """The notice line (round limit reached...) and the approval row, under the chat box."""
        self.note = gr.Markdown("", elem_id="chat-tool-note")
        with gr.Row(visible=False, elem_id="chat-approval", equal_height=True) as self.approval_row:
            self.approval_text = gr.Markdown("", elem_id="chat-approval-text")
            self.run = gr.Button(
                t("chat.tool_run"), variant="primary", elem_id="chat-tool-run", size="sm", min_width=60
            )
            self.skip = gr.Button(t("chat.tool_skip"), elem_id="chat-tool-skip", size="sm", min_width=60)
            self.always = gr.Button(t("chat.tool_always_button"), elem_id="chat-tool-always", size="sm")
        #: The id of the call the approval row asks about (None: none asked).
        self.asking = gr.State(None)

    def build(self) -> None:
        """The Tools accordion of the side column."""
        settings = self.services.settings
        # with log-in the page is built as nobody's: the admin's controls show once an admin's page loads
        admin = self.services.is_admin
        with gr.Accordion(t("chat.tools"), open=False, elem_id="chat-tools"):
            self.mode_note = gr.Markdown("", elem_id="chat-tools-mode-note")
            self.tools = gr.CheckboxGroup(
                choices=[],
                value=[],
                label=t("chat.tools_enabled"),
                info=t("chat.tools_enabled_info"),
                elem_id="chat-tools-list",
            )
            self.broken = gr.Markdown("", elem_id="chat-tools-broken")
            self.reload = gr.Button(t("chat.tools_reload"), elem_id="chat-tools-reload", size="sm")
            self.force = gr.Checkbox(
                value=False, label=t("chat.tools_force"), info=t("chat.tools_force_info"), elem_id="chat-tools-force"
            )
            self.rounds = gr.Number(
                value=DEFAULT_TOOL_ROUNDS,
                label=t("chat.tools_rounds"),
                precision=0,
                minimum=1,
                maximum=100,
                elem_id="chat-tools-rounds",
            )
            # (the panel saves as it is ticked, in unqueued events: a failed save is written here)
            self.save_failed = save_note_box("chat-tools-save-note")
            self.allow_read_only = gr.Checkbox(
                value=settings.tools_allow_read_only,
                label=t("chat.tools_allow_read_only"),
                info=t("chat.tools_allow_read_only_info"),
                elem_id="chat-tools-read-only",
            )
            self.folder = gr.Textbox(
                value=str(settings.tools_folder or "") if admin else "",
                label=t("chat.tools_folder"),
                info=t("chat.tools_folder_info"),
                max_lines=1,
                interactive=admin,
                elem_id="chat-tools-folder",
            )
            with gr.Accordion(t("chat.mcp"), open=False, elem_id="chat-mcp"):
                self.mcp_status = gr.Markdown("", elem_id="chat-mcp-status")
                self.mcp_refresh = gr.Button(t("chat.mcp_refresh"), elem_id="chat-mcp-refresh", size="sm")
                self.mcp_editor = gr.Code(
                    value="",
                    language="json",
                    label=t("chat.mcp_edit"),
                    lines=8,
                    elem_id="chat-mcp-editor",
                    visible=admin,
                )
                self.mcp_save = gr.Button(t("chat.mcp_save"), elem_id="chat-mcp-save", size="sm", visible=admin)

    # --- values -----------------------------------------------------------------------------------
    def may_run(self, chat: Chat, name: str) -> bool:
        """Whether a call of ``name`` runs without asking: allowed in this chat, or a read-only tool while
        read-only tools are allowed."""
        if name in chat.tools_always:
            return True
        info = self.services.tools.info(name)
        return bool(self.services.settings.tools_allow_read_only and info and info.read_only and not info.error)

    def usable(self) -> list[ToolInfo]:
        return [info for info in self.services.tools.listing() if info.spec is not None and not info.error]

    def list_update(self, chat: Chat | None, lang: str) -> Any:
        """The tool list (the toolbox as it is now) with ``chat``'s tools ticked."""
        usable = self.usable()
        names = {info.name for info in usable}
        ticked = [n for n in (chat.tools if chat else self.page.last_tool_setup().get("tools", [])) if n in names]
        return gr.update(choices=[(tool_label(info, lang), info.name) for info in usable], value=ticked)

    def broken_text(self, lang: str) -> str:
        """The tools that cannot be used, each with why."""
        broken = [info for info in self.services.tools.listing() if info.error]
        if not broken:
            return ""
        lines = [f"**{tr('chat.tools_broken', lang)}**", ""]
        lines += [f"- ⚠ `{info.name}` ({info.source}): {info.error}" for info in broken]
        return "\n".join(lines)

    def mcp_text(self, lang: str) -> str:
        """One line per MCP server: name, state, message."""
        mcp = self.services.mcp
        lines = [f"⚠ {mcp.config_error}"] if mcp.config_error else []
        for status in mcp.status():
            state = tr(f"chat.mcp_state_{status.state}", lang)
            lines.append(
                f"- **{status.name}** ({status.transport}): {state}"
                + (f" - {status.message}" if status.message else "")
            )
        return "\n".join(lines) or tr("chat.mcp_none", lang)

    def approval_values(self, call: dict[str, Any] | None, lang: str) -> list[Any]:
        """Values for the approval row, its question, the Always button and :attr:`asking`."""
        if call is None:
            return [gr.update(visible=False), "", gr.update(), None]
        call_id, name, _ = call_parts(call)
        return [
            gr.update(visible=True),
            ask_text(call, lang),
            gr.update(value=tr("chat.tool_always", lang, name=name)),
            call_id,
        ]

    @property
    def approval_outputs(self) -> list[Any]:
        return [self.approval_row, self.approval_text, self.always, self.asking]

    @property
    def chat_outputs(self) -> list[Any]:
        """What opening a chat fills in: its tools, force switch, round limit, and the approval row."""
        return [self.tools, self.force, self.rounds, *self.approval_outputs]

    def chat_values(self, chat: Chat | None, lang: str | None = None) -> list[Any]:
        lang = lang or page_language()
        pending = chat.pending_calls() if chat is not None else []
        force = chat.force_tool if chat is not None else False
        rounds = (
            chat.tool_rounds
            if chat is not None
            else self.page.last_tool_setup().get("tool_rounds", DEFAULT_TOOL_ROUNDS)
        )
        return [
            self.list_update(chat, lang),
            force,
            rounds,
            *self.approval_values(pending[0] if pending else None, lang),
        ]

    @property
    def page_outputs(self) -> list[Any]:
        """What a page load fills in besides :attr:`chat_outputs`."""
        return [self.broken, self.allow_read_only, self.folder, self.mcp_status, self.mcp_editor, self.mcp_save]

    def page_values(self, lang: str | None = None) -> list[Any]:
        lang = lang or page_language()
        services = self.services
        admin = services.is_admin
        return [
            self.broken_text(lang),
            services.settings.tools_allow_read_only,
            gr.update(value=shown_folder(services), interactive=admin),
            self.mcp_text(lang),
            gr.update(value=services.mcp.load_text() if admin else "", visible=admin),
            gr.update(visible=admin),
        ]

    def mode_text(self, mode: str | None, lang: str | None = None) -> str:
        return "" if mode in (None, "instruct") else f"ⓘ {tr('chat.tools_instruct_only', lang or page_language())}"

    # --- events -----------------------------------------------------------------------------------
    def wire(self, *, current: Any, character_dd: Any, mode: Any) -> None:
        services, page = self.services, self.page

        def saved_chat(state: Any, character: str) -> Chat | None:
            """The open chat if it is on disk (a new one takes the panel's values with its first message)."""
            if not state or state[0] != character:
                return None
            try:
                return services.chats.load(character, state[1])
            except ChatNotFoundError:
                return None

        def keep_panel(state: Any, character: str, tools: list[str] | None, force: bool, rounds: float | None) -> None:
            """The panel's values go into the open chat (saved) and are remembered for new chats (both tried;
            a :class:`SaveError` if either could not be written)."""
            chat = saved_chat(state, character) or page.open_chat(state, character)
            failed: SaveError | None = None
            if apply_panel(chat, self.usable(), tools, force, rounds) and saved_chat(state, character) is not None:
                try:
                    services.chats.save(chat, touch=False)
                except OSError as exc:
                    failed = SaveError.writing(
                        exc,
                        services.chats.path_of(chat.character, chat.id),
                        "Could not save the chat's tools to {path}: {detail}. The ticks stay, and the next message "
                        "saves them with the chat.",
                        "error.save_chat_tools",
                    )
            try:
                page.remember_tools(chat, strict=True)
            except SaveError as exc:
                failed = failed or exc
            if failed is not None:
                raise failed

        def keep(state: Any, character: str, tools: list[str] | None, force: bool, rounds: float | None) -> Any:
            return save_note(lambda: keep_panel(state, character, tools, force, rounds))

        inputs = [current, character_dd, self.tools, self.force, self.rounds]
        for trigger in (self.tools.input, self.force.input, self.rounds.input, self.rounds.blur):
            trigger(
                ui_errors(keep),
                inputs,
                self.save_failed,
                queue=False,
                show_progress="hidden",
                trigger_mode="always_last",
            )

        def on_reload(state: Any, character: str) -> list[Any]:
            if services.is_admin:
                services.tools.reload()  # tool files read again, MCP servers restarted
            else:  # MCP servers are everyone's: only the admin restarts them; the tool files are read again
                for provider in services.tools.providers:
                    if getattr(provider, "source", "") != "mcp" and hasattr(provider, "reload"):
                        provider.reload()
            lang = page_language()
            chat = saved_chat(state, character) or page.open_chat(state, character)
            return [self.list_update(chat, lang), self.broken_text(lang), self.mcp_text(lang)]

        listing_outs = [self.tools, self.broken, self.mcp_status]
        self.reload.click(ui_errors(on_reload), [current, character_dd], listing_outs)
        self.mcp_refresh.click(ui_errors(on_reload), [current, character_dd], listing_outs)

        @ui_errors
        def on_mcp_save(text: str, state: Any, character: str) -> list[Any]:
            services.require_admin("change the MCP servers (mcp.json)")
            services.mcp.save_text(text or "")  # SettingsError: a pop-up, the file as it was
            services.mcp.reload()
            services.mcp.wait_connected(5.0)  # a quick server is listed at once; a slow one on Refresh
            return on_reload(state, character)

        self.mcp_save.click(on_mcp_save, [self.mcp_editor, current, character_dd], listing_outs)

        @ui_errors
        def on_read_only(allowed: bool) -> Any:
            return save_note(lambda: services.remember(tools_allow_read_only=bool(allowed)))

        self.allow_read_only.input(on_read_only, self.allow_read_only, self.save_failed, queue=False)

        @ui_errors
        def on_folder(text: str) -> str:
            shown = shown_folder(services)
            if (text or "").strip() == shown:  # leaving the box unchanged (or a read-only box) changes nothing
                return shown
            services.require_admin("change the folder the tools may read")
            folder = set_folder(services, text)
            # the server's setting: every page's tools read it (an admin's own view has a context of its own)
            services.root.tool_context.allowed_folder = folder
            return str(folder or "")

        for trigger in (self.folder.submit, self.folder.blur):
            # queued: "no such folder" is a pop-up (an unqueued event's error never reaches the page)
            trigger(on_folder, self.folder, self.folder, show_progress="hidden", trigger_mode="always_last")
        mode.change(lambda m: self.mode_text(m), mode, self.mode_note, queue=False, show_progress="hidden")


def apply_panel(chat: Chat, usable: list[ToolInfo], tools: list[str] | None, force: bool, rounds: float | None) -> bool:
    """The Tools panel's values into ``chat``; True if anything changed.

    The list shows only the tools usable now: a ticked tool that is missing for the moment (an MCP server
    still connecting, a file being fixed) stays in the chat's list."""
    names = {info.name for info in usable}
    kept = [n for n in chat.tools if n not in names]
    setup: dict[str, Any] = {"tools": [*(tools or []), *kept], "force_tool": bool(force)}
    if rounds is not None and rounds == rounds:  # an emptied number box leaves the limit as it was
        setup["tool_rounds"] = min(100, max(1, int(rounds)))
    return chat.apply_tool_setup(setup)


def shown_folder(services: Services) -> str:
    """The folder box's text: the server's folder for an admin; for anyone else (with log-in) the folder
    their read_file reads, their own files folder."""
    folder = services.settings.tools_folder if services.is_admin else services.tool_context.allowed_folder
    return str(folder or "")


def set_folder(services: Services, text: str | None) -> Path | None:
    """The folder read_file and list_files may read, from the panel's box ("" : none), in force at once and
    remembered. A path that is not a folder raises :class:`SettingsError` and changes nothing."""
    raw = (text or "").strip()
    folder = Path(raw).expanduser().resolve() if raw else None
    if folder is not None and not folder.is_dir():
        current = str(services.settings.tools_folder or "-")
        raise SettingsError(
            f"{raw} is not a folder; the tools keep the folder they had ({current}).",
            key="chat.tools_folder_bad",
            path=raw,
            current=current,
        )
    services.tool_context.allowed_folder = folder
    if folder != services.settings.tools_folder:
        save_or_warn(lambda: services.remember(tools_folder=str(folder) if folder else None))
        services.settings.tools_folder = folder
    return folder
