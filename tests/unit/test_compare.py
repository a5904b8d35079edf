"""Compare and parameter sweep on the scripted FakeBackend: configurations, errors, restore, exports."""

import csv
import io
import threading

import pytest
from pydantic import ValidationError

from webui.compare import (
    COLUMNS,
    Comparison,
    RunConfig,
    RunResult,
    parse_values,
    sweep_configs,
    to_csv,
    to_markdown,
    with_fixed_seeds,
    write_exports,
)
from webui.errors import CompareError
from webui.models.model_settings import ModelSettings
from webui.params import LoadOptions
from webui.services import Services
from webui.settings import Settings


@pytest.fixture
def services(tmp_path, loaders):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (models / name).write_bytes(b"GGUF ok")
    (models / "broken.gguf").write_bytes(b"BAD")
    return Services.build(
        Settings(user_data_dir=tmp_path / "user", model_dir=models, load=LoadOptions(n_ctx=4096)), loaders=loaders
    )


def cfg(model: str, **kw) -> RunConfig:
    return RunConfig(model=model, loader="fake", params={"max_tokens": 3}, **kw)


def test_sweep_varies_one_parameter_and_keeps_the_rest():
    base = cfg("a.gguf", preset="Technical", seed=7)
    configs = sweep_configs(base, "temperature", parse_values("0.2, 0.7;1.2"))
    assert [c.params["temperature"] for c in configs] == [0.2, 0.7, 1.2]
    assert all(c.params["max_tokens"] == 3 and c.seed == 7 and c.preset == "Technical" for c in configs)
    assert [c.label for c in configs] == ["temperature = 0.2", "temperature = 0.7", "temperature = 1.2"]
    # text-generation-webui's names work too; a seed sweep sets the seed itself
    assert sweep_configs(base, "repetition_penalty", ["1.1"])[0].params["repeat_penalty"] == 1.1
    assert [c.seed for c in sweep_configs(base, "seed", ["1", "2"])] == [1, 2]


@pytest.mark.parametrize(
    "param, values, message",
    [
        ("temprature", ["0.2"], "not a parameter that can be swept.*temperature"),
        ("stop", ["x"], "not a parameter that can be swept"),
        ("temperature", ["0.2", "7"], r"temperature = 7: .*less than or equal to 5"),
        ("top_k", ["0.5"], "top_k = 0.5: .*integer"),
        ("temperature", [], "Give the values"),
        ("temperature", ["0.1"] * 7, "At most 6"),
    ],
)
def test_sweep_refuses_what_it_cannot_run(param, values, message):
    with pytest.raises(CompareError, match=message):
        sweep_configs(cfg("a.gguf"), param, values)


def test_run_config_checks_its_parameters():
    assert cfg("a.gguf").seed == 42  # fixed by default: a comparison is reproducible
    assert RunConfig(model="a", params={"repetition_penalty": 1.1}).params == {"repeat_penalty": 1.1}
    with pytest.raises(ValidationError, match="unknown parameter"):
        RunConfig(model="a", params={"warmth": 1})
    with pytest.raises(ValidationError, match="less than or equal"):
        RunConfig(model="a", params={"top_p": 2})


def test_a_random_seed_is_drawn_once_for_the_whole_comparison():
    configs = with_fixed_seeds(
        [cfg("a.gguf", seed=-1), cfg("b.gguf", seed=-1), cfg("a.gguf", seed=5)], draw=lambda: 1234
    )
    assert [c.seed for c in configs] == [1234, 1234, 5]


def test_two_models_run_in_turn_and_the_users_model_comes_back(services):
    before = services.load_model("a.gguf", "fake")
    events = list(Comparison(services).run("Hello", "Be brief.", [cfg("a.gguf", preset="Technical"), cfg("b.gguf")]))
    results = [e.result for e in events if e.kind == "result"]
    assert [r.model for r in results] == ["a.gguf", "b.gguf"]
    assert all(r.ok and r.text == "0 1 2" and r.completion_tokens == 3 and r.seed == 42 for r in results)
    assert all(r.loader == "fake" and r.prompt_tokens > 0 for r in results)
    assert results[0].load_seconds is None and results[1].load_seconds is not None  # a was loaded already
    assert results[0].changed_params == {"max_tokens": 3, "temperature": 0.4, "top_p": 0.8, "top_k": 30}
    messages = [e.message for e in events if e.kind == "status"]
    assert any("Switching to b.gguf" in m and "one model in memory" in m for m in messages)
    assert any("Loading a.gguf again" in m for m in messages) and messages[-1].startswith("Done: 2 of 2")
    now = services.models.current
    assert (now.name, now.loader, now.options) == (before.name, before.loader, before.options)
    # The prompt went through the chat template, as the Chat tab sends it (ChatML for a model without one).
    prompt = now.backend.calls[-1][0] if now.backend.calls else before.backend.calls[-1][0]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_a_missing_model_fails_its_run_only(services):
    services.load_model("a.gguf", "fake")
    seen = []
    results = Comparison(services).run_all("Hi", "", [cfg("missing.gguf"), cfg("broken.gguf"), cfg("b.gguf")])
    assert len(results) == 3
    assert "No model called 'missing.gguf'" in results[0].error
    assert "broken" in results[1].error and not results[1].ok
    assert results[2].ok and results[2].model == "b.gguf"
    assert services.models.current.name == "a.gguf"
    # progress events go to the callback as well
    list(Comparison(services).run("Hi", "", [cfg("missing.gguf")], progress_callback=seen.append))
    assert any(e.key == "compare.status.run_failed" for e in seen)


def test_no_model_before_means_none_after(services):
    results = Comparison(services).run_all("Hi", "", [cfg("a.gguf")])
    assert results[0].ok and services.models.current is None


def test_the_model_comes_back_after_an_error_or_a_consumer_that_leaves(services):
    services.load_model("a.gguf", "fake")

    def explode(event):
        if event.kind == "result":
            raise RuntimeError("the page went away")

    with pytest.raises(RuntimeError, match="went away"):
        list(Comparison(services).run("Hi", "", [cfg("b.gguf"), cfg("b.gguf")], progress_callback=explode))
    assert services.models.current.name == "a.gguf"

    run = Comparison(services).run("Hi", "", [cfg("b.gguf"), cfg("a.gguf")])
    for event in run:
        if event.kind == "result":
            break  # b.gguf is loaded now
    assert services.models.current.name == "b.gguf"
    run.close()  # a closed browser tab
    assert services.models.current.name == "a.gguf"


def test_stop_skips_the_remaining_runs_and_restores(services):
    services.load_model("a.gguf", "fake")
    cancel = threading.Event()
    results = []
    for event in Comparison(services).run("Hi", "", [cfg("b.gguf"), cfg("a.gguf"), cfg("b.gguf")], cancel=cancel):
        if event.kind == "result":
            results.append(event.result)
            cancel.set()
        last = event
    assert results[0].ok and [r.finish_reason for r in results[1:]] == ["cancelled", "cancelled"]
    assert "Not run" in results[2].error
    assert last.message.startswith("Stopped: 1 of 3")
    assert services.models.current.name == "a.gguf"


def test_a_models_saved_preset_does_not_change_the_users_choice(services):
    services.models.save_model_settings("b.gguf", ModelSettings(loader="fake", preset="Creative"))
    services.remember(preset="Chat", params={"temperature": 0.6})
    services.load_model("a.gguf", "fake")
    Comparison(services).run_all("Hi", "", [cfg("b.gguf")])
    assert (services.settings.preset, services.settings.params) == ("Chat", {"temperature": 0.6})


def test_bad_requests_are_refused_before_anything_runs(services):
    with pytest.raises(CompareError, match="Type a prompt"):
        list(Comparison(services).run("  ", "", [cfg("a.gguf")]))
    with pytest.raises(CompareError, match="At most"):
        list(Comparison(services).run("Hi", "", [cfg("a.gguf")] * 7))


def test_exports_contain_every_run(services, tmp_path):
    services.load_model("a.gguf", "fake")
    results = Comparison(services).run_all(
        "Say | hi", "Sys", [cfg("a.gguf"), cfg("missing.gguf"), cfg("a.gguf", preset="Creative", seed=9)]
    )
    results[2].text = "line one\nline | two"
    rows = list(csv.reader(io.StringIO(to_csv(results))))
    assert rows[0] == list(COLUMNS) and len(rows) == 4
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    assert rows[2][10].startswith("error: No model called") and rows[3][5] == "9" and rows[3][3] == "Creative"
    assert rows[3][-1] == "line one\nline | two"
    md = to_markdown(results, "Say | hi", "Sys")
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 4 and "line one<br>line \\| two" in table[3] and "> Say | hi" in md
    md_path, csv_path = write_exports(results, services.export_dir, "Say | hi", "Sys")
    assert md_path.parent == services.export_dir and md_path.read_text(encoding="utf-8") == md
    assert csv_path.read_bytes().decode("utf-8-sig") == to_csv(results)


def test_the_tabs_rows_become_configurations():
    from webui.ui.compare_tab import configs_from, stats_text

    models, presets = ["a.gguf", "", "b.gguf", ""], ["Chat", "Creative", "", ""]
    by_model = configs_from("models", models, presets, 7, 64, "temperature", "", "en")
    assert [(c.model, c.preset, c.seed, c.params) for c in by_model] == [
        ("a.gguf", "Chat", 7, {"max_tokens": 64}),
        ("b.gguf", None, 7, {"max_tokens": 64}),
    ]
    by_preset = configs_from("presets", models, presets, None, 64, "temperature", "", "en")
    assert [(c.model, c.preset, c.seed) for c in by_preset] == [("a.gguf", "Chat", 42), ("a.gguf", "Creative", 42)]
    swept = configs_from("sweep", models, presets, 1, 64, "top_k", "10, 40", "en")
    assert [(c.preset, c.params["top_k"]) for c in swept] == [("Chat", 10), ("Chat", 40)]
    with pytest.raises(CompareError, match="row 1"):
        configs_from("presets", ["", "", "", ""], presets, 1, 64, "temperature", "", "en")
    with pytest.raises(CompareError, match="at least one"):
        configs_from("models", [""] * 4, presets, 1, 64, "temperature", "", "en")
    with pytest.raises(CompareError, match="top_p"):
        configs_from("sweep", models, presets, 1, 64, "top_p", "0.5, 2", "en")
    ok = RunResult(
        index=0,
        config=by_model[0],
        text="x",
        completion_tokens=5,
        tokens_per_second=12.34,
        ttft_seconds=0.2,
        finish_reason="length",
        seed=7,
        model="a.gguf",
        loader="fake",
        n_ctx=64,
    )
    assert "seed 7" in stats_text(ok, "en") and "reached the token limit" in stats_text(ok, "en")
    assert "seed 7" in stats_text(ok, "ru") and "достигнут лимит токенов" in stats_text(ok, "ru")
    failed = RunResult(index=1, config=by_model[1], error="No model called 'b.gguf'")
    assert stats_text(failed, "zh") == "⚠ No model called 'b.gguf'"


def test_the_rows_start_on_models_that_write_text_never_on_an_embedding_model(services):
    """./start.sh puts all-MiniLM-L6-v2 (sentence-transformers, for /v1/embeddings) next to the chat models:
    the second row started on it, and the student's first comparison failed on it."""
    from webui.ui.compare_tab import _defaults

    embedder = services.models.model_dir / "all-MiniLM-L6-v2"
    (embedder / "1_Pooling").mkdir(parents=True)
    (embedder / "config.json").write_text("{}")
    (embedder / "modules.json").write_text("[]")
    assert "all-MiniLM-L6-v2" in services.models.list_models()  # the Model tab lists it (its load says where it goes)
    assert "all-MiniLM-L6-v2" not in services.models.text_models()
    models, _ = _defaults(services)
    assert models[:2] == ["a.gguf", "b.gguf"]


def test_the_last_comparison_is_kept_whole_and_a_damaged_file_is_ignored_with_a_log_line(tmp_path, caplog):
    from webui.compare import LastComparison, read_last, save_last

    path = tmp_path / "logs" / "compare" / "last.json"
    assert read_last(path) is None
    result = RunResult(index=1, config=cfg("b.gguf", preset="Creative"), text="Paris.", completion_tokens=2)
    save_last(path, LastComparison(finished_at="2026-12-05 01:50", prompt="Capital?", results=[result], csv="x.csv"))
    back = read_last(path)
    assert back is not None and back.results == [result] and back.prompt == "Capital?" and back.csv == "x.csv"
    path.write_text('{"finished_at": "2026-12-05", "results": [{"index": "one"}]}')
    assert read_last(path) is None
    assert "cannot be read" in caplog.text
