"""GBNF grammars (and JSON schemas) for the transformers loader, with llguidance.

The grammar is a logits processor: before each token it asks an ``llguidance.LLMatcher``
which tokens may come next and sets the others to -inf; then it feeds the matcher the token
that was drawn.

Why llguidance (``llguidance==1.9.1``): it reads llama.cpp's GBNF (converted to its Lark
dialect by its own ``gbnf_to_lark``), so the same ``grammar_string`` drives both local
loaders, and it compiles JSON schemas itself. It is one ~3 MB wheel with no dependencies
(a Rust core), and llama.cpp (``LLAMA_LLGUIDANCE``) and vLLM use it. The alternatives on this
CPU-only install: xgrammar 0.2.8 also reads GBNF but pulls ``triton`` (a GPU compiler,
hundreds of MB) and ``apache-tvm-ffi``; lm-format-enforcer has JSON schema and regex but
no GBNF.
"""

from __future__ import annotations

import json
from typing import Any

from webui.errors import GrammarError
from webui.loaders.lazy import LazyTrigger


def llg_tokenizer(tokenizer: Any, eos_ids: frozenset[int]) -> Any:
    """llguidance's view of a Hugging Face tokenizer (about a second: keep it per model)."""
    try:
        import llguidance.hf
    except ImportError as exc:  # pragma: no cover - set-up installs it
        raise GrammarError("Grammars on transformers need llguidance: run ./start.sh to set up.") from exc
    try:
        return llguidance.hf.from_tokenizer(tokenizer, eos_token=sorted(eos_ids) or None)
    except ValueError as exc:
        raise GrammarError(f"Grammars need a fast tokenizer, which this model does not have: {exc}") from exc


#: JSON on one line, as llama.cpp's schema grammars keep it: with free whitespace small models
#: tend to write newlines until the token limit.
_COMPACT_JSON: Any = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def new_matcher(llg_tok: Any, grammar: str, json_schema: Any = None) -> Any:
    """A matcher for a JSON schema (``SamplingParams.json_schema``: used instead of the grammar
    when set) or else a GBNF ``grammar``; ``GrammarError`` when it cannot be built."""
    import llguidance

    if json_schema:
        schema = json_schema if isinstance(json_schema, str) else json.dumps(json_schema)
        try:
            spec = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=_COMPACT_JSON)
        except ValueError as exc:
            raise GrammarError(f"The JSON schema cannot be used as a grammar: {exc}") from exc
    else:
        try:
            spec = llguidance.grammar_from("gbnf", grammar)
        except ValueError as exc:
            raise GrammarError(f"The grammar is not valid GBNF: {exc}") from exc
    matcher = llguidance.LLMatcher(llg_tok, spec, log_level=0)
    if matcher.is_error():
        raise GrammarError(f"The grammar cannot be used: {matcher.get_error()}")
    return matcher


class GrammarProcessor:
    """Logits processor for ``generate`` (batch of one): only tokens the grammar allows.

    Duck-typed like ``_Cancel`` (``LogitsProcessorList`` only needs a callable). With ``lazy``
    the grammar starts at the first trigger match; until then the text is free.
    """

    def __init__(self, matcher: Any, prompt_len: int, lazy: LazyTrigger | None = None) -> None:
        self._matcher = matcher
        self._next = prompt_len  # position in input_ids of the first token not yet fed
        self._lazy = lazy

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        for token in input_ids[0, self._next :].tolist():
            self._accept(int(token))
        self._next = int(input_ids.shape[-1])
        if self._lazy is not None:
            return scores
        allowed = torch.frombuffer(bytearray(self._matcher.compute_logit_bias()), dtype=torch.uint8)
        n = min(int(allowed.shape[0]), int(scores.shape[-1]))
        scores[:, :n] = scores[:, :n].masked_fill(allowed[:n] == 0, float("-inf"))
        scores[:, n:] = float("-inf")
        return scores

    def _accept(self, token: int) -> None:
        if self._lazy is not None:
            replay = self._lazy.feed(token)
            if replay is None:
                return
            self._lazy = None
            if not self._matcher.consume_tokens(replay):
                raise GrammarError(
                    f"The text from the grammar trigger on does not fit the grammar: {self._matcher.get_error()}"
                )
            return
        if not self._matcher.consume_token(token):
            raise GrammarError(f"The grammar rejected a generated token: {self._matcher.get_error()}")
