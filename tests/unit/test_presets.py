"""Preset files: shipped presets, text-generation-webui compatibility, round trips, bad input."""

import shutil

import pytest

from testdata import PROJECT_DIR
from webui.errors import InvalidNameError, SettingsError
from webui.params import SamplingParams
from webui.presets import PresetStore

OOBA_PRESET = """\
do_sample: true
top_p: 0.95
top_k: 50
temperature: 1.0
repetition_penalty: 1.2
typical_p: 1.0
"""


@pytest.fixture
def store(tmp_path):
    folder = tmp_path / "presets"
    shutil.copytree(PROJECT_DIR / "presets", folder)
    return PresetStore(folder)


def test_shipped_presets_load_and_match_their_descriptions(store):
    assert {"Default", "Deterministic", "Technical", "Creative", "Chat", "min_p"} <= set(store.names())
    for name in store.names():
        preset = store.load(name)
        assert preset.unknown == {}, name
    assert store.load("Default").params == SamplingParams()
    assert store.load("Deterministic").params.greedy
    t = store.load("Technical").params
    assert 0.3 <= t.temperature <= 0.5 and 0.7 <= t.top_p <= 0.9 and 20 <= t.top_k <= 40 and t.max_tokens == 512
    c = store.load("Creative").params
    assert 0.7 <= c.temperature <= 1.0 and 0.9 <= c.top_p <= 1.0 and 40 <= c.top_k <= 60 and c.max_tokens == 1024
    ch = store.load("Chat").params
    assert 0.5 <= ch.temperature <= 0.7 and 0.8 <= ch.top_p <= 0.95 and 30 <= ch.top_k <= 50 and ch.max_tokens == 768
    assert store.load("min_p").params.min_p > 0


def test_text_generation_webui_preset_loads_with_the_same_meaning(store):
    (store.folder / "ooba.yaml").write_text(OOBA_PRESET)
    p = store.load("ooba").params
    assert (p.do_sample, p.top_p, p.top_k, p.temperature, p.repeat_penalty, p.typical_p) == (
        True,
        0.95,
        50,
        1.0,
        1.2,
        1.0,
    )


def test_unknown_keys_warn_and_survive_a_save(store):
    (store.folder / "odd.yaml").write_text("temperature: 0.5\ntop_a: 0.2\nsampler_priority: [a, b]\n")
    preset = store.load("odd")
    assert "top_a" in preset.warning and "sampler_priority" in preset.warning
    store.save("odd", preset.params.model_copy(update={"top_k": 7}), preset.unknown)
    again = store.load("odd")
    assert again.unknown == {"top_a": 0.2, "sampler_priority": ["a", "b"]}
    assert again.params.top_k == 7 and again.params.temperature == 0.5


def test_save_stores_only_differences_and_round_trips(store):
    params = SamplingParams(temperature=0.33, stop=["\n\n"], dry_multiplier=0.8, seed=42)
    path = store.save("mine", params)
    text = path.read_text()
    assert "top_p" not in text  # unchanged from the default
    assert store.load("mine").params == params
    store.delete("mine")
    assert "mine" not in store.names()


def test_malformed_or_out_of_range_presets_are_clear_errors_and_others_still_list(store):
    (store.folder / "broken.yaml").write_text("temperature: [1, 2\n")
    (store.folder / "hot.yaml").write_text("temperature: 99\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        store.load("broken")
    with pytest.raises(SettingsError, match="temperature"):
        store.load("hot")
    assert {"broken", "hot", "Default"} <= set(store.names())


@pytest.mark.parametrize("name", ["../x", "con", "/tmp/evil", "a/b", ".hidden", "x\x00y"])
def test_bad_preset_names_write_nothing_anywhere(store, tmp_path, name):
    before = set(p for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidNameError):
        store.save(name, SamplingParams())
    assert set(p for p in tmp_path.rglob("*")) == before
