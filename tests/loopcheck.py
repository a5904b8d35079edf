"""Do the default sampling values keep a small model from looping? Prompts and measures.

Shared by ``tests/integration/test_defaults.py`` (a check on SmolLM2) and ``bench/defaults.py``
(the table in the README and docs/first-steps.md, old defaults against new ones).

A run *loops* when it reaches the token limit without ending by itself; how repetitive its text
is, is measured by :func:`repetition`: the share of its word 4-grams that already appeared earlier
in the same text (0 = every 4-gram is new; a text that repeats one line over and over tends to 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from webui.params import SamplingParams

#: The values before issue 16: no repetition penalty, no DRY, 512 tokens per reply.
OLD_DEFAULTS = {"repeat_penalty": 1.0, "dry_multiplier": 0.0, "max_tokens": 512}

#: A few-shot prompt as a student writes it in the Notebook (raw text, no chat template).
FEW_SHOT = (
    "Translate English to French.\n\n"
    "English: Good morning.\nFrench: Bonjour.\n\n"
    "English: Thank you very much.\nFrench: Merci beaucoup.\n\n"
    "English: Where is the station?\nFrench: Où est la gare ?\n\n"
    "English: I like apples.\nFrench:"
)

#: Chat messages (the model's own chat template), one reply each.
CHAT_PROMPTS = (
    "Write a short poem about the sea.",
    "Give me three tips for learning to program.",
    "What is a language model? Explain it to a child.",
)

#: A system prompt with few-shot examples, then a question in the same pattern (the Chat tab).
FEW_SHOT_SYSTEM = (
    "You answer with the capital city only.\nExamples:\nQ: Germany\nA: Berlin\nQ: Italy\nA: Rome\nQ: Spain\nA: Madrid"
)
FEW_SHOT_QUESTION = "Q: France"


def repetition(text: str, n: int = 4) -> float:
    """Share of the text's word n-grams that are repeats of an earlier one (0..1)."""
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


@dataclass
class Run:
    case: str
    seed: int
    text: str
    finish_reason: str
    tokens: int

    @property
    def ended(self) -> bool:
        """The model ended the reply itself (not the token limit)."""
        return self.finish_reason == "stop"

    @property
    def repetition(self) -> float:
        return repetition(self.text)


def cases() -> list[tuple[str, str | None, str]]:
    """(name, system prompt or None for a raw Notebook prompt, text)."""
    return [
        ("notebook few-shot", None, FEW_SHOT),
        ("chat few-shot", FEW_SHOT_SYSTEM, FEW_SHOT_QUESTION),
        *((f"chat {i + 1}", "", p) for i, p in enumerate(CHAT_PROMPTS)),
    ]


def chat_prompt(chat_template: str, system: str, text: str) -> tuple[str, list[str]]:
    """The prompt for one user message in the model's own chat template, and its end-of-turn stops."""
    from webui.templates.chat_template import ChatTemplate

    template = ChatTemplate.compile(chat_template, "model")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return template.render(messages, add_generation_prompt=True), template.stop_strings


def run_cases(generator: object, params: SamplingParams, seeds: list[int]) -> Iterator[Run]:
    """Every case once per seed on the loaded model, with ``params``."""
    from webui.generation.scheduler import Generator

    assert isinstance(generator, Generator)
    current = generator.models.current
    assert current is not None
    for name, system, text in cases():
        prompt, stop = (text, []) if system is None else chat_prompt(current.backend.chat_template or "", system, text)
        for seed in seeds:
            out, stats = generator.generate(prompt, params.model_copy(update={"seed": seed, "stop": stop}))
            yield Run(name, seed, out, stats.finish_reason, stats.completion_tokens)
