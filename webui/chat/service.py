"""ChatService: one chat turn (edit the chat, prepare the prompt on the worker, stream, save).

A turn is a job of the generation queue whose prepare step renders the chat for the model that
will answer it, on the generation thread: the template is that model's (or the one chosen for
it), the budget is its context, the tokens are counted by its tokenizer. What the preparation
found (prompt, token count, dropped turns, lorebook entries, template note) comes back on the
:class:`Turn`, never on the service, so two people chatting at once each see their own.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Literal, cast

from webui.agents.engine import call_grammar, call_problem, with_image_parts
from webui.agents.formats import ToolFormat, detect_format, format_by_name
from webui.agents.reasoning import THINK, ReasoningSplitter
from webui.agents.types import CallCollector, ToolCall, ToolChoice, ToolSpec
from webui.characters.character import Character
from webui.chat.attachments import Attachment, Upload, check_count, document_block, read_upload
from webui.chat.history import DECLINED, Chat, ChatStore, Message
from webui.chat.prompt import ChatOptions, Persona, Prompt, Template, build_prompt, context_limit
from webui.errors import (
    AttachmentError,
    ChatActionError,
    MessageNotFoundError,
    NoModelLoadedError,
    UnsupportedFeatureError,
)
from webui.generation.scheduler import GenerationJob, GenerationStats, Generator, Prepared
from webui.loaders.base import ChatPayload, StreamExtras
from webui.models.manager import LoadedModel
from webui.params import SamplingParams
from webui.tools.types import ToolResult

Action = Literal["send", "regenerate", "continue", "impersonate", "respond"]
#: The chat template for a loaded model, and the note saying which and why.
TemplateChooser = Callable[[LoadedModel], tuple[Template, str]]


class Turn:
    """One running chat turn. Iterate it for the reply text as it grows (the whole text each time).

    A reasoning model's thinking is split from the reply as it streams (by the markers of its
    template): ``text`` and what iterating yields are the reply alone, ``reasoning`` the thinking
    so far, ``thinking`` whether the model is still in it. Both are saved with the reply, apart.

    ``prompt`` (what was sent: text, tokens, dropped turns, fired lore, template note) is set once
    the generation thread has prepared it; ``stats`` once the reply has ended.
    """

    def __init__(
        self,
        service: ChatService,
        chat: Chat,
        action: Action,
        job: GenerationJob,
        reply: Message,
        prefix: str,
        undo: Callable[[], None],
        *,
        answered: bool = False,
        reasoning: str = "",
        notice: str = "",
    ) -> None:
        self.chat = chat
        self.action = action
        self.job = job
        self._service = service
        self._reply = reply
        self._prefix = prefix
        self._undo = undo
        # A Continue of a reply whose thinking is done: the new text is all reply, the thinking stays.
        self._answered = answered
        self.text = prefix
        self.reasoning = reasoning
        self.thinking = False
        #: The tool calls this reply made (checked against their tools' schemas), once it has ended.
        self.tool_calls: list[ToolCall] = []
        #: A line for the user about this turn (e.g. the round limit of tool calls was reached).
        self.notice = notice
        #: Set when the turn has ended without a word from the model (it never ran, or failed first): the
        #: reply it began is undone.
        self.unanswered = False

    @property
    def prompt(self) -> Prompt | None:
        prepared = self.job.prepared
        return prepared.detail if prepared is not None else None

    @property
    def stats(self) -> GenerationStats | None:
        return self.job.stats

    def _splitter(self) -> tuple[ReasoningSplitter, str]:
        """The splitter for this turn's output, and the reply prefix as the model "wrote" it (fed first)."""
        prompt = self.prompt
        if prompt is None:
            return ReasoningSplitter(THINK, answered=self._answered), self._prefix
        answered = self._answered or prompt.thinking_closed
        return ReasoningSplitter(prompt.reasoning, prompt.thinking_open, answered=answered), prompt.reply_prefix

    def __iter__(self) -> Iterator[str]:
        store, chat, reply = self._service.store, self.chat, self._reply
        writes_chat = self.action != "impersonate"
        content = ""
        splitter: ReasoningSplitter | None = None
        last_save = time.monotonic()

        parser: Any = None
        calls = CallCollector()

        def take(pieces: tuple[str, str]) -> None:
            nonlocal content
            self.reasoning += pieces[0]
            content += _visible(pieces[1])

        def _visible(text: str) -> str:
            # With tools, the answer goes through the format's parser: calls come out, text stays.
            if parser is None or not text:
                return text
            return "".join(_calls_from(parser.feed(text)))

        def _calls_from(events: list[Any]) -> Iterator[str]:
            for event in events:
                if event.content:
                    yield event.content
                if event.index is not None:
                    calls.add(event.index, event.id, event.name, event.arguments)

        def begin() -> ReasoningSplitter:
            # The job is prepared by now: the prompt says how this model marks its thinking (and
            # writes its tool calls).
            nonlocal parser
            prompt = self.prompt
            if prompt is not None and prompt.tool_format is not None and prompt.tools:
                parser = prompt.tool_format.stream(prompt.tools)
            splitter, fed = self._splitter()
            take(splitter.feed(fed))
            return splitter

        # Changes to the chat's messages from elsewhere wait for this reply or are refused (its saves would undo them).
        failed, answered = False, False
        with store.writing(chat) if writes_chat else contextlib.nullcontext():
            try:
                for chunk in self.job:
                    if not chunk.text and not chunk.reasoning and not chunk.tool_calls:
                        continue
                    answered = True
                    splitter = splitter or begin()
                    self.reasoning += chunk.reasoning  # a server that split it already
                    take(splitter.feed(chunk.text))
                    for delta in chunk.tool_calls or []:  # a chat server parsed them itself
                        calls.add(delta.index, delta.id, delta.name, delta.arguments)
                    self.thinking = splitter.had_reasoning and not splitter.closed
                    self._show(content)
                    if writes_chat:
                        reply.set_text(self.text)
                        reply.set_reasoning(self.reasoning)
                        if time.monotonic() - last_save > self._service.SAVE_EVERY:
                            store.save(chat)
                            last_save = time.monotonic()
                    yield self.text
                if splitter is None and self.job.prepared is not None:
                    splitter = begin()  # the model wrote nothing: the reply is its prefix
                if splitter is not None:
                    take(splitter.finish())
                    if parser is not None:
                        content += "".join(_calls_from(parser.finish()))
                    content += self._keep_calls(calls)
                    self._show(content)
            except Exception:
                failed = True
                raise
            finally:
                self.thinking = False
                # The turn never ran (no model, a prompt that cannot fit...), or failed before the model wrote a
                # thing (a remote server that is down): no empty reply is left, and a Send can be taken back.
                self.unanswered = not answered and (self.job.prepared is None or failed)
                if writes_chat:
                    if self.unanswered:
                        self._undo()
                    else:
                        reply.set_text(self.text.rstrip())
                        reply.set_reasoning(self.reasoning.strip())
                        if self.action != "continue" or self.tool_calls:
                            reply.tool_calls = [c.openai() for c in self.tool_calls]
                        if self.job.stats is not None:
                            reply.set_stats(stats_dict(self.job.stats))
                    store.save(chat)

    def _keep_calls(self, calls: CallCollector) -> str:
        """Keep the calls that name an offered tool with matching arguments; a wrong one is the text
        the model wrote (returned, to show), so nothing runs that the user did not see as a call."""
        prompt = self.prompt
        tools = {t.name: t for t in (prompt.tools if prompt is not None else [])}
        text = ""
        for call in calls.calls():
            problem = call_problem(call, tools) if tools else None
            if problem is None:
                self.tool_calls.append(call)
            else:
                fmt = prompt.tool_format if prompt is not None else None
                text += "\n" + (fmt.render_call(call) if fmt is not None else call.arguments)
                self.notice = f"The model wrote a tool call that is not valid ({problem}): shown as text."
        return text

    def _show(self, content: str) -> None:
        # "Name: text" puts a space after the colon; the reply itself starts at the text.
        self.text = content if self._prefix else content.lstrip()

    def result(self) -> str:
        """Run to the end and return the reply."""
        for _ in self:
            pass
        return self.text


class ChatService:
    """Runs chat turns: edits the chat, queues a job that prepares its prompt, streams, saves as it goes."""

    #: Seconds between saves while a reply streams (the user message is saved at once).
    SAVE_EVERY = 1.0

    def __init__(
        self,
        generator: Generator,
        store: ChatStore,
        choose_template: TemplateChooser,
        tool_format_for: Callable[[LoadedModel], str | None] | None = None,
    ) -> None:
        self.generator = generator
        self.store = store
        self.choose_template = choose_template
        #: The tool-call format chosen for a model (its per-model setting; None: read from the template).
        self.tool_format_for = tool_format_for

    def turn(
        self,
        chat: Chat,
        action: Action,
        *,
        text: str = "",
        character: Character,
        options: ChatOptions,
        params: SamplingParams,
        template: Template | None = None,
        cancel: threading.Event | None = None,
        reply_prefix: str = "",
        tools: list[ToolSpec] | None = None,
        tool_choice: ToolChoice | None = None,
        uploads: list[Upload] | None = None,
        fit: Literal["refuse", "trim"] = "refuse",
    ) -> Turn:
        """Start one action; iterate the returned :class:`Turn` to stream the reply.

        ``uploads`` (``send`` only): files and images sent with the message (read by
        :meth:`read_upload`); they are stored with the chat. One that does not fit in the context
        is refused before anything is saved, unless ``fit`` is ``trim`` (then only the part of a
        document that fits is sent, and ``Turn.notice`` says so). An image for a model that cannot
        see images is refused the same way.

        ``send`` adds ``text`` as a user message first (saved before anything is generated);
        ``regenerate`` writes a new version of the last reply (older versions are kept);
        ``continue`` extends the last reply; ``impersonate`` writes the user's next message
        and returns it without adding it to the chat; ``respond`` writes a new reply after the
        results of the last reply's tool calls. ``template`` None: the template chosen for the
        model that answers (its own, or the one saved for it).

        ``tools``: what the model may call in this reply (instruct mode), with ``tool_choice``
        (default ``auto``; ``required`` makes it call one). Once the chat's round limit of tool
        calls is reached the reply is written without tools, and ``Turn.notice`` says so.
        """
        uploads = list(uploads or [])
        if uploads and action != "send":
            raise ChatActionError("Files can only be attached to a new message.")
        if action == "send" and not text.strip() and not uploads:
            raise ChatActionError("Type a message first.")
        last = chat.messages[-1] if chat.messages else None
        if action in ("regenerate", "continue") and (last is None or last.role != "assistant"):
            raise ChatActionError("There is no reply to regenerate or continue yet.")
        if action == "respond" and (last is None or last.role != "tool"):
            raise ChatActionError("There are no tool results to answer.")
        if chat.pending_calls() and action != "regenerate":
            raise ChatActionError("The model's tool calls are waiting: press Run or Skip on each first.")
        tools = list(tools or [])
        choice = tool_choice or ToolChoice("auto")
        notice = ""
        if tools and options.mode != "instruct":
            tools, notice = [], "Tools work in instruct mode only: this reply is written without them."
        # Rounds already taken by the reply being written: none for a new message; a regenerated reply's
        # own calls do not count against it.
        used = 0 if action == "send" else chat.tool_rounds_used()
        if action == "regenerate" and last is not None and last.tool_calls:
            used -= 1
        if tools and used >= chat.tool_rounds:
            tools = []
            notice = (
                f"The limit of {chat.tool_rounds} rounds of tool calls was reached: the model answers without tools."
            )
        if not tools:
            choice = ToolChoice("none")
        if self.generator.models.current is None:
            # Checked again on the generation thread; here so that a turn that cannot run changes nothing.
            raise NoModelLoadedError()
        if action != "impersonate":
            # Another page's reply into this chat (two tabs on one chat): both would save over each other.
            self.store.require_idle(self.store.path_of(chat.character, chat.id))
        undo: Callable[[], None] = lambda: None  # noqa: E731
        answered, kept_reasoning, thinking_prefix = False, "", None
        if action == "send":
            stored, trimmed = self._store_uploads(chat, uploads, text, params, fit) if uploads else ([], "")
            if trimmed:
                notice = f"{notice} {trimmed}".strip()
            chat.messages.append(Message("user", text, attachments=stored))
            if chat.title == "New chat":
                first = text.strip().splitlines()[0][:60] if text.strip() else uploads[0].name[:60]
                chat.title = first
            self.store.save(chat)
        if action in ("send", "respond") or (action == "regenerate" and last is None):
            reply = Message("assistant", reply_prefix)
            history = list(chat.messages)
            chat.messages.append(reply)
            prefix = reply_prefix

            def undo() -> None:
                if chat.messages and chat.messages[-1] is reply:
                    chat.messages.pop()
        elif action == "regenerate":
            assert last is not None
            previous, previous_calls = last.active, last.tool_calls
            last.add_version(reply_prefix)
            last.tool_calls = []  # the new version makes its own calls
            reply, history, prefix = last, chat.messages[:-1], reply_prefix

            def undo() -> None:
                reply.tool_calls = previous_calls
                if len(reply.versions) > 1 and reply.active == len(reply.versions) - 1:
                    reply.drop_last_version(previous)
        elif action == "continue":
            assert last is not None
            reply, history, prefix = last, chat.messages[:-1], last.content
            if not last.content and last.reasoning:
                # Cut off while thinking: the model goes on thinking (the prompt ends inside its block).
                thinking_prefix = last.reasoning
            else:
                answered, kept_reasoning = True, last.reasoning
        else:  # impersonate: the model writes as the user
            reply, history, prefix = Message("user", reply_prefix), list(chat.messages), reply_prefix
        if action == "impersonate":
            speaker = Character(options.persona.name, options.persona.description)
            persona = Persona(character.name, character.fill(character.context, options.persona.name))
            options = ChatOptions("chat", "", persona, options.chat_instruct_command)
        else:
            speaker = character

        def prepare(loaded: LoadedModel, run_params: SamplingParams) -> Prepared:
            backend = loaded.backend
            if template is None:
                chosen, note = self.choose_template(loaded)
            else:
                chosen, note = template, ""
            caps = backend.capabilities
            uses_tools = choice.mode != "none" and bool(tools)
            has_tool_history = any(m.role == "tool" or m.tool_calls for m in history)
            fmt: ToolFormat | None = None
            if (uses_tools or has_tool_history) and not caps.chat_messages:
                name = self.tool_format_for(loaded) if self.tool_format_for is not None else None
                fmt = format_by_name(name) if name else detect_format(getattr(chosen, "source", None), backend.metadata)
            turn_options = replace(options, tools=tools if uses_tools else [], tool_format=fmt)
            recorder = None
            if backend.capabilities.chat_messages:
                # A chat server applies its own template: it gets the messages ours was rendered from.
                recorder = _RecordingTemplate(chosen)
                chosen = cast(Template, recorder)

            files = self.store.files(chat.character, chat.id)

            def build(reply_prefix: str) -> Prompt:
                return build_prompt(
                    chat,
                    history,
                    speaker,
                    turn_options,
                    chosen,
                    n_ctx=context_limit(backend.n_ctx, run_params.truncation_length),
                    max_new_tokens=run_params.max_tokens,
                    tokenize=backend.tokenize,
                    reply_prefix=reply_prefix,
                    materials=lambda m: files.materials(m.attachments),
                    image_tokens=backend.image_tokens,
                )

            if thinking_prefix is None:
                prompt = build(prefix)
            else:
                prompt = build(thinking_prefix)
                if not prompt.thinking_open:  # the template does not open the block: the prefix does
                    prompt = build(f"{prompt.reasoning.start}\n{thinking_prefix}")
            prompt = replace(prompt, tokens_estimated=backend.tokens_estimated, template_note=note)
            if prompt.images and not caps.images:
                raise UnsupportedFeatureError(
                    f"The loaded model ({loaded.name}) cannot see images, and this chat has "
                    f"{len(prompt.images)}: load a vision model (with its projector) in the Model tab, "
                    "or start a new chat without images.",
                    key="attach.no_vision_chat",
                    model=loaded.name,
                    n=len(prompt.images),
                )
            grammar: str | None = None
            extras: StreamExtras | None = None
            if recorder is not None:
                payload = ChatPayload(
                    tuple(_for_server(m) for m in with_image_parts(recorder.messages, prompt.images)),
                    tools=tuple(t.openai() for t in tools) if uses_tools else (),
                    tool_choice=choice.mode if uses_tools else None,
                )
                extras = StreamExtras(chat=payload)
            elif uses_tools and fmt is not None:
                # One call a round when one is forced (small models repeat a forced call until max_tokens).
                grammar, triggers = call_grammar(fmt, tools, choice, not choice.forced, lazy=caps.lazy_grammar)
                if grammar is not None and not caps.grammar:
                    raise UnsupportedFeatureError(
                        f"The {loaded.loader} loader cannot make the model call a tool (no grammar support): "
                        "switch off 'make the model call a tool'."
                    )
                extras = StreamExtras(grammar_triggers=triggers) if triggers else None
            if prompt.images and recorder is None:
                extras = replace(extras or StreamExtras(), images=tuple(prompt.images))
            return Prepared(
                prompt.text,
                stop=prompt.stop,
                tokens=prompt.tokens,
                front_cut=False,
                detail=prompt,
                grammar=grammar,
                extras=extras,
            )

        job = self.generator.submit(params=params, cancel=cancel, prepare=prepare)
        return Turn(
            self, chat, action, job, reply, prefix, undo, answered=answered, reasoning=kept_reasoning, notice=notice
        )

    # --- attachments --------------------------------------------------------------------------

    def read_upload(self, name: str, data: bytes) -> Upload:
        """Check and read a file the user attached (``AttachmentError`` with the reason when it cannot be used)."""
        return read_upload(name, data)

    def can_see_images(self) -> bool:
        """Whether the loaded model takes images."""
        current = self.generator.models.current
        return current is not None and current.backend.capabilities.images

    def upload_tokens(self, upload: Upload) -> int | None:
        """Tokens ``upload`` takes in a prompt for the loaded model (None: no model, or an image it cannot see)."""
        current = self.generator.models.current
        if current is None:
            return None
        backend = current.backend
        if upload.image is not None:
            return backend.image_tokens(upload.image) if backend.capabilities.images else None
        return max(0, len(backend.tokenize(upload.prompt_text())) - len(backend.tokenize("")))

    def attachment_path(self, chat: Chat, attachment: Attachment) -> Any:
        """The stored copy of an attachment (to show an image or offer the file for download)."""
        return self.store.files(chat.character, chat.id).path(attachment)

    def _store_uploads(
        self, chat: Chat, uploads: list[Upload], text: str, params: SamplingParams, fit: str
    ) -> tuple[list[Attachment], str]:
        """Check that the uploads fit (and can be seen), then store them. Returns the records and a
        notice when a document was trimmed to fit. Raises before writing anything."""
        check_count(uploads)
        current = self.generator.models.current
        assert current is not None
        backend = current.backend
        images = [u for u in uploads if u.image is not None]
        if images and not backend.capabilities.images:
            raise UnsupportedFeatureError(
                f"The loaded model ({current.name}) cannot see images ({images[0].name}): load a vision model "
                "with its projector in the Model tab, or remove the image.",
                key="attach.no_vision",
                model=current.name,
                name=images[0].name,
            )
        counts = [self.upload_tokens(u) or 0 for u in uploads]
        n_ctx = context_limit(backend.n_ctx, params.truncation_length)
        room = max(0, n_ctx - min(params.max_tokens, n_ctx // 2) - len(backend.tokenize(text)) - 16)
        total = sum(counts)
        keep: dict[int, int] = {}
        notice = ""
        if total > room:
            names = ", ".join(u.name for u in uploads)
            if fit != "trim":
                raise AttachmentError(
                    f"{names} {'has' if len(uploads) == 1 else 'have'} {total:,} tokens; {room:,} fit in this "
                    f"model's context ({n_ctx:,} tokens, {min(params.max_tokens, n_ctx // 2):,} kept for the reply). "
                    "Attach a smaller part, raise the context size in the Model tab, or send only the parts that fit.",
                    key="attach.too_big",
                    names=names,
                    tokens=total,
                    room=room,
                    n_ctx=n_ctx,
                )
            keep, notice = self._trim(backend, uploads, counts, room)
        files = self.store.files(chat.character, chat.id)
        stored = [
            files.store(u, tokens=c, keep_chars=keep.get(i))
            for i, (u, c) in enumerate(zip(uploads, counts, strict=True))
        ]
        for i, chars in keep.items():
            doc = uploads[i].document
            assert doc is not None
            stored[i].tokens = max(
                0, len(backend.tokenize(document_block(uploads[i].name, doc.text[:chars]))) - len(backend.tokenize(""))
            )
        return stored, notice

    @staticmethod
    def _trim(backend: Any, uploads: list[Upload], counts: list[int], room: int) -> tuple[dict[int, int], str]:
        """How many characters of each document to keep so that all fit in ``room`` tokens (images and
        text kept whole; documents share what is left in order)."""
        fixed = sum(c for u, c in zip(uploads, counts, strict=True) if u.document is None)
        left = room - fixed
        if left <= 0:
            raise AttachmentError(
                "The images alone do not fit in this model's context: remove some.", key="attach.images_too_big"
            )
        keep: dict[int, int] = {}
        parts: list[str] = []
        for i, (u, c) in enumerate(zip(uploads, counts, strict=True)):
            if u.document is None:
                continue
            if c <= left:
                left -= c
                continue
            text = u.document.text
            # Characters in proportion to the tokens that fit, then shrink until it fits.
            chars = max(0, int(len(text) * max(0, left) / max(1, c)))
            while chars > 0 and len(backend.tokenize(document_block(u.name, text[:chars]))) > left:
                chars = int(chars * 0.9)
            keep[i] = chars
            left = 0
            parts.append(f"{u.name}: the first {chars:,} of {len(text):,} characters")
        return keep, "Only the parts that fit were sent (" + "; ".join(parts) + ")."

    def resolve_call(self, chat: Chat, call_id: str, result: ToolResult | None) -> Message:
        """Answer one of the last reply's tool calls: its result, or (``None``) the user's Skip.

        The result is saved in the chat at once (a ``tool`` message after the call)."""
        pending = {c.get("id"): c for c in chat.pending_calls()}
        call = pending.get(call_id)
        if call is None:
            raise ChatActionError("That tool call has already been answered, or is not the last reply's.")
        name = (call.get("function") or {}).get("name", "")
        if result is None:
            message = Message("tool", DECLINED, tool_call_id=call_id, name=name, status="skipped")
        else:
            status = "error" if result.error else "done"
            message = Message("tool", result.text, tool_call_id=call_id, name=name, status=status)
        # Results follow the calls in the order the model made them, whatever order they were answered in.
        order = [c.get("id") for c in chat.messages[self._last_reply(chat)].tool_calls]
        at = len(chat.messages)
        while (
            at > 0
            and chat.messages[at - 1].role == "tool"
            and order.index(chat.messages[at - 1].tool_call_id) > order.index(call_id)
        ):
            at -= 1
        chat.messages.insert(at, message)
        self.store.save(chat)
        return message

    @staticmethod
    def _last_reply(chat: Chat) -> int:
        for i in range(len(chat.messages) - 1, -1, -1):
            if chat.messages[i].role == "assistant":
                return i
        raise ChatActionError("There is no reply with tool calls.")


def stats_dict(stats: GenerationStats) -> dict:
    return {
        "tokens": stats.completion_tokens,
        "tokens_per_second": round(stats.tokens_per_second, 1),
        "ttft": round(stats.ttft_seconds, 3) if stats.ttft_seconds is not None else None,
        "model": stats.model,
        "seed": stats.seed,
        "finish_reason": stats.finish_reason,
    }


def greeting_message(character: Character, user: str) -> Message | None:
    """The message that opens a chat: the greeting, with the alternate greetings as its other versions."""
    greetings = character.greetings(user)
    if not greetings:
        return None
    return Message("assistant", greetings[0], versions=greetings)


def remove_last(chat: Chat) -> str:
    """Remove the last exchange (the last reply and the user message before it).

    Returns the removed user text, so the UI can put it back in the input box.
    """
    removed = ""
    if chat.messages and chat.messages[-1].role == "assistant":
        chat.messages.pop()
    if chat.messages and chat.messages[-1].role == "user":
        removed = chat.messages.pop().content
    chat.context_start = min(chat.context_start, max(0, len(chat.messages) - 1))
    return removed


def edit_message(chat: Chat, index: int, text: str) -> None:
    """Change one message in place; the messages after it stay."""
    if not 0 <= index < len(chat.messages):
        raise MessageNotFoundError(f"There is no message number {index + 1} in this chat.")
    chat.messages[index].set_text(text)


def switch_version(chat: Chat, index: int, delta: int) -> Message:
    """Show the previous (-1) or next (+1) version of a regenerated reply."""
    if not 0 <= index < len(chat.messages):
        raise MessageNotFoundError(f"There is no message number {index + 1} in this chat.")
    message = chat.messages[index]
    message.select(message.active + delta)
    return message


class _RecordingTemplate:
    """A template that remembers the messages of its last render (for a server that takes messages)."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.messages: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.template, name)

    def render(self, messages: list[dict[str, Any]], **kwargs: Any) -> str:
        self.messages = [dict(m) for m in messages]
        return self.template.render(messages, **kwargs)


def _for_server(message: dict[str, Any]) -> dict[str, Any]:
    """A message as a chat server takes it: a call's arguments as JSON text (templates get objects)."""
    if not message.get("tool_calls"):
        return message
    calls = []
    for call in message["tool_calls"]:
        function = dict(call.get("function") or {})
        if not isinstance(function.get("arguments"), str):
            function["arguments"] = json.dumps(function.get("arguments") or {})
        calls.append({**call, "function": function})
    return {**message, "tool_calls": calls}
