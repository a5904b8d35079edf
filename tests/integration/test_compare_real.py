"""Compare and parameter sweep on the real SmolLM2 and gemma-3-270m."""

import csv
import io
import time

import pytest

from testdata import GEMMA, SMOLLM
from webui.compare import Comparison, RunConfig, to_csv, to_markdown, write_exports
from webui.params import LoadOptions
from webui.services import Services
from webui.settings import Settings

pytestmark = pytest.mark.integration
PROMPT = "What is the capital of France?"
SYSTEM = "Answer in one short sentence."
#: The user's own load options, different from the defaults, so a restore with other options would show.
USER_OPTIONS = LoadOptions(n_ctx=1024)


@pytest.fixture(scope="module")
def services(smollm_path, gemma_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    models = root / "models"
    models.mkdir()
    for path in (smollm_path, gemma_path):
        (models / path.name).symlink_to(path)
    svc = Services.build(Settings(user_data_dir=root / "user", model_dir=models, load=LoadOptions(n_ctx=2048)))
    yield svc
    svc.generator.call(svc.models.unload)


@pytest.fixture
def smollm_loaded(services):
    """SmolLM2 loaded by "the user", with their own options."""
    current = services.models.current
    if current is None or (current.name, current.options) != (SMOLLM, USER_OPTIONS):
        services.load_model(SMOLLM, "llama.cpp", USER_OPTIONS)
    return services.models.current


def config(model: str, params: dict | None = None, **kw) -> RunConfig:
    return RunConfig(model=model, params={"max_tokens": 32, **(params or {})}, **kw)


def assert_complete(result, model: str) -> None:
    assert result.ok, result.error
    assert result.text and result.model == model and result.loader == "llama.cpp"
    assert result.completion_tokens > 0 and result.prompt_tokens > 0 and result.tokens_per_second > 0
    assert result.ttft_seconds is not None and result.finish_reason in ("stop", "length") and result.seed == 42
    assert model in result.model_description


def test_two_presets_on_smollm_are_complete_and_reproducible(services, smollm_loaded):
    configs = [config(SMOLLM, preset=p) for p in ("Technical", "Creative", "Technical")]
    results = Comparison(services).run_all(PROMPT, SYSTEM, configs)
    assert len(results) == 3
    for r in results:
        assert_complete(r, SMOLLM)
        assert r.load_seconds is None  # the loaded model served every run: no switch
    assert results[0].changed_params["temperature"] == 0.4 and results[1].changed_params["temperature"] == 0.9
    assert results[0].text == results[2].text  # same preset, same seed: the same answer
    assert services.models.current is smollm_loaded


def test_smollm_vs_gemma_switches_and_loads_the_users_model_again(services, smollm_loaded):
    started = time.perf_counter()
    events = list(Comparison(services).run(PROMPT, SYSTEM, [config(GEMMA), config(SMOLLM)]))
    seconds = time.perf_counter() - started
    results = [e.result for e in events if e.kind == "result"]
    assert_complete(results[0], GEMMA)
    assert_complete(results[1], SMOLLM)
    assert results[0].load_seconds is not None and results[1].load_seconds is not None
    statuses = [e.message for e in events if e.kind == "status"]
    assert any(f"Switching to {GEMMA}" in m for m in statuses)
    assert any(f"Loading {SMOLLM} again" in m for m in statuses)  # run 2 loaded it with the default options
    now = services.models.current
    assert (now.name, now.loader, now.options) == (SMOLLM, "llama.cpp", USER_OPTIONS)
    assert now.backend.n_ctx == 1024
    print(f"\nSmolLM2 vs gemma-3-270m, 32 tokens each, with the restore: {seconds:.1f} s")


def test_temperature_sweep(services, smollm_loaded):
    # Nothing else trims the distribution, so temperature alone decides how adventurous the text is.
    base = config(SMOLLM, params={"top_k": 0, "top_p": 1.0, "min_p": 0.0})
    events = Comparison(services).sweep(PROMPT, SYSTEM, base, "temperature", [0.2, 0.7, 1.2])
    results = [e.result for e in events if e.kind == "result"]
    assert [r.config.params["temperature"] for r in results] == [0.2, 0.7, 1.2]
    assert [r.config.label for r in results] == ["temperature = 0.2", "temperature = 0.7", "temperature = 1.2"]
    for r in results:
        assert_complete(r, SMOLLM)
    # 0.7 is the default, so only the other two list it as changed
    assert ["temperature" in r.changed_params for r in results] == [True, False, True]
    assert len({r.text for r in results}) > 1  # the same seed, yet the temperature changed the answer


def test_exports_contain_every_run_and_a_missing_model_fails_alone(services, smollm_loaded):
    configs = [config(SMOLLM, preset="Deterministic"), config("no-such-model.gguf"), config(GEMMA)]
    results = Comparison(services).run_all(PROMPT, SYSTEM, configs)
    assert_complete(results[0], SMOLLM)
    assert "No model called 'no-such-model.gguf'" in results[1].error
    assert_complete(results[2], GEMMA)
    assert services.models.current.name == SMOLLM
    rows = list(csv.DictReader(io.StringIO(to_csv(results))))
    assert [row["model"] for row in rows] == [SMOLLM, "no-such-model.gguf", GEMMA]
    assert [row["answer"] for row in rows] == [r.text for r in results]
    assert rows[0]["changed params"] == "max_tokens=32, do_sample=False" and rows[0]["seed"] == "42"
    assert rows[1]["finish"].startswith("error: ")
    md_path, csv_path = write_exports(results, services.export_dir, PROMPT, SYSTEM)
    md = md_path.read_text(encoding="utf-8")
    assert md == to_markdown(results, PROMPT, SYSTEM) and PROMPT in md
    assert all(r.text.splitlines()[0].replace("|", "\\|") in md for r in results if r.text)
    assert len(list(csv.reader(io.StringIO(csv_path.read_bytes().decode("utf-8-sig"))))) == 4
