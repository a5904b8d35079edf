"""Lazy grammars: the grammar applies only from the first match of a trigger regex on.

The model writes freely until it starts, say, a tool call (``<tool_call>``); from the match on,
the text must follow the grammar. Shared by the llama.cpp and transformers loaders.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from webui.errors import GrammarError


class LazyTrigger:
    """Watches the generated tokens for the first match of a trigger (a lazy grammar).

    The loader feeds it each generated token; at the first match it returns the tokens the
    grammar must accept before it starts constraining. (llama.cpp has lazy grammar samplers of
    its own, but when the text from the trigger on does not fit the grammar they throw a C++
    exception out of ``llama_sampler_sample``, which aborts the whole process; so both local
    loaders watch triggers here and check the replayed tokens against the grammar first.)
    """

    def __init__(
        self, triggers: tuple[str, ...], piece: Callable[[int], bytes], tokenize: Callable[[bytes], list[int]]
    ) -> None:
        self._regexes = compile_triggers(triggers)
        self._piece = piece
        self._tokenize = tokenize
        self._buffer = b""
        self._spans: list[tuple[int, int, int]] = []  # (token, start, end) in _buffer

    def feed(self, token: int) -> list[int] | None:
        """Add a generated token. At the first match: the tokens the grammar must accept first.

        Those are the tokens from the match on; a token that begins before the match is
        re-tokenized from the match on (the grammar sees text, not how it was split).
        """
        start = len(self._buffer)
        self._buffer += self._piece(token)
        self._spans.append((token, start, len(self._buffer)))
        # surrogateescape keeps one character per stray byte, so offsets map back to bytes
        text = self._buffer.decode("utf-8", errors="surrogateescape")
        hits = [m.start() for regex in self._regexes if (m := regex.search(text)) is not None]
        if not hits:
            return None
        at = len(text[: min(hits)].encode("utf-8", errors="surrogateescape"))
        replay: list[int] = []
        for tok, begin, end in self._spans:
            if end <= at:
                continue
            replay += self._tokenize(self._buffer[at:end]) if begin < at else [tok]
        return replay


def compile_triggers(triggers: tuple[str, ...]) -> list[re.Pattern[str]]:
    """The trigger regexes compiled, or ``GrammarError`` naming the bad one."""
    regexes = []
    for trigger in triggers:
        try:
            regex = re.compile(trigger)
        except re.error as exc:
            raise GrammarError(f"The grammar trigger {trigger!r} is not a valid regular expression: {exc}") from exc
        if regex.fullmatch(""):
            raise GrammarError(f"The grammar trigger {trigger!r} matches empty text, so it would fire at once.")
        regexes.append(regex)
    return regexes
