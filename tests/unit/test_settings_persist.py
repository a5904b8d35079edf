"""What the user chooses is written to settings.yaml and read back at start; loaders grey out parameters."""

from pathlib import Path

import yaml

from fakes import FakeBackend
from webui.models.manager import LoadedModel
from webui.params import LoadOptions, SamplingParams
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
    """The greyed-out list is the loaded backend's own declaration (supported_params), not a table of names."""
    from webui.loaders.llamacpp import LlamaCppBackend
    from webui.loaders.transformers import TransformersBackend

    services = Services.build(Settings(user_data_dir=user_dir))
    assert all(u["interactive"] for u in interactivity(services))

    class LikeTransformers(FakeBackend):
        supported_params = TransformersBackend.supported_params

    class LikeLlamaCpp(FakeBackend):
        supported_params = LlamaCppBackend.supported_params

    services.models._loaded = {
        "x": LoadedModel("x", "any-name", LoadOptions(), LikeTransformers(tmp_path / "x", 64), 0.1)
    }
    services.models._main = "x"
    updates = dict(zip(ORDER, interactivity(services), strict=True))
    assert updates["dry_multiplier"]["interactive"] is False
    assert updates["mirostat_mode"]["interactive"] is False
    assert updates["temperature"]["interactive"] is True
    assert "dry_multiplier" in loader_note(services)
    services.models._loaded = {"x": LoadedModel("x", "any-name", LoadOptions(), LikeLlamaCpp(tmp_path / "x", 64), 0.1)}
    assert all(u["interactive"] for u in interactivity(services))


def test_each_setting_is_one_field_in_yaml_env_and_command_line(tmp_path):
    """A settings.yaml key, its WEBUI_ variable and its flag give the same Settings (derived from one field)."""
    import server
    from webui.settings import options

    yaml_data: dict = {"load": {}}
    env: dict[str, str] = {}
    argv: list[str] = []
    for option in options():
        if option.scope == "launch":  # start-only options: no settings.yaml key
            continue
        default = option.field.get_default(call_default_factory=True)
        if option.is_switch:  # the other way than the default
            value = not default
            argv.append(option.flags[0] if value else "--no-" + option.flags[0][2:])
        else:
            raw = {
                "device": "mps",
                "language": "zh",
                "loader": "transformers",
                "dtype": "float16",
                "remote_api": "chat",
                "cache_type": "q8_0",
            }.get(option.name, str(tmp_path) if "dir" in option.name or "path" in option.name else "3")
            value = option.convert(raw)
            argv += [option.flags[-1], raw]
        env[option.env[0]] = str(value)
        (yaml_data["load"] if option.scope == "load" else yaml_data)[option.name] = (
            str(value) if isinstance(value, Path) else value
        )
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(yaml_data))
    from_yaml = Settings.from_file(settings_file)
    from_env = Settings.from_file(None, server.read_options([], env)[0])
    from_cli = Settings.from_file(None, server.read_options(argv, {})[0])
    assert from_yaml == from_env == from_cli
    assert from_cli.load.n_ctx == 3 and from_cli.load.use_mmap is False and from_cli.listen is True
