"""Reasoning models: their thinking split from the answer, by model family.

A reasoning model writes its thinking between two markers before the answer: ``<think>`` ...
``</think>`` for most (DeepSeek-R1 and its distills, Qwen3, QwQ, SmolLM3, GLM), ``[THINK]`` for
Magistral, ``◁think▷`` for Kimi, ``<|START_THINKING|>`` for Command R7B, an ``analysis`` channel
for gpt-oss (harmony). The chat template tells which (:func:`reasoning_style`); a template may open
the block itself at the end of the prompt (Qwen3, DeepSeek-R1 and QwQ put ``<think>\\n`` after the
generation prompt: :func:`opens_in_prompt`), so the output starts as thinking without a marker; or
close an empty one when thinking is switched off (:func:`closes_in_prompt`): the output is all answer.

:class:`ReasoningSplitter` splits a stream: markers never reach either side, also when one arrives
in pieces (a piece that may be the start of a marker is held back until the next text says); a
block that never closes (the reply was cut, or stopped) is all thinking. Thinking counts only at
the start of the output: once the answer has begun, a marker in it is the answer's own text.

Templates that can switch thinking off read ``enable_thinking`` (Qwen3, SmolLM3, GLM) or
``reasoning_effort`` (gpt-oss): :func:`template_has_thinking_switch`, :func:`thinking_kwargs`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from webui.errors import UnsupportedFeatureError


@dataclass(frozen=True)
class ReasoningStyle:
    """How one family marks its thinking."""

    name: str
    start: str
    end: str
    #: Markers that may open the answer, after the thinking or without it (gpt-oss: its final channel;
    #: Command R7B: its response tag); dropped.
    content_openers: tuple[str, ...] = ()


THINK = ReasoningStyle("think", "<think>", "</think>")
MAGISTRAL = ReasoningStyle("magistral", "[THINK]", "[/THINK]")
KIMI = ReasoningStyle("kimi", "◁think▷", "◁/think▷")
COMMAND_R7B = ReasoningStyle(
    "command-r7b", "<|START_THINKING|>", "<|END_THINKING|>", content_openers=("<|START_RESPONSE|>",)
)
HARMONY = ReasoningStyle(
    "harmony",
    "<|channel|>analysis<|message|>",
    "<|end|>",
    content_openers=("<|start|>assistant", "<|channel|>final<|message|>"),
)
STYLES: tuple[ReasoningStyle, ...] = (THINK, MAGISTRAL, KIMI, COMMAND_R7B, HARMONY)

# Checked in this order: a harmony template also mentions other tags in its tool text; ``<think>``
# last because it is the fallback anyway.
_DETECT: tuple[tuple[re.Pattern[str], ReasoningStyle], ...] = (
    (re.compile(r"<\|channel\|>"), HARMONY),
    (re.compile(r"<\|START_THINKING\|>|<\|END_THINKING\|>"), COMMAND_R7B),
    (re.compile(r"◁/?think▷"), KIMI),
    (re.compile(r"\[/?THINK\]"), MAGISTRAL),
    (re.compile(r"</?think>"), THINK),
)
_SWITCHES = ("enable_thinking", "reasoning_effort")


def reasoning_style(template_source: str | None, *, fallback: bool = True) -> ReasoningStyle | None:
    """The reasoning markers of the family whose chat template this is.

    A template that shows none gets the ``<think>`` style (``fallback``; splitting ``<think>`` is
    harmless when it never appears, and many GGUFs carry a generic template), or None when
    ``fallback`` is False.
    """
    for pattern, style in _DETECT:
        if template_source and pattern.search(template_source):
            return style
    return THINK if fallback else None


def opens_in_prompt(style: ReasoningStyle, prompt: str) -> bool:
    """The prompt already ends inside a thinking block: the output starts as thinking."""
    return prompt.rstrip().endswith(style.start)


def closes_in_prompt(style: ReasoningStyle, prompt: str) -> bool:
    """The prompt ends with a closed thinking block (Qwen3 with thinking switched off writes an empty
    one): the output is all answer, even if the model writes a start marker."""
    return prompt.rstrip().endswith(style.end)


def template_has_thinking_switch(template_source: str | None) -> bool:
    """The template reads ``enable_thinking`` or ``reasoning_effort`` (thinking can be switched or tuned)."""
    return bool(template_source) and any(re.search(rf"\b{name}\b", template_source or "") for name in _SWITCHES)


def template_reads(template_source: str | None, name: str) -> bool:
    return bool(template_source) and re.search(rf"\b{re.escape(name)}\b", template_source or "") is not None


def thinking_kwargs(
    template_source: str | None, *, enable_thinking: bool | None = None, reasoning_effort: str | None = None
) -> dict[str, Any]:
    """The extra template variables for a request's thinking choice (None: the template's default).

    A choice the template does not read would be silently ignored: :class:`UnsupportedFeatureError`.
    """
    kwargs: dict[str, Any] = {}
    if enable_thinking is not None:
        if template_reads(template_source, "enable_thinking"):
            kwargs["enable_thinking"] = enable_thinking
        elif template_reads(template_source, "reasoning_effort"):
            if not enable_thinking:
                kwargs["reasoning_effort"] = "low"  # gpt-oss cannot skip its analysis: the least of it
        else:
            raise UnsupportedFeatureError("This model's chat template has no switch for thinking (enable_thinking).")
    if reasoning_effort is not None:
        if not template_reads(template_source, "reasoning_effort"):
            raise UnsupportedFeatureError("This model's chat template does not read reasoning_effort.")
        kwargs["reasoning_effort"] = reasoning_effort
    return kwargs


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that is the beginning of ``marker`` (but not all of it)."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


class ReasoningSplitter:
    """Splits a stream of output text into thinking and answer.

    ``started``: the prompt opened the thinking block (:func:`opens_in_prompt`). ``answered``: the
    output so far was answer (a Continue of a reply whose thinking is done): nothing is split.
    """

    def __init__(self, style: ReasoningStyle, started: bool = False, *, answered: bool = False) -> None:
        self.style = style
        # before: nothing but whitespace yet; opening: just inside the block (leading space, a repeated
        # start marker dropped); reasoning; closing: after the end marker (space, openers dropped); content.
        self._state = "content" if answered else "opening" if started else "before"
        self._pending = ""
        #: Whether a thinking block was seen (opened by the prompt or the output).
        self.had_reasoning = started and not answered
        #: Whether it was closed (the answer may follow).
        self.closed = False

    def feed(self, text: str) -> tuple[str, str]:
        """Take the next piece of output; return what it adds to the (thinking, answer)."""
        self._pending += text
        reasoning: list[str] = []
        content: list[str] = []
        style = self.style
        while self._pending:
            state, pending = self._state, self._pending
            if state == "content":
                content.append(pending)
                self._pending = ""
            elif state in ("before", "opening"):
                rest = pending.lstrip()
                if not rest or (style.start.startswith(rest) and rest != style.start):
                    break  # only space, or maybe the start of a marker: wait
                if rest.startswith(style.start):
                    self._pending, self._state, self.had_reasoning = rest[len(style.start) :], "opening", True
                elif state == "opening":
                    self._pending, self._state = rest, "reasoning"
                elif self._opens_answer(rest):
                    self._state = "closing"  # gpt-oss going straight to its final channel
                else:
                    self._state = "content"  # no thinking: the text as it came
            elif state == "reasoning":
                at = pending.find(style.end)
                if at >= 0:
                    reasoning.append(pending[:at].rstrip())
                    self._pending, self._state, self.closed = pending[at + len(style.end) :], "closing", True
                    continue
                # Hold back what may be the start of the end marker, and the space before it (trimmed
                # if the block ends there).
                cut = len(pending) - _partial_suffix(pending, style.end)
                safe = pending[:cut].rstrip()
                reasoning.append(safe)
                self._pending = pending[len(safe) :]
                break
            else:  # closing
                rest = pending.lstrip()
                if not rest:
                    self._pending = ""
                    break
                opener = next((o for o in style.content_openers if rest.startswith(o)), None)
                if opener is not None:
                    self._pending = rest[len(opener) :]
                elif any(o.startswith(rest) for o in style.content_openers):
                    self._pending = rest
                    break
                else:
                    self._pending, self._state = rest, "content"
        return "".join(reasoning), "".join(content)

    def _opens_answer(self, text: str) -> bool:
        return any(text.startswith(o) or o.startswith(text) for o in self.style.content_openers)

    def finish(self) -> tuple[str, str]:
        """The end of the output: what was held back."""
        pending, state = self._pending, self._state
        self._pending = ""
        if state == "before":
            return "", pending  # a lone partial marker is text
        if state in ("opening", "reasoning"):
            return pending.strip(), ""  # never closed: all thinking
        if state == "closing":
            rest = pending.lstrip()
            return "", "" if any(o.startswith(rest) for o in self.style.content_openers) else rest
        return "", pending


def split(text: str, style: ReasoningStyle, started: bool = False) -> tuple[str, str]:
    """A whole output as (thinking, answer)."""
    splitter = ReasoningSplitter(style, started)
    r1, c1 = splitter.feed(text)
    r2, c2 = splitter.finish()
    return r1 + r2, c1 + c2
