"""What the parts of the Chat tab share: how a chat is shown in the box, and a page's open chat.

The conversation (``chat_tab``), the chats list (``chat_history_panel``) and the character panel
(``character_panel``) all show a chat in the same box and act on the same open chat, which each
browser session keeps in a ``gr.State`` as ``(character, chat id)``.

A chat carries its set-up (mode, system prompt, persona, instruction template, thinking): the Chat tab's
inputs save it into the open chat as they change, and opening a chat (page load, the list, a
character switch) puts its set-up back into them; a new chat starts with the last one used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal

import gradio as gr

from webui.agents.reasoning import template_reads
from webui.catalogue import in_language
from webui.chat.history import Chat, Message, clean_setup
from webui.chat.prompt import MODES, ChatOptions, Prompt, build_prompt, context_limit
from webui.chat.service import greeting_message
from webui.errors import ChatNotFoundError, SaveError, WebUIError
from webui.services import Services
from webui.storage import arrived
from webui.ui.attachments_ui import ServedFiles, attachment_entries
from webui.ui.common import error_text, save_or_warn
from webui.ui.i18n import page_language, tr

#: Messages shown in the chat box by default (settings.yaml ``chat_window``); older ones are one
#: click away ("Show all messages"). The browser re-renders the whole box on every streamed update:
#: a 500-message chat streamed 4.7 x slower than a 10-message one with every message shown
#: (bench/ui.py, docs/performance.md).
DISPLAY_WINDOW = 60
EARLIER_MARK = "<!--earlier-->"
#: The tool settings a new chat takes from the last one used.
REMEMBERED_TOOL_FIELDS = ("tools", "tool_rounds")
#: The template dropdown's choice for "the model's own chat template" (saved in a chat as "").
MODEL_TEMPLATE = "(model's own template)"


def setup_of(
    mode: str | None,
    system: str | None,
    name: str | None,
    bio: str | None,
    template: str | None,
    thinking: bool | None = True,
) -> dict[str, Any]:
    """The Chat tab's set-up inputs as a chat's set-up fields (``Chat.setup``)."""
    return {
        "mode": mode if mode in MODES else "instruct",
        "system_prompt": system or "",
        "persona_name": name if name is not None else "You",
        "persona_bio": bio or "",
        "instruction_template": "" if not template or template == MODEL_TEMPLATE else template,
        "thinking": thinking is not False,
    }


def stats_line(message: Message, lang: str | None = None) -> str:
    """A reply's stats and, after a Regenerate, which version is shown ("" for none).

    Shown in the line under the chat box for the last reply; kept out of the message's text, so the
    edit box and Copy hold only the reply."""
    lang = lang or page_language()
    parts = []
    if len(message.versions) > 1:
        parts.append(tr("chat.version_of", lang, n=message.active + 1, total=len(message.versions)))
    stats = message.stats
    if stats:
        ttft = f"{stats['ttft']:.2f} s" if stats.get("ttft") is not None else "-"
        parts += [
            tr("chat.stat_tokens", lang, n=stats["tokens"]),
            # (one token has no speed: it is measured between the first token and the last)
            tr("chat.stat_speed", lang, speed=stats["tokens_per_second"] if stats["tokens"] > 1 else "-"),
            tr("chat.stat_ttft", lang, ttft=ttft),
            str(stats.get("model", "")),
            tr("chat.stat_seed", lang, seed=stats.get("seed", "")),
        ]
    return " · ".join(parts)


def _title(entry: Any) -> str:
    metadata = entry.get("metadata") if isinstance(entry, dict) else getattr(entry, "metadata", None)
    title = metadata.get("title") if isinstance(metadata, dict) else getattr(metadata, "title", None)
    return title if isinstance(title, str) else ""


def is_thought(entry: Any) -> bool:
    """A shown entry that is not a message of its own: a reply's thinking or one of its tool calls
    (a collapsible block with a metadata title)."""
    return bool(_title(entry))


#: Start of a tool call block's title (then the tool's name).
TOOL_MARK = "🔧 "
#: What a shown entry is: a message's text, its thinking, one of its tool calls, or one of its attached files.
EntryKind = Literal["text", "thinking", "tool", "attachment"]


def fenced(text: str, lang: str = "") -> str:
    """``text`` in a Markdown code block whose fence no run of backticks inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def pretty_arguments(arguments: str) -> str:
    """A call's arguments as indented JSON (as the model wrote them if they are not JSON)."""
    try:
        return json.dumps(json.loads(arguments or "{}"), ensure_ascii=False, indent=2)
    except (json.JSONDecodeError, RecursionError):
        return arguments


def tool_results(chat: Chat) -> dict[str, Message]:
    """The ``tool`` messages of ``chat`` by the id of the call they answer."""
    return {m.tool_call_id: m for m in chat.messages if m.role == "tool" and m.tool_call_id}


def tool_block(call: dict[str, Any], result: Message | None, lang: str) -> dict[str, Any]:
    """One tool call as a collapsible block: its arguments, then its result (pending until it has one)."""
    function = call.get("function") or {}
    name = str(function.get("name", ""))
    body = f"**{tr('chat.tool_arguments', lang)}**\n\n{fenced(pretty_arguments(str(function.get('arguments', ''))), 'json')}"
    title = TOOL_MARK + name
    if result is None:
        title += f" · {tr('chat.tool_waiting', lang)}"
    else:
        if result.status == "skipped":
            title += f" · {tr('chat.tool_skipped', lang)}"
        elif result.status == "error":
            title += f" · ⚠ {tr('chat.tool_error', lang)}"
        body += f"\n\n**{tr('chat.tool_result', lang)}**\n\n{fenced(result.content)}"
    return {
        "role": "assistant",
        "content": body,
        "metadata": {"title": title, "status": "pending" if result is None else "done"},
    }


def _entries(
    chat: Chat, shown: list[int], lang: str, thinking: bool, files: ServedFiles | None = None
) -> list[tuple[int, EntryKind, dict[str, Any]]]:
    """The box's entries for the messages ``shown`` (indices into ``chat.messages``), each with the
    message it belongs to and what part of it it is."""
    results = tool_results(chat) if any(chat.messages[i].tool_calls for i in shown) else {}
    out: list[tuple[int, EntryKind, dict[str, Any]]] = []
    for n, i in enumerate(shown):
        m = chat.messages[i]
        out.extend((i, "attachment", entry) for entry in attachment_entries(chat, m, lang, files))
        if m.role == "assistant" and m.reasoning:
            status = "pending" if thinking and n == len(shown) - 1 else "done"
            thought = {
                "role": "assistant",
                "content": m.reasoning,
                "metadata": {"title": tr("chat.thinking", lang), "status": status},
            }
            out.append((i, "thinking", thought))
        if m.content or not (m.tool_calls or m.attachments):  # only calls, or only files: no text bubble
            line = stats_line(m, lang) if m.role == "assistant" else ""
            out.append(
                (i, "text", {"role": m.role, "content": m.content, **({"metadata": {"log": line}} if line else {})})
            )
        for call in m.tool_calls if m.role == "assistant" else []:
            out.append((i, "tool", tool_block(call, results.get(str(call.get("id", ""))), lang)))
    return out


def to_display(
    chat: Chat | None,
    lang: str | None = None,
    window: int | None = DISPLAY_WINDOW,
    *,
    thinking: bool = False,
    files: ServedFiles | None = None,
) -> list[dict[str, Any]]:
    """The chat as gr.Chatbot messages; a reply's :func:`stats_line` goes in its metadata (``log``, not shown
    in the box: the line under it shows the last reply's).

    A reply with a reasoning model's thinking has it in a "Thinking" block (a Chatbot thought: an entry
    with a metadata title) right above it, collapsed; open while the model is still thinking
    (``thinking``: the last reply's thinking is under way). A reply's tool calls follow it, each a
    collapsed block titled "🔧 <tool>" holding the arguments and then the result (status pending until
    the result is in; skipped and failed calls say so in the title); the ``tool`` messages themselves
    are not shown, and a reply that is only calls has no text bubble. A message's attached files come
    before its text, one entry each (:func:`~webui.ui.attachments_ui.attachment_entries`: images shown,
    documents as chips linking to their stored copies when ``files`` serves them).

    With ``window``, only the newest ``window`` messages are shown, after a first line saying how
    many earlier ones are hidden; the shown ones are always the newest (a suffix), which is how
    :func:`entry_targets` maps a clicked entry back to the chat.
    """
    if chat is None:
        return []
    lang = lang or page_language()
    visible = [i for i, m in enumerate(chat.messages) if m.role in ("user", "assistant")]
    hidden = max(0, len(visible) - window) if window else 0
    out: list[dict[str, Any]] = []
    if hidden:
        out.append({"role": "assistant", "content": EARLIER_MARK + tr("chat.earlier_hidden", lang, n=hidden)})
    return out + [entry for _, _, entry in _entries(chat, visible[hidden:], lang, thinking, files)]


def _is_marked(shown: list[Any]) -> bool:
    first = shown[0] if shown else None
    content = first.get("content") if isinstance(first, dict) else getattr(first, "content", None)
    if isinstance(content, list) and content:  # what the page sends back: a list of parts
        part = content[0]
        content = part.get("text") if isinstance(part, dict) else getattr(part, "text", None)
    return isinstance(content, str) and content.startswith(EARLIER_MARK)


def entry_targets(chat: Chat, shown: list[Any] | None, lang: str | None = None) -> list[tuple[int, EntryKind] | None]:
    """For each entry of the box (as the page has it), the chat message it shows (an index into
    ``chat.messages``) and which part of it; None for the 'earlier messages' line (and for every entry
    when the box does not match the chat any more)."""
    shown = list(shown or [])
    marked = _is_marked(shown)
    visible = [i for i, m in enumerate(chat.messages) if m.role in ("user", "assistant")]
    full = [(i, kind) for i, kind, _ in _entries(chat, visible, lang or "en", False)]
    n = len(shown) - marked
    if n > len(full):
        return [None] * len(shown)
    return [None] * marked + list(full[len(full) - n :])


def shown_offset(n_visible: int, shown: list[Any] | None) -> tuple[int, bool]:
    """(chat index of the first shown message, whether the box starts with the 'earlier' line), for a
    chat without tool calls or attachments (:func:`entry_targets` maps any chat)."""
    shown = list(shown or [])
    marked = _is_marked(shown)
    thoughts = sum(1 for entry in shown if is_thought(entry))
    return n_visible - (len(shown) - marked - thoughts), marked


def shown_target(n_visible: int, shown: list[Any] | None, index: int) -> tuple[int, bool] | None:
    """Which visible message the shown entry ``index`` is, and whether it is its thinking (True) or its
    text; None for the 'earlier messages' line (a chat without tool calls: see :func:`entry_targets`)."""
    shown = list(shown or [])
    offset, marked = shown_offset(n_visible, shown)
    if (marked and index == 0) or not 0 <= index < len(shown):
        return None
    before = sum(1 for entry in shown[marked:index] if not is_thought(entry))
    return offset + before, is_thought(shown[index])


class ChatPage:
    """A Chat tab's open chat and how it is shown, for the tab and its panels.

    Holds no per-user state itself: the open chat of each browser session travels in the
    ``state`` argument (a ``gr.State`` of ``(character, chat id)``).
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        #: Attached files as Gradio serves them (images shown in the box, documents offered for download).
        self.files = ServedFiles(services)
        #: The chat each page (by Gradio session) has open now: a reply keeps streaming into the chat box
        #: only while its page shows its chat (New chat, another chat or character picked meanwhile: the
        #: reply goes on into its own chat, off screen).
        self.showing: dict[str, tuple[str, str]] = {}

    @property
    def window(self) -> int | None:
        """How many messages the box shows: this page's user's choice (settings chat_window; 0: all)."""
        return self.services.settings.chat_window or None

    def display(
        self, chat: Chat | None, lang: str | None = None, *, all_messages: bool = False, thinking: bool = False
    ) -> list[dict[str, Any]]:
        return to_display(chat, lang, None if all_messages else self.window, thinking=thinking, files=self.files)

    def open_chat(self, state: Any, character: str) -> Chat:
        if state and state[0] == character:
            try:
                return self.services.chats.load(character, state[1])
            except ChatNotFoundError:
                return self.fresh_chat(character, state[1])  # a new chat is written with its first message
        return self.fresh_chat(character)

    def fresh_chat(self, character: str, chat_id: str | None = None) -> Chat:
        """A new chat (opened by the character's greeting), set up as the last one used.

        Not on disk until its first message."""
        chat = self.services.chats.new(character)
        chat.apply_setup(self.last_setup())
        chat.apply_tool_setup(self.last_tool_setup())
        if chat_id:
            chat.id = chat_id
        first = greeting_message(self.services.characters.load(character), chat.persona_name or "You")
        if first is not None:
            chat.messages.append(first)  # alternate greetings are its other versions
        return chat

    def remember_open(self, chat: Chat, session: str | None = None) -> tuple[str, str]:
        """``chat`` is open on this page (``session``: the page's Gradio session, else the request's) and is
        the one a restart opens: the value of the page's open-chat state."""
        save_or_warn(lambda: self.services.remember_chat(chat.character, chat.id))
        opened = (chat.character, chat.id)
        if session is None:
            from gradio.context import LocalContext

            request = LocalContext.request.get(None)
            session = getattr(request, "session_hash", None)
        if session:
            self.showing[session] = opened
        return opened

    def forget_page(self, request: gr.Request) -> None:
        """The page closed or reloaded (Gradio's unload): its entry in :attr:`showing` goes."""
        self.showing.pop(request.session_hash or "", None)

    def shows(self, session: str, chat: Chat) -> bool:
        """Whether the page of ``session`` shows ``chat`` (True when it is not known)."""
        return self.showing.get(session, (chat.character, chat.id)) == (chat.character, chat.id)

    # --- the chat's set-up ----------------------------------------------------------------------
    def last_setup(self) -> dict[str, Any]:
        """The set-up used last (settings.yaml ``chat_setup``), what a new chat starts with."""
        saved = self.services.settings.chat_setup
        return clean_setup(saved if isinstance(saved, dict) else {})

    def last_tool_setup(self) -> dict[str, Any]:
        """The tools (and the round limit) of the chat used last: what a new chat starts with (kept in
        settings.yaml's ``chat_setup`` beside the set-up; "always allow" and the force switch are per chat)."""
        saved = self.services.settings.chat_setup
        return clean_setup(saved if isinstance(saved, dict) else {}, REMEMBERED_TOOL_FIELDS)

    def remember_setup(self, setup: dict[str, Any], *, strict: bool = False) -> None:
        """``setup`` is what new chats start with; a failed save is a warning (``strict``: a :class:`SaveError`)."""
        setup = clean_setup(setup)
        if setup != self.last_setup():
            merged = {**self.last_tool_setup(), **setup}
            if strict:
                self.services.remember(chat_setup=merged)
            else:
                save_or_warn(lambda: self.services.remember(chat_setup=merged))

    def remember_tools(self, chat: Chat, *, strict: bool = False) -> None:
        """``chat``'s tools and round limit are what the next new chat starts with; a failed save is a
        warning (``strict``: a :class:`SaveError`)."""
        tools = {k: v for k, v in chat.tool_setup().items() if k in REMEMBERED_TOOL_FIELDS}
        if tools != self.last_tool_setup():
            merged = {**self.last_setup(), **tools}
            if strict:
                self.services.remember(chat_setup=merged)
            else:
                save_or_warn(lambda: self.services.remember(chat_setup=merged))

    def keep_setup(self, state: Any, character: str, *values: Any) -> None:
        """The set-up inputs changed: save them into the open chat, and remember them for new chats.

        A new chat that is not on disk yet takes them with its first message (the turn saves them).
        A keystroke's save still running when the box is left never lands after the blur's: both saves
        keep the place in line their request took here (``arrived``).

        Raises :class:`SaveError` if either could not be written (both are tried): the boxes keep the text,
        and the next message saves it into the chat.
        """
        with arrived():
            setup = setup_of(*values)
            if not self.template_usable(setup["instruction_template"]):
                # A template file broken by hand, just picked: the Chat tab refuses it (on_template) and the
                # chat keeps the template in force, not one its next turn could not use.
                setup["instruction_template"] = setup_of(None, None, None, None, self.template_choice())[
                    "instruction_template"
                ]
            failed: SaveError | None = None
            try:
                self.remember_setup(setup, strict=True)
            except SaveError as exc:
                failed = exc
            if state and state[0] == character:
                try:
                    self.services.chats.keep_setup(character, state[1], setup)
                except ChatNotFoundError:
                    pass
                except OSError as exc:
                    failed = failed or SaveError.writing(
                        exc,
                        self.services.chats.path_of(character, state[1]),
                        "Could not save the chat's set-up to {path}: {detail}. It stays in the boxes, and the next "
                        "message saves it with the chat.",
                        "error.save_chat_setup",
                    )
            if failed is not None:
                raise failed

    def use_setup(self, chat: Chat, *values: Any) -> None:
        """A turn is sent with these set-up inputs: they go into the chat (saved with the turn)."""
        setup = setup_of(*values)
        chat.apply_setup(setup)
        self.remember_setup(setup)

    def preview_prompt(
        self, state: Any, character: str, options: ChatOptions, template_choice: str | None, prefix: str = ""
    ) -> Prompt | None:
        """The prompt the open chat's next turn would send (with a placeholder for the next message), as a
        turn builds it: the same budget (``truncation_length``, room for the reply), attachments and
        lorebook. None without a model."""
        loaded = self.services.models.current
        if loaded is None:
            return None
        chat = self.open_chat(state, character)
        files = self.services.chat_service.store.files(chat.character, chat.id)
        template, _ = self.template_for(template_choice)
        params = self.services.initial_params()  # the Parameters tab's values, saved as they change
        history = [*chat.messages, Message("user", tr("chat.next_message", page_language()))]
        return build_prompt(
            chat,
            history,
            self.services.characters.load(character),
            options,
            template,
            n_ctx=context_limit(loaded.backend.n_ctx, params.truncation_length),
            max_new_tokens=params.max_tokens,
            tokenize=loaded.backend.tokenize,
            reply_prefix=prefix or "",
            materials=lambda m: files.materials(m.attachments),  # what the model gets: the attachments too
            image_tokens=loaded.backend.image_tokens,
        )

    def template_for(self, choice: str | None) -> tuple[Any, str]:
        """The template the dropdown's choice gives the loaded model (for the prompt view and the note)."""
        loaded = self.services.models.current
        override = None if not choice or choice == MODEL_TEMPLATE else choice
        template, note = self.services.choose_template(
            loaded.backend.chat_template if loaded else None, override, loaded.backend.metadata if loaded else None
        )
        return template, in_language(note, page_language())

    def template_usable(self, choice: str | None) -> bool:
        """False for a template file that cannot be read or compiled (broken by hand). Only a change from the
        template in force is read: the set-up is saved at every keystroke."""
        if not choice or choice == MODEL_TEMPLATE or choice == self.template_choice():
            return True
        return self.template_error(choice) is None

    def template_error(self, choice: str | None) -> str | None:
        """Why ``choice`` cannot give the loaded model a template (a file broken by hand), or None."""
        try:
            self.template_for(choice)
        except WebUIError as exc:
            return error_text(exc, page_language())
        return None

    def use_template(self, choice: str | None) -> None:
        """The template dropdown's choice holds for the loaded model (saved per model, as the Chat tab shows it)."""
        loaded = self.services.models.current
        if loaded is None:
            return
        overrides = dict(self.services.settings.template_overrides)
        if not choice or choice == MODEL_TEMPLATE:
            overrides.pop(loaded.name, None)
        else:
            overrides[loaded.name] = choice
        if overrides != self.services.settings.template_overrides:
            save_or_warn(lambda: self.services.remember(template_overrides=overrides))

    def thinking_switch(self, choice: str | None, value: Any = None) -> Any:
        """The Thinking switch: shown only when the template the choice gives the loaded model reads
        ``enable_thinking`` (``value``: also set it; None leaves it)."""
        shown = False
        if self.services.models.current is not None:
            try:
                template, _ = self.template_for(choice)
            except WebUIError:
                template = None
            shown = template_reads(getattr(template, "source", None), "enable_thinking")
        return gr.update(visible=shown) if value is None else gr.update(visible=shown, value=value)

    def setup_values(self, chat: Chat | None, otherwise: Callable[[], list[Any]] | None = None) -> list[Any]:
        """Values for the set-up inputs (mode, system prompt, name, about you, template, its note, the
        Thinking switch) showing ``chat``'s set-up (None: the last used). A chat's template choice is put
        in force for the loaded model; for a chat that never recorded one (an older file) the template
        and note are ``otherwise()``, else left as they are."""
        setup = chat.setup() if chat is not None else {**Chat(id="", character="").setup(), **self.last_setup()}
        mode = setup["mode"] if setup["mode"] in MODES else "instruct"
        template = self.restore_template(setup["instruction_template"])
        if template is None:
            template = tuple(otherwise()) if otherwise else (gr.update(), gr.update())
        choice = template[0] if isinstance(template[0], str) else self.template_choice()
        return [
            mode,
            setup["system_prompt"],
            setup["persona_name"],
            setup["persona_bio"],
            *template,
            self.thinking_switch(choice, setup["thinking"]),
        ]

    def template_choice(self) -> str:
        """The template dropdown's choice in force for the loaded model (its override, or its own)."""
        loaded = self.services.models.current
        override = self.services.template_override_for(loaded.name) if loaded else None
        return override if override and override in self.services.instruction_templates.names() else MODEL_TEMPLATE

    def restore_template(self, template: str | None) -> tuple[str, str] | None:
        """A chat's template choice put in force (dropdown value, note); None if there is none to restore
        (never recorded, or a template file that is gone)."""
        if template is None or (template and template not in self.services.instruction_templates.names()):
            return None
        choice = template or MODEL_TEMPLATE
        broken = self.template_error(choice)
        if broken is not None:
            # A template file broken by hand since: not put in force (every Send would fail on it). The
            # template in force stays (the model's own, if the broken one was it); the note says why.
            before = self.template_choice()
            if before == choice:
                before = MODEL_TEMPLATE
                self.use_template(before)
            kept = self.template_error(before) is None and self.services.models.current is not None
            note = self.template_for(before)[1] if kept else ""
            return before, f"⚠ {broken}\n\n{note}".strip()
        self.use_template(choice)
        try:
            note = self.template_for(choice)[1] if self.services.models.current else ""
        except WebUIError as exc:
            note = error_text(exc, page_language())
        return choice, note
