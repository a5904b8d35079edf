"""Ollama Modelfiles: import (character + preset + model), warnings for the rest, export round trip."""

import pytest

from webui.characters.modelfile import (
    export_modelfile,
    looks_like_modelfile,
    match_model,
    modelfile_character,
    parse_modelfile,
)
from webui.errors import CardError
from webui.params import SamplingParams
from webui.services import Services
from webui.settings import Settings

EXAMPLE = '''FROM mistral
SYSTEM "You are a Shakespearean assistant..."
PARAMETER temperature 0.7
TEMPLATE """[Q] {{.Input}} [A] {{.Output}}"""
'''

FULL = '''# a comment
from ./models/smol.gguf
SYSTEM """
You are Mario from Super Mario Bros.
Answer as Mario, the assistant, only.
"""
PARAMETER temperature 0.3
PARAMETER top_k 20
PARAMETER top_p 0.8
PARAMETER repeat_penalty 1.15
PARAMETER num_ctx 4096
PARAMETER num_predict 200
PARAMETER seed 42
PARAMETER mirostat 2
PARAMETER stop "<|im_end|>"
PARAMETER stop "User:"
PARAMETER num_gpu 33
PARAMETER tfs_z 1.0
PARAMETER temperature hot
MESSAGE user "Is Toronto in Canada?"
MESSAGE assistant """yes, it's-a in Canada!"""
MESSAGE tool ignored
ADAPTER ./lora.gguf
LICENSE """MIT"""
FOO bar
'''


def test_the_issue_example_imports():
    character, params, model, warnings = modelfile_character(EXAMPLE.encode(), "Modelfile")
    # a file called just "Modelfile": named after its SYSTEM text, not after FROM (a model, not a character)
    assert character.name == "Shakespearean assistant"
    assert character.context == "You are a Shakespearean assistant..."
    assert params.temperature == 0.7 and params.model_dump() == SamplingParams(temperature=0.7).model_dump()
    assert model == "mistral"
    assert character.extra["modelfile_template"] == "[Q] {{.Input}} [A] {{.Output}}"
    assert any("TEMPLATE" in w for w in warnings) and len(warnings) == 1


def test_every_kind_of_line():
    character, params, model, warnings = modelfile_character(FULL.encode(), "mario")
    assert model == "./models/smol.gguf" and character.name == "mario"
    assert character.context == "You are Mario from Super Mario Bros.\nAnswer as Mario, the assistant, only."
    assert character.examples == "{{user}}: Is Toronto in Canada?\n{{char}}: yes, it's-a in Canada!"
    assert (params.temperature, params.top_k, params.top_p, params.repeat_penalty) == (0.3, 20, 0.8, 1.15)
    assert (params.truncation_length, params.max_tokens, params.seed, params.mirostat_mode) == (4096, 200, 42, 2)
    assert params.stop == ["<|im_end|>", "User:"]
    text = "\n".join(warnings)
    for expected in (
        "num_ctx 4096",
        "num_gpu is a loading option",
        "tfs_z is not supported",
        "temperature hot",
        "role 'tool'",
        "ADAPTER is not supported",
        "LICENSE is not supported",
        "'FOO' is not a Modelfile instruction",
    ):
        assert expected in text, expected


def test_quoting_and_errors():
    mf = parse_modelfile('SYSTEM "say \\"hi\\"\\nthen stop"\nPARAMETER stop """\nUser:"""')
    assert mf.system == 'say "hi"\nthen stop' and mf.parameters == [("stop", "User:")]
    with pytest.raises(CardError, match="never closed"):
        parse_modelfile('SYSTEM """never closed\nPARAMETER temperature 1')
    assert parse_modelfile("").model is None


def test_detection():
    assert looks_like_modelfile("Modelfile", b"")
    assert looks_like_modelfile("mario.txt", b"# hi\nFROM llama3\n")
    assert not looks_like_modelfile("notes.txt", b"hello")
    assert not looks_like_modelfile("card.json", b"FROM x")


def test_from_picks_a_file_of_the_models_folder():
    names = ["SmolLM2-135M-Instruct.Q4_1.gguf", "mistral.gguf", "hf-model"]
    assert match_model("mistral", names) == "mistral.gguf"
    assert match_model("./models/SmolLM2-135M-Instruct.Q4_1.gguf", names) == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert match_model("hf-model", names) == "hf-model"
    assert match_model("llama3:8b", names) is None and match_model(None, names) is None


def test_export_then_import_gives_the_same_character_and_values():
    character, params, model, _ = modelfile_character(FULL.encode(), "mario")
    text = export_modelfile(character, params, "other.gguf")
    assert text.startswith("FROM ./models/smol.gguf\n")  # the original FROM is kept
    again, params2, model2, warnings = modelfile_character(text.encode(), "mario")
    assert again.context == character.context and again.examples == character.examples
    assert params2.model_dump() == params.model_dump() and model2 == model
    assert warnings == [w for w in warnings if "num_ctx" in w]


def test_export_of_a_card_character():
    from webui.characters.character import Character

    ch = Character(
        name="Aria",
        context="{{char}} keeps the lighthouse.",
        personality="calm",
        examples="<START>\n{{user}}: Lit?\n{{char}}: Always.",
        system_prompt="Be {{char}}.",
    )
    text = export_modelfile(ch, SamplingParams(do_sample=False, stop=["\nUser:"]), "smol.gguf")
    assert "FROM smol.gguf" in text and "PARAMETER temperature 0.0" in text
    assert 'PARAMETER stop "\\nUser:"' in text
    mf = parse_modelfile(text)
    assert mf.system.startswith("Be Aria.") and "Aria keeps the lighthouse." in mf.system
    assert "Aria's personality: calm" in mf.system and "Lit?" not in mf.system
    assert mf.messages == [("user", "Lit?"), ("assistant", "Always.")]
    assert parse_modelfile(text).parameters[-1] == ("stop", "\nUser:")


def test_services_import_saves_a_preset_and_finds_the_model(user_dir):
    models = user_dir / "models"
    models.mkdir()
    (models / "mistral.gguf").write_bytes(b"GGUF")
    services = Services.build(Settings(user_data_dir=user_dir))
    upload = user_dir / "upload" / "Modelfile"
    upload.parent.mkdir()
    upload.write_text(EXAMPLE)
    result = services.import_character(upload)
    name = "Shakespearean assistant"
    assert result.file_name == name and result.model == "mistral.gguf" and result.preset == name
    assert services.presets.load(name).params.temperature == 0.7
    assert services.characters.load(name).context.startswith("You are a Shakespearean")
    again = services.import_character(upload)  # never overwrites the first preset or character
    assert (again.file_name, again.preset) == (f"{name} (2)", f"{name} (2)")


@pytest.mark.parametrize(
    ("file_name", "text", "expected"),
    [
        ("my-tutor.Modelfile", EXAMPLE, "my-tutor"),
        ("Modelfile.bard", EXAMPLE, "bard"),
        ("Study buddy.modelfile", "FROM llama3\n", "Study buddy"),
        (
            "Modelfile",
            'FROM mistral\nSYSTEM """You are a patient maths tutor. Explain step by step."""\n',
            "Patient maths tutor",
        ),
        ("Modelfile", "FROM mistral\nPARAMETER temperature 0.2\n", "Modelfile character"),
        ("Modelfile.txt", "FROM mistral\n", "Modelfile character"),
    ],
)
def test_an_imported_modelfile_is_named_after_its_file(user_dir, file_name, text, expected):
    """The name the user gave the file (or the SYSTEM's first words), never FROM's model name."""
    services = Services.build(Settings(user_data_dir=user_dir))
    upload = user_dir / "upload" / file_name
    upload.parent.mkdir()
    upload.write_text(text)
    result = services.import_character(upload)
    assert result.character.name == expected and result.file_name == expected
    assert services.characters.load(expected).name == expected
    if result.params is not None:
        assert result.preset == expected
