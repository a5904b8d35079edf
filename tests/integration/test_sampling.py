"""Every sampling parameter reaches llama.cpp, and each family changes what the model writes."""

import llama_cpp
import pytest

from harness import smollm_generator
from testdata import PARIS_PROMPT, PROJECT_DIR
from webui.errors import GrammarError, PromptTooLongError
from webui.loaders.llama_sampling import build_sampler
from webui.params import SamplingParams
from webui.presets import PresetStore

pytestmark = pytest.mark.integration
GREEDY = SamplingParams(do_sample=False, max_tokens=40)


@pytest.fixture(scope="module")
def gen(smollm_path, tmp_path_factory):
    yield from smollm_generator(smollm_path, tmp_path_factory, n_ctx=1024)


def chain_names(gen, params):
    backend = gen.models.current.backend
    chain = build_sampler(backend._llm, params, backend.n_ctx, backend._eog)
    n = llama_cpp.llama_sampler_chain_n(chain.sampler)
    return [
        llama_cpp.llama_sampler_name(llama_cpp.llama_sampler_chain_get(chain.sampler, i)).decode().lstrip("?")
        for i in range(n)
    ]


def test_each_sampler_family_is_in_the_llama_chain(gen):
    assert chain_names(gen, SamplingParams(seed=1)) == [
        "penalties",
        "dry",  # on by default (against loops)
        "top-k",
        "typical",
        "top-p",
        "min-p",
        "temp",
        "dist",
    ]
    assert chain_names(gen, SamplingParams(seed=1, dry_multiplier=0.0)) == [
        "penalties",
        "top-k",
        "typical",
        "top-p",
        "min-p",
        "temp",
        "dist",
    ]
    full = chain_names(
        gen,
        SamplingParams(
            seed=1, dry_multiplier=0.8, xtc_probability=0.5, ban_eos_token=True, grammar_string='root ::= "a"'
        ),
    )
    assert full == [
        "logit-bias",
        "penalties",
        "dry",
        "grammar",
        "top-k",
        "typical",
        "top-p",
        "min-p",
        "xtc",
        "temp",
        "dist",
    ]
    assert chain_names(gen, SamplingParams(do_sample=False, dry_multiplier=0.0)) == ["penalties", "greedy"]
    assert chain_names(gen, SamplingParams(seed=1, mirostat_mode=2))[-1] == "mirostat-v2"


def test_the_backend_receives_the_params_of_the_request(gen, monkeypatch):
    seen = []
    import webui.loaders.llama_slots as mod  # the generation queue runs llama.cpp requests in its slots

    real = mod.build_sampler
    monkeypatch.setattr(mod, "build_sampler", lambda llm, p, n, eog, **kw: seen.append(p) or real(llm, p, n, eog, **kw))
    params = SamplingParams(
        seed=7,
        temperature=0.3,
        top_k=11,
        top_p=0.5,
        min_p=0.2,
        typical_p=0.9,
        repeat_penalty=1.1,
        repeat_last_n=32,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        dry_multiplier=0.5,
        xtc_probability=0.1,
        max_tokens=3,
    )
    gen.generate("Hello", params)
    assert seen == [params]


def test_temperature_zero_and_deterministic_preset_are_greedy(gen):
    deterministic = PresetStore(PROJECT_DIR / "presets").load("Deterministic").params
    a, _ = gen.generate(PARIS_PROMPT, deterministic.model_copy(update={"max_tokens": 40}))
    b, _ = gen.generate(PARIS_PROMPT, SamplingParams(temperature=0, max_tokens=40, seed=99))
    c, _ = gen.generate(PARIS_PROMPT, GREEDY)
    assert a == b == c and "Paris" in a


def test_ban_eos_runs_to_the_token_limit(gen):
    _, free = gen.generate(PARIS_PROMPT, GREEDY)
    assert free.finish_reason == "stop" and free.completion_tokens < 40
    _, banned = gen.generate(PARIS_PROMPT, GREEDY.model_copy(update={"ban_eos_token": True}))
    assert banned.finish_reason == "length" and banned.completion_tokens == 40


def test_grammar_constrains_the_output(gen):
    params = SamplingParams(seed=3, temperature=1.0, max_tokens=20, grammar_string='root ::= ("yes" | "no") "."')
    for seed in (1, 2, 3):
        text, stats = gen.generate("Is Paris in France? Answer:", params.model_copy(update={"seed": seed}))
        assert text in ("yes.", "no."), text


def test_invalid_grammar_is_a_clear_error_and_the_model_keeps_working(gen):
    with pytest.raises(GrammarError, match="GBNF"):
        gen.generate("x", SamplingParams(grammar_string='root ::= "unterminated', max_tokens=3))
    assert "Paris" in gen.generate(PARIS_PROMPT, GREEDY)[0]


def test_dry_and_xtc_change_the_text(gen):
    prompt = "List: apple, banana, apple, banana, apple, banana, apple,"
    # plain: no repetition penalty and no DRY (the defaults have both)
    base = SamplingParams(
        seed=5, temperature=0.8, max_tokens=30, top_k=40, min_p=0.0, repeat_penalty=1.0, dry_multiplier=0
    )
    plain, _ = gen.generate(prompt, base)
    again, _ = gen.generate(prompt, base)
    assert plain == again
    dry, _ = gen.generate(prompt, base.model_copy(update={"dry_multiplier": 3.0, "dry_allowed_length": 1}))
    xtc, _ = gen.generate(prompt, base.model_copy(update={"xtc_probability": 1.0, "xtc_threshold": 0.05}))
    assert dry != plain
    assert xtc != plain
    # DRY penalises continuing the repeated pattern
    assert plain.count("banana") >= dry.count("banana")


def test_skip_special_tokens_off_shows_them(gen):
    # After a finished turn the model opens the next one with the special token <|im_start|>.
    prompt = PARIS_PROMPT + "The capital of France is Paris.<|im_end|>\n"
    params = GREEDY.model_copy(update={"max_tokens": 5, "ban_eos_token": True})
    shown, _ = gen.generate(prompt, params.model_copy(update={"skip_special_tokens": False}))
    hidden, _ = gen.generate(prompt, params)
    assert shown.startswith("<|im_start|>")
    assert "<|im_start|>" not in hidden


def test_truncation_length_keeps_the_end_of_a_long_prompt(gen):
    long_prompt = "filler " * 1500 + "\nThe capital of France is"
    with pytest.raises(PromptTooLongError):
        gen.generate(long_prompt, GREEDY)
    text, stats = gen.generate(long_prompt, GREEDY.model_copy(update={"truncation_length": 200, "max_tokens": 8}))
    assert stats.prompt_tokens == 200
    assert stats.completion_tokens > 0
