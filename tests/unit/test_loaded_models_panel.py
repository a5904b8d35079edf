"""The Model tab's "Loaded models" table: the budget or one-model line, the time-to-live, the main model marked
first, each model's memory, idle time and requests, in the page's language."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from fakes import FakeBackend
from webui.models.manager import LoadedModel
from webui.params import LoadOptions
from webui.ui.loaded_models_panel import default_pick, idle_text, loaded_models_text

NOW = 1_000_000.0


def loaded(name: str, memory: int, idle: float = 0, requests: int = 0, path: Path | None = None) -> LoadedModel:
    path = Path(f"/models/{name}") if path is None else path
    return LoadedModel(
        name,
        "llama.cpp",
        LoadOptions(),
        FakeBackend(path, 512),
        0.5,
        path=path,
        memory_bytes=memory,
        last_used=NOW - idle,
        requests=requests,
    )


def manager(models: list[LoadedModel], budget: int = 0, ttl: float = 0) -> SimpleNamespace:
    """What the table reads of a ModelManager: its loaded models (main first), the main one, budget and TTL."""
    return SimpleNamespace(
        loaded_models=lambda: models, current=models[0] if models else None, budget_bytes=budget, ttl_seconds=ttl
    )


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| `")]


def test_with_a_budget_every_model_is_a_row_and_the_main_one_is_marked():
    models = [loaded("gemma.gguf", 300_000_000, idle=5, requests=3), loaded("smol.gguf", 150_000_000, idle=125)]
    text = loaded_models_text(manager(models, budget=2_000_000_000), "en", now=NOW)
    assert text.splitlines()[0] == "Memory budget: 450.0 MB of 2.0 GB used."
    first, second = table_rows(text)
    assert first == "| `gemma.gguf` **(main)** | llama.cpp | 300.0 MB | 5 s | 3 |"
    assert second == "| `smol.gguf` | llama.cpp | 150.0 MB | 2 min | 0 |"
    assert "Requests served" in text and "Idle for" in text


def test_without_a_budget_it_says_one_model_at_a_time():
    text = loaded_models_text(manager([loaded("smol.gguf", 150_000_000)]), "en", now=NOW)
    assert text.startswith("One model at a time (start with --models-budget-mb to keep several loaded).")
    assert "unload after" not in text
    assert len(table_rows(text)) == 1


def test_the_time_to_live_is_named():
    text = loaded_models_text(manager([loaded("smol.gguf", 1)], budget=10**9, ttl=300), "en", now=NOW)
    assert "Models other than the main one unload after 300 s without a request." in text.splitlines()[0]


def test_no_model_loaded():
    text = loaded_models_text(manager([]), "en", now=NOW)
    assert text.endswith("No model loaded.") and "|" not in text


def test_a_servers_model_takes_no_memory_here_and_a_pipe_in_a_name_stays_in_its_cell():
    remote = LoadedModel("org/a|b", "remote", LoadOptions(), FakeBackend(Path("x"), 512), 0.1, path=None)
    remote.last_used = NOW
    text = loaded_models_text(manager([remote]), "en", now=NOW)
    assert table_rows(text) == ["| `org/a\\|b` **(main)** | remote | on its server | 0 s | 0 |"]


def test_in_russian_and_chinese():
    models = manager([loaded("smol.gguf", 150_000_000, idle=7200)], budget=10**9, ttl=60)
    ru = loaded_models_text(models, "ru", now=NOW)
    assert "Бюджет памяти: занято 150.0 MB из 1.0 GB." in ru and "**(основная)**" in ru and "| 2 ч |" in ru
    zh = loaded_models_text(models, "zh", now=NOW)
    assert "内存预算" in zh and "**(主模型)**" in zh and "60 秒" in zh


def test_idle_time_units():
    assert [idle_text(s, "en") for s in (-1, 59, 60, 3599, 3600)] == ["0 s", "59 s", "1 min", "59 min", "1 h"]


def test_the_dropdown_keeps_its_pick_while_it_is_loaded():
    assert default_pick(["a", "b"], "a") == "a"
    assert default_pick(["a", "b"], "gone") == "b"  # a model other than the main one
    assert default_pick([], "a") is None
