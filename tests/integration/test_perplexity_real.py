"""Perplexity of a text on SmolLM2 through the app's path, checked against the model's own logits.

The app gets a text's token logprobs from the prompt-logprobs (``echo``) path the API uses:
``StreamExtras(echo_logprobs=True, top_logprobs=0)`` with one generated token. The tests then
compute ``exp(mean NLL)`` independently: llama.cpp's ``Llama`` with ``logits_all`` evaluating
the tokens (its score rows), and the transformers model's ``logits`` from one forward pass,
each put through a float64 log-softmax here.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from webui.loaders.base import Backend, StreamExtras
from webui.params import SamplingParams
from webui.sampling.perplexity import perplexity, surprise_bits

pytestmark = pytest.mark.integration

TEXT = (
    "The water cycle describes how water moves between the oceans, the air and the land. The sun heats "
    "the surface of the sea, and water evaporates into the atmosphere. As the warm, moist air rises, it "
    "cools and the vapour condenses into clouds. When the droplets grow heavy enough, they fall as rain "
    "or snow, and rivers carry the water back to the sea."
)
#: The same words in a scrambled order: a model should find it much more surprising.
SCRAMBLED = " ".join(sorted(TEXT.split(), key=lambda w: (len(w) * 7919) % 13))


def app_logprobs(backend: Backend, text: str) -> list[float]:
    """The text's token logprobs as the app gets them (the first token has none)."""
    params = SamplingParams(do_sample=False, max_tokens=1)
    chunks = list(backend.stream(text, params, threading.Event(), StreamExtras(echo_logprobs=True, top_logprobs=0)))
    echo = chunks[0].prompt_logprobs
    assert echo is not None and len(echo) == len(backend.tokenize(text))
    assert echo[0].logprob is None and all(e.top == () for e in echo)
    return [float(e.logprob) for e in echo[1:] if e.logprob is not None]


def nll_from_logits(rows: np.ndarray, tokens: list[int]) -> np.ndarray:
    """Negative log-likelihood of ``tokens[1:]``, row ``i`` predicting token ``i + 1`` (float64 log-softmax)."""
    rows = np.asarray(rows, dtype=np.float64)[: len(tokens) - 1]
    peak = rows.max(axis=1, keepdims=True)
    log_z = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
    picked = rows[np.arange(len(tokens) - 1), np.asarray(tokens[1:])]
    return log_z - picked


@pytest.fixture(scope="module")
def llama_reference(smollm_path, llama) -> dict[str, np.ndarray]:
    """Per-token NLL from a separate ``Llama`` with logits for every position."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(smollm_path), n_ctx=1024, logits_all=True, flash_attn=True, verbose=False
    )  # as our loader
    try:
        out = {}
        for text in (TEXT, SCRAMBLED):
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            assert tokens == llama.tokenize(text)
            llm.reset()
            llm.eval(tokens)
            out[text] = nll_from_logits(np.array(llm.scores[: len(tokens)]), tokens)
        return out
    finally:
        llm.close()


def test_llama_perplexity_is_exp_of_the_mean_nll(llama, llama_reference):
    for text in (TEXT, SCRAMBLED):
        logprobs = app_logprobs(llama, text)
        nll = llama_reference[text]
        assert len(logprobs) == len(nll) > 50
        assert perplexity(logprobs) == pytest.approx(math.exp(nll.mean()), rel=1e-3)
        # token by token too, and the surprise in bits is the NLL in base 2
        assert [-x for x in logprobs] == pytest.approx(nll.tolist(), abs=2e-3)
        assert surprise_bits(logprobs[0]) == pytest.approx(nll[0] / math.log(2), abs=3e-3)


def test_transformers_perplexity_is_exp_of_the_mean_nll(hf):
    import torch

    for text in (TEXT, SCRAMBLED):
        logprobs = app_logprobs(hf, text)
        tokens = hf.tokenize(text)
        with torch.inference_mode():
            logits = hf._model(input_ids=torch.tensor([tokens])).logits[0].double().numpy()
        nll = nll_from_logits(logits, tokens)
        assert len(logprobs) == len(nll) > 50
        assert perplexity(logprobs) == pytest.approx(math.exp(nll.mean()), rel=1e-3)


def test_perplexity_ranks_texts_and_loaders_agree(llama, hf):
    """Natural text is far less surprising than the same words scrambled, on both loaders; the
    checkpoint is the GGUF's weights, so the two loaders give about the same number."""
    ppl = {
        (name, t): perplexity(app_logprobs(b, t))
        for name, b in (("llama", llama), ("hf", hf))
        for t in (TEXT, SCRAMBLED)
    }
    for name in ("llama", "hf"):
        assert 1 < ppl[name, TEXT] < 50
        assert ppl[name, SCRAMBLED] > 3 * ppl[name, TEXT]
    assert ppl["llama", TEXT] == pytest.approx(ppl["hf", TEXT], rel=0.1)
