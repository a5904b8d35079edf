"""Chat templates: compiled once, rendered in a sandbox that bounds their work.

A chat template turns a conversation into the prompt text a model was trained
on. Templates arrive inside downloaded model files (GGUF metadata
``tokenizer.chat_template``, ``tokenizer_config.json``), so they are untrusted
code. This module owns:

- :class:`ChatTemplate`: a template compiled once in Jinja's
  ``ImmutableSandboxedEnvironment`` with the globals Hugging Face templates
  expect (``raise_exception``, ``strftime_now``, a non-escaping ``tojson``),
  and rendered under a per-render budget. The sandbox stops attribute tricks
  (``''.__class__.__mro__``); the budget stops runaway work: ``range()`` is
  capped, every value a template builds (strings, lists, big integers) is
  size-checked before it is made, loop iterations and calls are counted, and
  the output is capped. Either way the user gets a :class:`TemplateError`, not
  a hung or killed server.
- :class:`InstructionTemplateStore`: ``instruction-templates/*.yaml`` in
  text-generation-webui's format (one key, ``instruction_template``).
- :func:`choose_template`: which template a model uses (override, its own, or
  the fallback) and a one-line note saying why.

``bos_token`` defaults to ``""`` when rendering because both loaders add BOS
themselves when they tokenize the prompt; pass the real token only when the
caller does not.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Generator
from typing import Any

import jinja2
from jinja2.sandbox import SecurityError

from webui.catalogue import Keyed
from webui.errors import ConversationRejectedError, SettingsError, TemplateError, UnsafeTemplateError
from webui.storage import YamlFolder
from webui.templates.sandbox import (
    _BUDGET,
    RenderLimits,
    _Budget,
    _GuardedEnvironment,
    _LimitExceeded,
    _plain,
    _Rejected,
    _size,
    _template_line,
)

FALLBACK_TEMPLATE_NAME = "ChatML"
#: The one key of a text-generation-webui instruction template file.
TEMPLATE_KEY = "instruction_template"
#: Real templates are a few KB (the longest tool-calling ones about 20 KB).
MAX_SOURCE_CHARS = 200_000


class ChatTemplate:
    """A chat template compiled once; :meth:`render` is safe to call from many threads."""

    def __init__(self, name: str, source: str, template: jinja2.Template, limits: RenderLimits) -> None:
        self.name = name
        self.source = source
        self.limits = limits
        self._template = template

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name!r})"

    @classmethod
    def compile(cls, source: str, name: str, *, limits: RenderLimits = RenderLimits()) -> ChatTemplate:
        """Compile ``source`` or raise :class:`TemplateError` naming ``name`` and the line."""
        if not isinstance(source, str) or not source.strip():
            raise TemplateError(f"Chat template {name!r} is empty.")
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(f"Chat template {name!r} is longer than {MAX_SOURCE_CHARS:,} characters.")
        try:
            template = _GuardedEnvironment().from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"Chat template {name!r} has a syntax error on line {exc.lineno}: {exc.message}"
            ) from exc
        except RecursionError as exc:
            raise TemplateError(f"Chat template {name!r} is nested too deeply to compile.") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"Chat template {name!r} cannot be compiled: {exc}") from exc
        return cls(name, source, template, limits)

    @functools.cached_property
    def stop_strings(self) -> list[str]:
        """The markers that end the assistant's turn and start the user's, as stop strings.

        A model that was not trained on this template (a base model, or a template picked by
        hand) writes them as plain text - ``<|im_end|>``, ``<|im_start|>user`` - and goes on
        inventing the user's side. They are read off the template itself: what it puts between
        an assistant message and the next user message.
        """
        return _turn_markers(self)

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        bos_token: str = "",
        eos_token: str = "",
        **extra: Any,
    ) -> str:
        """The prompt text for ``messages`` (dicts with ``role`` and ``content``)."""
        data = {
            "messages": _plain(messages),
            "add_generation_prompt": add_generation_prompt,
            "bos_token": bos_token,
            "eos_token": eos_token,
            **{k: _plain(v) for k, v in extra.items()},
        }
        budget = _Budget(self.limits, _size(data, sys.maxsize))
        token = _BUDGET.set(budget)
        pieces: list[str] = []
        total = 0
        stream: Generator[str, None, None] = self._template.generate(data)  # type: ignore[assignment]
        try:
            for piece in stream:
                total += len(piece)
                if total > budget.max_output:
                    raise _LimitExceeded(f"its output is longer than {budget.max_output:,} characters")
                pieces.append(piece)
        except _Rejected as exc:
            raise ConversationRejectedError(
                f"The chat template {self.name!r} rejected this conversation: {exc.message}"
            ) from exc
        except SecurityError as exc:
            raise UnsafeTemplateError(
                f"Chat template {self.name!r} is an unsafe template and was stopped: {exc}."
            ) from exc
        except RecursionError as exc:
            raise UnsafeTemplateError(
                f"Chat template {self.name!r} is an unsafe template and was stopped: it recurses too deeply."
            ) from exc
        except MemoryError as exc:
            raise UnsafeTemplateError(
                f"Chat template {self.name!r} is an unsafe template and was stopped: it needs too much memory."
            ) from exc
        except Exception as exc:  # any error of the template's own code: converted, not swallowed
            line = _template_line(exc)
            where = f" on line {line}" if line else ""
            detail = str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
            raise TemplateError(f"Chat template {self.name!r} failed{where}: {detail}") from exc
        finally:
            stream.close()
            _BUDGET.reset(token)
        return "".join(pieces)


# -- instruction templates and the choice of template ----------------------------------------------


class InstructionTemplateStore(YamlFolder):
    """The ``instruction-templates`` folder: ``NAME.yaml`` files holding one key,
    ``instruction_template``, the Jinja text (text-generation-webui's format)."""

    what = "instruction template name"

    def missing(self, name: str) -> SettingsError:
        return SettingsError(
            f"There is no instruction template called {name!r} (no {self.path(name).name} in {self.folder})."
        )

    def load(self, name: str) -> ChatTemplate:
        source = self.read(name).get(TEMPLATE_KEY)
        if not isinstance(source, str) or not source.strip():
            raise SettingsError(
                f"{self.path(name).name} has no {TEMPLATE_KEY!r} key holding the Jinja template "
                "text. Templates in text-generation-webui's older format (user/bot/turn_template) "
                "are not supported."
            )
        return ChatTemplate.compile(source, name)


#: Conversations a model's own template must render before we trust it with a chat.
_PROBES: tuple[list[dict[str, str]], ...] = (
    [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "How are you?"},
    ],
    [{"role": "user", "content": "Hello"}],
)


_REPLY, _NEXT = "QQREPLYQQ", "QQNEXTQQ"
#: A marker worth stopping on by itself: a tag such as <|im_end|>, <end_of_turn>, [/INST] or </s>.
_TAG = re.compile(r"<\|[^|\s]+\|>|<[^<>\s]+>|\[/?[A-Z_]+\]")


def _turn_markers(template: ChatTemplate) -> list[str]:
    """Stop strings for the end of an assistant turn (see ``ChatTemplate.stop_strings``)."""
    conversation = [
        {"role": "user", "content": "QQFIRSTQQ"},
        {"role": "assistant", "content": _REPLY},
        {"role": "user", "content": _NEXT},
    ]
    try:
        text = template.render(conversation, add_generation_prompt=False)
    except TemplateError:
        return []
    start, end = text.find(_REPLY), text.find(_NEXT)
    if start < 0 or end < start:
        return []
    between = text[start + len(_REPLY) : end].strip()
    if not between:
        return []
    # Each tag alone too: a model may stop at the end-of-turn tag, or skip it and open the next turn.
    return [between, *(tag for tag in dict.fromkeys(_TAG.findall(between)) if tag != between)]


#: Instruction template to fall back on for a model without a chat template, by the family its
#: metadata names (GGUF ``general.architecture``/``general.basename``, transformers ``model_type``).
FAMILY_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("gemma", "Gemma"),
    ("llama-3", "Llama-3"),
    ("llama3", "Llama-3"),
    ("mistral", "Mistral"),
    ("mixtral", "Mistral"),
    ("qwen", "ChatML"),
    ("smollm", "ChatML"),
    ("vicuna", "Vicuna"),
    ("alpaca", "Alpaca"),
)


def family_template(metadata: dict[str, Any]) -> str | None:
    """The instruction template of the model family ``metadata`` names, if we know it."""
    names = " ".join(
        str(metadata.get(key) or "")
        for key in ("general.basename", "general.name", "general.architecture", "model_type")
    ).lower()
    for needle, template in FAMILY_TEMPLATES:
        if needle in names:
            return template
    return None


def _check_renders(template: ChatTemplate) -> None:
    """Raise :class:`TemplateError` unless ``template`` renders the probe conversations.

    A template may reject one of them on purpose (``raise_exception``, e.g. no
    system role), but not all of them, and it may never fail or be unsafe.
    """
    rejections: list[ConversationRejectedError] = []
    for probe in _PROBES:
        try:
            template.render(probe)
        except ConversationRejectedError as exc:
            rejections.append(exc)
    if len(rejections) == len(_PROBES):
        raise rejections[-1]


@functools.lru_cache(maxsize=16)
def _model_template(source: str) -> tuple[ChatTemplate | None, TemplateError | None]:
    """A model's template compiled and test-rendered once per source (every chat turn and API call asks)."""
    try:
        template = ChatTemplate.compile(source, "model")
        _check_renders(template)
    except TemplateError as exc:
        return None, exc
    return template, None


def choose_template(
    model_template: str | None,
    override: str | None,
    store: InstructionTemplateStore,
    metadata: dict[str, Any] | None = None,
) -> tuple[ChatTemplate, str]:
    """The template to use for a model, and a one-line note for the UI saying which and why.

    A model without a chat template is a base model: it was not trained to chat. It gets its
    family's instruction template when ``metadata`` names a family we know, else ChatML, and
    the note says so (the Chat and Model tabs show it).
    """
    if override:
        return store.load(override), Keyed(
            f"Using instruction template {override} (override).", "template.note_override", name=override
        )
    if not model_template or not model_template.strip():
        family = family_template(metadata or {})
        name = family if family and family in store.names() else FALLBACK_TEMPLATE_NAME
        if (metadata or {}).get("remote.api"):
            # a server's model: the server did not tell its template, which says nothing of the model
            return (
                store.load(name),
                Keyed(
                    f"The server does not tell its model's chat template (llama.cpp's server and this app do, at "
                    f"/props): using instruction template {name}. If the replies look wrong, pick the model's "
                    "template here.",
                    "template.note_remote",
                    name=name,
                ),
            )
        return (
            store.load(name),
            Keyed(
                f"Base model: not trained to chat - use the Notebook or pick a template. "
                f"Using instruction template {name}.",
                "template.note_base",
                name=name,
            ),
        )
    template, exc = _model_template(model_template)
    if exc is not None:
        kind = "unsafe" if isinstance(exc, UnsafeTemplateError) else "unusable"
        return (
            store.load(FALLBACK_TEMPLATE_NAME),
            Keyed(
                f"The model's chat template is {kind} ({exc.message}); "
                f"using instruction template {FALLBACK_TEMPLATE_NAME} instead.",
                f"template.note_{kind}",
                details=exc.message,
                name=FALLBACK_TEMPLATE_NAME,
            ),
        )
    assert template is not None
    return template, Keyed("Using the model's own chat template.", "template.note_own")
