"""The transformers loader's sampler views follow transformers' own chain, on the real SmolLM2 checkpoint.

transformers' ``generate`` applies its warpers in its own order (``GenerationMixin._get_logits_processor``):
the repetition penalty and the suppressed tokens, then temperature -> top_k -> top_p -> min_p -> typical_p.
Its temperature comes *before* top_p and min_p, unlike llama.cpp's. The test records the raw logits of
each forward pass of a real generation, runs them through the very processors ``generate`` builds for
the same settings, and holds each token's "after" view to the distribution the token was drawn from.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from webui.loaders.base import StreamExtras
from webui.loaders.transformers import TransformersBackend, _view_params
from webui.params import SamplingParams
from webui.sampling.chain import sample_view

pytestmark = pytest.mark.integration

#: A raw text that goes on for a while (a chat answer may end after a few tokens).
STORY = "Once upon a time, in a small village by the sea, there lived"
#: More candidates than top_k keeps (40 by default), so "after" holds the whole pool.
N_VIEWS = 50


class _Rows:
    """Forward hook: the last position's raw logits of every forward pass."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def __call__(self, module: Any, args: Any, output: Any) -> None:
        self.rows.append(output.logits[0, -1].detach().float().cpu().clone())


def _transformers_processors(hf: TransformersBackend, params: SamplingParams, prompt_len: int) -> Any:
    """The logits processors ``generate`` builds for ``params`` (as the loader passes them), in its order."""
    from transformers import GenerationConfig

    kwargs = hf._generate_kwargs(params, params.max_tokens)
    config = GenerationConfig(**kwargs)
    return hf._model._get_logits_processor(generation_config=config, input_ids_seq_length=prompt_len)


@pytest.mark.parametrize(
    ("settings", "seed"),
    [
        ({"temperature": 0.7, "top_p": 0.9, "min_p": 0.05}, 3),  # the defaults
        ({"temperature": 1.5, "top_p": 0.5}, 8),
    ],
)
def test_after_is_the_distribution_transformers_draws_from(hf: TransformersBackend, settings: dict, seed: int):
    import torch

    params = SamplingParams(seed=seed, max_tokens=32, **settings)
    prompt_ids = hf.tokenize(STORY)
    hook = _Rows()
    handle = hf._model.register_forward_hook(hook)
    try:
        chunks = list(hf.stream(STORY, params, threading.Event(), StreamExtras(sampler_views=N_VIEWS)))
    finally:
        handle.remove()
    views = [v for c in chunks for v in c.views or ()]
    assert len(views) == sum(c.n_tokens for c in chunks) >= 8
    # One forward pass per generated token (an end-of-sequence token too), after any prefill pass.
    n_generated = len(views) + (1 if chunks[-1].finish_reason == "stop" else 0)
    rows = hook.rows[-n_generated:][: len(views)]

    processors = _transformers_processors(hf, params, len(prompt_ids))
    names = [type(p).__name__ for p in processors]
    # the chain the test holds the views to: temperature first, then the truncations
    assert names.index("TemperatureLogitsWarper") < names.index("TopPLogitsWarper")
    ids = list(prompt_ids)
    steps_where_order_matters = 0
    for row, v in zip(rows, views, strict=True):
        view = v.view
        assert view is not None
        with torch.inference_mode():
            scores = processors(torch.tensor([ids]), row.clone().unsqueeze(0))[0]
        expected = torch.softmax(scores, dim=-1).numpy().astype(np.float64)
        kept = np.flatnonzero(expected > 0)
        after = {c.id: c.prob for c in view.after}
        # the whole pool is shown, with transformers' probabilities
        assert view.pool == kept.size, (v.token, view.pool, kept.size)
        assert set(after) == set(kept.tolist()), v.token
        for token, prob in after.items():
            assert prob == pytest.approx(expected[token], abs=1e-4), (v.token, token)
        # the drawn token is one the view keeps
        assert after.get(v.id, 0.0) > 0.0, v.token
        assert all(c.removed_by is None for c in view.before if c.id == v.id)
        # the view's "removed" marks agree with transformers: a removed candidate has no chance there
        assert all(expected[c.id] == 0.0 for c in view.before if c.removed_by is not None)
        assert all(expected[c.id] > 0.0 for c in view.before if c.removed_by is None)
        # llama.cpp's order (cut at temperature 1, then scale) gives other numbers on these settings
        llama_order = sample_view(row.numpy(), _view_params(params), ids, n_top=N_VIEWS)
        if {c.id: round(c.prob, 4) for c in llama_order.after} != {t: round(p, 4) for t, p in after.items()}:
            steps_where_order_matters += 1
        ids.append(v.id)
    assert steps_where_order_matters  # the settings tell the two orders apart
