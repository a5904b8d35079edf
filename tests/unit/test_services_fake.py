"""Model manager and generation queue, on the scripted FakeBackend (fast)."""

import threading

import pytest

from fakes import FakeBackend
from webui.errors import InvalidNameError, ModelLoadError, ModelNotFoundError, NoModelLoadedError
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams


@pytest.fixture
def fake_models(tmp_path, loaders):
    d = tmp_path / "models"
    d.mkdir()
    (d / "a.gguf").write_bytes(b"GGUF ok")
    (d / "b.gguf").write_bytes(b"GGUF ok")
    (d / "broken.gguf").write_bytes(b"BAD")
    (d / "wrong.gguf").write_bytes(b"REJECT")
    (d / ".c.gguf.partial").write_bytes(b"half")
    (d / "d.gguf.partial").write_bytes(b"half")
    (d / "notes.txt").write_text("not a model")
    hf = d / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    return ModelManager(d, LoadOptions(n_ctx=64), loaders=loaders)


def test_list_models_shows_models_only(fake_models):
    assert fake_models.list_models() == ["a.gguf", "b.gguf", "broken.gguf", "hf-model", "wrong.gguf"]
    assert fake_models.infer_loader("a.gguf") == "llama.cpp"
    assert fake_models.infer_loader("hf-model") == "transformers"


def test_model_names_cannot_escape_the_models_folder(fake_models):
    with pytest.raises(InvalidNameError):
        fake_models.path_of("../secret.gguf")
    with pytest.raises(ModelNotFoundError, match="Available"):
        fake_models.path_of("missing.gguf")


def test_switching_frees_previous_and_failed_load_restores_it(fake_models):
    first = fake_models.load("a.gguf", "fake")
    fake_models.load("b.gguf", "fake")
    assert first.backend.closed
    with pytest.raises(ModelLoadError, match="broken.*b.gguf is loaded again"):
        fake_models.load("broken.gguf", "fake")
    assert fake_models.current.name == "b.gguf"
    assert not fake_models.current.backend.closed


def test_generate_without_model_is_a_clear_error(fake_models):
    gen = Generator(fake_models)
    with pytest.raises(NoModelLoadedError, match="Model tab"):
        gen.generate("x")
    # the worker survives the error
    fake_models.load("a.gguf", "fake")
    text, stats = gen.generate("x", SamplingParams(max_tokens=3, seed=5))
    assert text == "0 1 2 "
    assert (stats.completion_tokens, stats.finish_reason, stats.seed) == (3, "length", 5)


def test_random_seed_is_resolved_and_reported(fake_models):
    fake_models.load("a.gguf", "fake")
    _, stats = Generator(fake_models).generate("x", SamplingParams(max_tokens=1))
    assert stats.seed >= 0
    backend = fake_models.current.backend
    assert backend.calls[-1][1].seed == stats.seed


def test_fifo_order_and_cancel_isolation(fake_models):
    fake_models.load("a.gguf", "fake")
    gen = Generator(fake_models)
    gate = threading.Event()
    FakeBackend.gate = gate
    jobs = [gen.submit(p, SamplingParams(max_tokens=3)) for p in ("first", "second", "third")]
    jobs[1].cancel.set()  # only the second user presses Stop
    gate.set()
    results = [j.result() for j in jobs]
    assert results[0] == "0 1 2 " and results[2] == "0 1 2 "
    assert results[1] == ""
    assert [j.stats.finish_reason for j in jobs] == ["length", "cancelled", "length"]
    backend = fake_models.current.backend
    assert [c[0] for c in backend.calls] == ["first", "third"]


class _FirstTokenOnly(threading.Event):
    """A gate that lets the first token through and holds the next ones until it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return True if self.waits == 1 else super().wait(timeout)


def test_consumer_that_goes_away_cancels_its_job(fake_models):
    fake_models.load("a.gguf", "fake")
    gen = Generator(fake_models)
    # held after its first token: a busy machine could otherwise finish all of them before close()
    gate = FakeBackend.gate = _FirstTokenOnly()
    job = gen.submit("x", SamplingParams(max_tokens=10_000))
    it = iter(job)
    next(it)
    it.close()  # e.g. the browser tab was closed
    assert job.cancel.is_set()
    gate.set()
    follow_up = gen.submit("y", SamplingParams(max_tokens=2))
    assert follow_up.result() == "0 1 "
    assert job.stats.finish_reason == "cancelled"


def test_a_file_failing_the_cheap_check_never_unloads_the_current_model(fake_models):
    fake_models.load("a.gguf", "fake")
    backend = fake_models.current.backend
    with pytest.raises(ModelLoadError, match="not a model") as info:
        fake_models.load("wrong.gguf", "fake")
    assert "loaded again" not in str(info.value)
    assert fake_models.current.backend is backend and not backend.closed
