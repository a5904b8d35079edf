"""Several models loaded at once: the memory budget, routing by name, loading on demand, the idle TTL.

Fast checks on the scripted backend; tests/integration/test_model_routing.py runs the same through the
real server, real GGUF models and the ``openai`` client.
"""

from __future__ import annotations

import pytest

from fakes import FakeBackend
from webui.errors import ModelLoadError, ModelNotFoundError, NoModelLoadedError
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.models.model_settings import ModelSettings
from webui.params import LoadOptions, SamplingParams

MB = 1_000_000


@pytest.fixture
def manager(tmp_path, loaders) -> ModelManager:
    folder = tmp_path / "models"
    folder.mkdir()
    manager = ModelManager(folder, LoadOptions(n_ctx=64), loaders=loaders)
    for name in ("a.gguf", "b.gguf", "c.gguf"):
        (folder / name).write_text("weights")
        manager.save_model_settings(name, ModelSettings(loader="fake"))  # so a load on demand finds its loader
    # each fake model "takes" 400 MB, whatever the tiny file measures
    manager.memory_estimate = lambda path, options: 400 * MB  # type: ignore[method-assign]
    return manager


def names(manager: ModelManager) -> list[str]:
    return [m.name for m in manager.loaded_models()]


def test_without_a_budget_one_model_is_loaded_at_a_time(manager):
    first = manager.load("a.gguf", "fake")
    manager.load("b.gguf", "fake")
    assert names(manager) == ["b.gguf"]
    assert first.backend.closed


def test_with_a_budget_models_stay_loaded_side_by_side_and_the_last_loaded_is_main(manager):
    manager.budget_bytes = 1000 * MB
    manager.load("a.gguf", "fake")
    manager.load("b.gguf", "fake")
    assert names(manager) == ["b.gguf", "a.gguf"]  # main first
    assert manager.current is not None and manager.current.name == "b.gguf"
    assert manager.load("c.gguf", "fake", main=False).name == "c.gguf"
    assert manager.current.name == "b.gguf"  # a model loaded for a request does not take over the tabs


def test_the_least_recently_used_model_makes_room(manager):
    manager.budget_bytes = 1000 * MB
    manager.load("a.gguf", "fake")
    b = manager.load("b.gguf", "fake")
    with manager.use("a.gguf"):  # a request for a: b is now the least recently used
        pass
    manager.load("c.gguf", "fake")
    assert sorted(names(manager)) == ["a.gguf", "c.gguf"]
    assert b.backend.closed


def test_a_model_bigger_than_the_budget_is_refused_and_the_loaded_ones_stay(manager):
    manager.budget_bytes = 300 * MB
    manager.memory_estimate = lambda path, options: 100 * MB  # type: ignore[method-assign]
    manager.load("a.gguf", "fake")
    manager.memory_estimate = lambda path, options: 400 * MB  # type: ignore[method-assign]
    with pytest.raises(ModelLoadError) as caught:
        manager.load("b.gguf", "fake")
    assert caught.value.key == "error.over_budget"
    assert "--models-budget-mb" in caught.value.message
    assert names(manager) == ["a.gguf"]


def test_requests_are_routed_by_name_and_unknown_names_get_a_404_naming_the_loaded_models(manager):
    manager.budget_bytes = 1000 * MB
    manager.load("a.gguf", "fake")
    manager.load("b.gguf", "fake")
    assert manager.route(None) is None  # no name: the main model
    assert manager.route("a.gguf") == "a.gguf"
    assert manager.route("A") == "a.gguf"  # any case, without the extension
    with pytest.raises(ModelNotFoundError) as unknown:
        manager.route("gpt-4o-mini")
    assert "b.gguf, a.gguf" in unknown.value.message
    with pytest.raises(ModelNotFoundError) as not_loaded:
        manager.route("c.gguf")
    assert "c.gguf is not loaded" in not_loaded.value.message and "--load-on-demand" in not_loaded.value.message


def test_with_one_model_loaded_any_other_name_goes_to_it_but_another_folder_model_does_not(manager):
    manager.load("a.gguf", "fake")
    assert manager.route("gpt-4o-mini") is None  # clients send their own names; the reply says which answered
    with pytest.raises(ModelNotFoundError):
        manager.route("b.gguf")  # asked for another model by name: never answered by the wrong one


def test_no_model_loaded_is_a_503_unless_the_request_may_load_it(manager):
    with pytest.raises(NoModelLoadedError):
        manager.route("a.gguf")
    manager.load_on_demand = True
    assert manager.route("a.gguf") == "a.gguf"


def test_a_request_for_a_folder_model_loads_it_on_demand_within_the_budget(manager):
    manager.budget_bytes = 1000 * MB
    manager.load_on_demand = True
    manager.load("a.gguf", "fake")
    assert manager.route("c") == "c.gguf"
    with manager.use("c.gguf") as loaded:
        assert loaded.name == "c.gguf"
    assert names(manager) == ["a.gguf", "c.gguf"]
    assert manager.current is not None and manager.current.name == "a.gguf"


def test_idle_models_other_than_the_main_one_are_unloaded_after_the_ttl(manager):
    manager.budget_bytes = 1000 * MB
    manager.ttl_seconds = 60
    manager.load("a.gguf", "fake")
    manager.load("b.gguf", "fake")  # main
    a = manager.find("a.gguf")
    assert a is not None
    assert manager.next_expiry(now=a.last_used + 10) == pytest.approx(50)
    assert manager.unload_idle(now=a.last_used + 30) == []
    assert manager.unload_idle(now=a.last_used + 61) == ["a.gguf"]
    assert names(manager) == ["b.gguf"]
    assert a.backend.closed
    assert manager.next_expiry() is None  # only the main model is left, and it stays


def test_unloading_the_main_model_makes_the_most_recently_used_other_one_main(manager):
    manager.budget_bytes = 1000 * MB
    manager.load("a.gguf", "fake")
    manager.load("b.gguf", "fake")
    manager.unload("b.gguf")
    assert manager.current is not None and manager.current.name == "a.gguf"
    manager.unload()
    assert names(manager) == []


def test_the_scheduler_runs_each_job_on_the_model_it_names(manager):
    manager.budget_bytes = 1000 * MB
    manager.load("a.gguf", "fake")
    manager.load("b.gguf", "fake")
    generator = Generator(manager)
    params = SamplingParams(max_tokens=2)
    to_a = generator.submit("hi", params, model="a.gguf")
    to_main = generator.submit("hi", params)
    to_a.result()
    to_main.result()
    assert to_a.stats is not None and to_a.stats.model == "a.gguf"
    assert to_main.stats is not None and to_main.stats.model == "b.gguf"
    a, b = manager.find("a.gguf"), manager.find("b.gguf")
    assert a is not None and b is not None
    assert isinstance(a.backend, FakeBackend) and len(a.backend.calls) == 1
    assert isinstance(b.backend, FakeBackend) and len(b.backend.calls) == 1
    assert a.requests == 1 and b.requests == 1


def test_a_job_for_a_model_that_went_away_fails_with_the_404_not_on_another_model(manager):
    manager.budget_bytes = 1000 * MB
    manager.load("a.gguf", "fake")
    manager.load("b.gguf", "fake")
    manager.unload("a.gguf")
    generator = Generator(manager)
    job = generator.submit("hi", SamplingParams(max_tokens=2), model="a.gguf")
    with pytest.raises(ModelNotFoundError):
        job.result()
