"""What the user chooses is written to settings.yaml and read back at start; loaders grey out parameters."""
import yaml
from fakes import FakeBackend

from webui.params import LoadOptions
from webui.models.manager import LoadedModel
from webui.params import SamplingParams
from webui.services import Services
from webui.settings import Settings
from webui.ui.parameters_tab import ORDER, interactivity, loader_note, params_from_values, values_of


def test_remember_writes_only_its_keys_and_keeps_the_rest(user_dir):
    path = user_dir / "settings.yaml"
    path.write_text("listen_port: 9999\n# a comment\n")
    services = Services.build(Settings(user_data_dir=user_dir))
    services.remember(preset="Chat", params={"seed": 5}, load=LoadOptions(n_ctx=1024))
    data = yaml.safe_load(path.read_text())
    assert data["listen_port"] == 9999 and data["preset"] == "Chat" and data["params"] == {"seed": 5}
    assert data["load"]["n_ctx"] == 1024
    again = Settings.from_file(path)
    assert again.preset == "Chat" and again.load.n_ctx == 1024
    assert Services.build(again).initial_params().seed == 5


def test_new_user_folder_gets_the_shipped_presets_and_grammars(user_dir):
    services = Services.build(Settings(user_data_dir=user_dir))
    assert "Deterministic" in services.presets.names()
    assert "json.gbnf" in services.grammar_names()
    assert "root" in services.read_grammar("json.gbnf")


def test_bad_saved_params_fall_back_to_defaults(user_dir):
    services = Services.build(Settings(user_data_dir=user_dir, params={"temperature": 99}))
    assert services.initial_params() == SamplingParams()


def test_component_values_round_trip():
    params = SamplingParams(stop=["\n", 'say "hi"'], dry_sequence_breakers=["\n"], temperature=0.2, top_k=3)
    values = values_of(params)
    values[ORDER.index("top_k")] = 3.0  # sliders hand back floats
    assert params_from_values(values) == params


def test_parameters_a_loader_cannot_use_are_disabled(user_dir, tmp_path):
    services = Services.build(Settings(user_data_dir=user_dir))
    assert all(u["interactive"] for u in interactivity(services))
    backend = FakeBackend(tmp_path / "x", 64)
    services.models._current = LoadedModel("x", "transformers", LoadOptions(), backend, 0.1)
    updates = dict(zip(ORDER, interactivity(services)))
    assert updates["dry_multiplier"]["interactive"] is False
    assert updates["grammar_string"]["interactive"] is False
    assert updates["temperature"]["interactive"] is True
    assert "dry_multiplier" in loader_note(services)
    services.models._current = LoadedModel("x", "llama.cpp", LoadOptions(), backend, 0.1)
    assert all(u["interactive"] for u in interactivity(services))
