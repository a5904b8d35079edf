"""The default sampling values keep the starter model from looping (issue 16, item 6).

With the old defaults (no repetition penalty, no DRY, 512 tokens) SmolLM2-135M ran a few-shot
prompt to the token limit, writing the same lines over and over. With the defaults in
webui/params.py it ends by itself or at least does not repeat itself (tests/loopcheck.py defines
the measure; bench/defaults.py prints the full table for the README).
"""

from __future__ import annotations

import pytest

from harness import smollm_generator
from loopcheck import FEW_SHOT, OLD_DEFAULTS, repetition
from webui.params import SamplingParams

pytestmark = pytest.mark.integration

SEEDS = (1, 2, 3)
#: A text whose word 4-grams are more than this share repeats is going round in circles.
REPETITIVE = 0.3


@pytest.fixture(scope="module")
def generator(smollm_path, tmp_path_factory):
    yield from smollm_generator(smollm_path, tmp_path_factory, n_ctx=2048)


def looping(generator, params: SamplingParams) -> list[tuple[str, float, int]]:
    """The few-shot prompt once per seed: (finish reason, repetition, tokens) of the runs that loop."""
    runs = []
    for seed in SEEDS:
        text, stats = generator.generate(FEW_SHOT, params.model_copy(update={"seed": seed}))
        runs.append((stats.finish_reason, repetition(text), stats.completion_tokens))
    return [r for r in runs if r[0] != "stop" and r[1] > REPETITIVE]


def test_the_few_shot_prompt_does_not_loop_with_the_defaults(generator):
    assert looping(generator, SamplingParams()) == []


def test_the_same_prompt_looped_with_the_old_defaults(generator):
    """The check above would catch the old behaviour (so it tests something)."""
    old = SamplingParams.model_validate(OLD_DEFAULTS)
    assert len(looping(generator, old)) >= 2
