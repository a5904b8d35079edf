"""The llama.cpp loader on the real starter GGUFs, through the services the UI and API use."""

import random
import threading

import pytest

from testdata import GEMMA, PARIS_PROMPT, SMOLLM
from webui.errors import ModelLoadError, PromptTooLongError
from webui.generation.scheduler import Generator
from webui.loaders import infer_loader
from webui.loaders.llamacpp import LlamaCppBackend
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

pytestmark = pytest.mark.integration
GREEDY = SamplingParams(do_sample=False, max_tokens=40)


@pytest.fixture(scope="module")
def services(smollm_path, gemma_path, tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    for p in (smollm_path, gemma_path):
        (d / p.name).symlink_to(p)
    (d / "garbage.gguf").write_bytes(random.Random(0).randbytes(4096))
    truncated = d / "truncated.gguf"
    with open(smollm_path, "rb") as src:
        truncated.write_bytes(src.read(20_000_000))
    (d / "folder.gguf").mkdir()
    models = ModelManager(d, LoadOptions(n_ctx=2048))
    models.load(SMOLLM)
    yield models, Generator(models)
    models.unload()


def test_infer_loader_for_gguf(smollm_path):
    assert infer_loader(smollm_path) == "llama.cpp"


def test_greedy_paris_with_stats(services):
    models, gen = services
    text, stats = gen.generate(PARIS_PROMPT, GREEDY)
    assert "Paris" in text
    assert stats.model == SMOLLM and stats.loader == "llama.cpp"
    assert stats.prompt_tokens > 5 and stats.completion_tokens > 0
    assert stats.ttft_seconds is not None and stats.tokens_per_second > 0
    assert stats.finish_reason == "stop"  # the model ended its answer with <|im_end|>


def test_gguf_metadata_and_chat_template(services):
    models, _ = services
    backend = models.current.backend
    assert "im_start" in backend.chat_template
    assert backend.metadata["general.architecture"] == "llama"
    assert backend.n_ctx == 2048


def test_same_seed_same_text_and_length_limit(services):
    _, gen = services
    params = SamplingParams(temperature=1.0, max_tokens=24, seed=1234)
    a, sa = gen.generate("Once upon a time", params)
    b, sb = gen.generate("Once upon a time", params)
    assert a == b and sa.seed == sb.seed == 1234
    assert sa.finish_reason == "length" and sa.completion_tokens == 24


def test_stop_string_ends_generation_and_is_not_included(services):
    _, gen = services
    full, _ = gen.generate(PARIS_PROMPT, GREEDY)
    assert "Paris" in full
    text, stats = gen.generate(PARIS_PROMPT, GREEDY.model_copy(update={"stop": ["Paris"]}))
    assert text == full[: full.index("Paris")]
    assert stats.finish_reason == "stop"


def test_cancel_stops_a_stream_early(services):
    _, gen = services
    job = gen.submit("Write a very long story about a dragon.\n", SamplingParams(max_tokens=1500, seed=1))
    seen = 0
    for _chunk in job:
        seen += 1
        if seen == 5:
            job.cancel.set()
    assert job.stats.finish_reason == "cancelled"
    assert job.stats.completion_tokens < 100
    # the model is still usable, and the next request is served normally
    assert "Paris" in gen.generate(PARIS_PROMPT, GREEDY)[0]


def test_prompt_longer_than_context_is_a_clear_error(services):
    _, gen = services
    with pytest.raises(PromptTooLongError, match=r"2048"):
        gen.generate("word " * 5000, GREEDY)


def test_reply_is_capped_at_the_context_end(smollm_path):
    backend = LlamaCppBackend.load(smollm_path, LoadOptions(n_ctx=64))
    try:
        chunks = list(
            backend.stream(
                "Count: 1, 2, 3,",
                SamplingParams(max_tokens=500, seed=1, min_p=0.0, repeat_penalty=1.0),
                threading.Event(),
            )
        )
        total = sum(c.n_tokens for c in chunks)
        # llama.cpp rounds small contexts up (to 256 here); the cap follows the real size
        assert backend.n_ctx < 500
        assert total + chunks[-1].prompt_tokens <= backend.n_ctx
        assert chunks[-1].finish_reason == "length"
    finally:
        backend.close()


@pytest.mark.parametrize(
    "name, message",
    [
        ("garbage.gguf", "not a GGUF model file"),
        ("truncated.gguf", "truncated or corrupt"),
        ("folder.gguf", "folder"),
    ],
)
def test_broken_files_give_clear_errors_and_keep_the_loaded_model(services, name, message):
    models, gen = services
    with pytest.raises(ModelLoadError, match=message):
        models.load(name, "llama.cpp")
    assert models.current is not None and models.current.name == SMOLLM
    assert "Paris" in gen.generate(PARIS_PROMPT, GREEDY)[0]


def test_gemma_base_model_without_template_continues_text(services):
    models, gen = services
    try:
        loaded = models.load(GEMMA)
        assert loaded.backend.chat_template is None  # a base model: no chat template in the GGUF
        text, stats = gen.generate("The capital of France is", SamplingParams(do_sample=False, max_tokens=12))
        assert stats.model == GEMMA
        assert stats.completion_tokens > 0 and "France" in text
    finally:
        models.load(SMOLLM)


def test_utf8_text_streams_intact(services):
    _, gen = services
    job = gen.submit("Translate to French: 'the summer holidays'. In French:", SamplingParams(max_tokens=30, seed=3))
    pieces = [c.text for c in job]
    assert "\ufffd" not in "".join(pieces)


def test_raw_text_over_truncation_length_is_cut_from_the_front_and_counted(services):
    _, gen = services
    text = "The quick brown fox jumps over the lazy dog. " * 40 + "The capital of France is"
    job = gen.submit(text, SamplingParams(do_sample=False, max_tokens=3, truncation_length=64))
    job.result()
    assert job.stats.prompt_tokens == 64 and job.stats.prompt_cut > 300  # the Notebook shows this as a notice
