"""What the parts of the Chat tab share: how a chat is shown in the box, and a page's open chat.

The conversation (``chat_tab``), the chats list (``chat_history_panel``) and the character panel
(``character_panel``) all show a chat in the same box and act on the same open chat, which each
browser session keeps in a ``gr.State`` as ``(character, chat id)``.
"""

from __future__ import annotations

from typing import Any

from webui.chat.history import Chat, Message
from webui.chat.service import greeting_message
from webui.errors import ChatNotFoundError
from webui.services import Services
from webui.ui.common import save_or_warn
from webui.ui.i18n import page_language, tr

#: Messages shown in the chat box by default (settings.yaml ``chat_window``); older ones are one
#: click away ("Show all messages"). The browser re-renders the whole box on every streamed update:
#: a 500-message chat streamed 4.7 x slower than a 10-message one with every message shown
#: (bench/ui.py, docs/performance.md).
DISPLAY_WINDOW = 60
EARLIER_MARK = "<!--earlier-->"


def stats_line(message: Message, lang: str | None = None) -> str:
    """The small line under a reply: its stats and, after a Regenerate, which version is shown."""
    lang = lang or page_language()
    parts = []
    if len(message.versions) > 1:
        parts.append(tr("chat.version_of", lang, n=message.active + 1, total=len(message.versions)))
    stats = message.stats
    if stats:
        ttft = f"{stats['ttft']:.2f} s" if stats.get("ttft") is not None else "-"
        parts += [
            tr("chat.stat_tokens", lang, n=stats["tokens"]),
            tr("chat.stat_speed", lang, speed=stats["tokens_per_second"]),
            tr("chat.stat_ttft", lang, ttft=ttft),
            str(stats.get("model", "")),
            tr("chat.stat_seed", lang, seed=stats.get("seed", "")),
        ]
    return f"\n\n<sub>{' · '.join(parts)}</sub>" if parts else ""


def to_display(chat: Chat | None, lang: str | None = None, window: int | None = DISPLAY_WINDOW) -> list[dict[str, Any]]:
    """The chat as gr.Chatbot messages: stats under each reply, version arrows where there are versions.

    With ``window``, only the newest ``window`` messages are shown, after a first line saying how
    many earlier ones are hidden; the shown ones are always the newest (a suffix), which is how
    :func:`shown_offset` maps a clicked message back to the chat.
    """
    if chat is None:
        return []
    lang = lang or page_language()
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


class ChatPage:
    """A Chat tab's open chat and how it is shown, for the tab and its panels.

    Holds no per-user state itself: the open chat of each browser session travels in the
    ``state`` argument (a ``gr.State`` of ``(character, chat id)``).
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        #: How many messages the box shows (settings.yaml chat_window; 0: all).
        self.window = services.settings.chat_window or None

    def display(
        self, chat: Chat | None, lang: str | None = None, *, all_messages: bool = False
    ) -> list[dict[str, Any]]:
        return to_display(chat, lang, None if all_messages else self.window)

    def open_chat(self, state: Any, character: str) -> Chat:
        if state and state[0] == character:
            try:
                return self.services.chats.load(character, state[1])
            except ChatNotFoundError:
                return self.fresh_chat(character, state[1])  # a new chat is written with its first message
        return self.fresh_chat(character)

    def fresh_chat(self, character: str, chat_id: str | None = None) -> Chat:
        """A new chat (opened by the character's greeting). Not on disk until its first message."""
        chat = self.services.chats.new(character)
        if chat_id:
            chat.id = chat_id
        first = greeting_message(self.services.characters.load(character), "You")
        if first is not None:
            chat.messages.append(first)  # alternate greetings are its other versions
        return chat

    def remember_open(self, chat: Chat) -> tuple[str, str]:
        save_or_warn(lambda: self.services.remember_chat(chat.character, chat.id))
        return (chat.character, chat.id)
