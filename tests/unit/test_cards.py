"""TavernAI / SillyTavern cards: every variant imports, exports round-trip, bad cards are refused cleanly."""

import base64
import io
import json
import shutil

import pytest
import yaml
from PIL import Image

from cardkit import V1, b64, lorebook, png, png_card, v2_card, v3_card
from webui.characters.cards import MAX_CARD_BYTES, card_png, read_card
from webui.characters.character import Character
from webui.characters.lorebook import MAX_ENTRIES
from webui.characters.store import CharacterStore
from webui.chat.service import greeting_message
from webui.errors import CardError
from webui.settings import PROJECT_DIR


@pytest.fixture
def store(tmp_path):
    return CharacterStore(tmp_path / "user" / "characters")


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def files_outside(tmp_path, store):
    return sorted(p for p in tmp_path.rglob("*") if p.is_file() and store.folder not in p.parents)


def test_v1_json_card(store, tmp_path):
    result = store.import_file(write(tmp_path, "aria.json", json.dumps(V1).encode()))
    ch = store.load(result.file_name)
    assert result.file_name == "Aria" and ch.name == "Aria"
    assert ch.context == V1["description"] and ch.personality == "calm, dry humour"
    assert ch.scenario == V1["scenario"] and ch.greeting == V1["first_mes"] and ch.examples == V1["mes_example"]
    text = ch.system_text("Bob")
    assert "Aria is a lighthouse keeper." in text and "Aria's personality: calm, dry humour" in text
    assert "Scenario: A stormy night" in text and "Bob: Is the lamp lit?" in text and "<START>" not in text


def test_v2_json_card_keeps_every_field(store, tmp_path):
    result = store.import_file(write(tmp_path, "card.json", json.dumps(v2_card()).encode()))
    ch = store.load(result.file_name)
    assert ch.system_prompt == "You are {{char}}. {{original}}"
    assert ch.system_prompt_with("Be brief.", "Bob") == "You are Aria. Be brief."
    assert ch.post_history_instructions == "Stay in character."
    assert ch.alternate_greetings == ["Another storm, {{user}}?", "Tea is on the stove."]
    assert ch.creator_notes.startswith("Best with a slow burn") and ch.tags == ["sea", "mystery"]
    assert ch.extensions == {"talkativeness": "0.5", "some_tool": {"colour": "blue"}}  # unknown extensions kept
    assert ch.character_book.entries[0].keys == ["kraken"]
    saved = yaml.safe_load(store.path(result.file_name).read_text())
    assert saved["extensions"]["some_tool"] == {"colour": "blue"} and saved["name"] == "Aria"
    # creator notes never reach the model
    assert "slow burn" not in ch.system_text("Bob") and "slow burn" not in ch.system_prompt_with("", "Bob")
    # the alternate greetings are versions of the first message
    first = greeting_message(ch, "Bob")
    assert first.versions == ["Welcome in, Bob. Mind the puddles.", "Another storm, Bob?", "Tea is on the stove."]
    assert first.content == first.versions[0]


def test_v2_png_card_becomes_character_and_picture(store, tmp_path):
    result = store.import_file(write(tmp_path, "aria.png", png_card(v2_card(), size=(40, 30))))
    ch = store.load(result.file_name)
    assert ch.greeting.startswith("Welcome in") and ch.picture == store.folder / "Aria.png"
    with Image.open(ch.picture) as im:
        assert im.size == (40, 30) and im.getpixel((1, 1))[:3] == (200, 30, 30)
        assert "chara" not in im.info  # the stored picture is a plain picture
    assert result.warnings == []


@pytest.mark.parametrize("variant", ["text", "itxt", "ztxt"])
def test_v3_ccv3_chunk_is_preferred_over_chara(store, tmp_path, variant):
    chunks = {"ccv3": b64(v3_card(name="Aria Three")), "chara": b64(v2_card(name="Aria Two"))}
    data = png(**{variant: chunks})
    result = store.import_file(write(tmp_path, "card.png", data))
    ch = store.load(result.file_name)
    assert ch.name == "Aria Three" and ch.extra == {"nickname": "Ari"}


def test_broken_ccv3_falls_back_to_chara_with_a_warning(store, tmp_path):
    data = png(text={"ccv3": "%%%not base64%%%", "chara": b64(v2_card())})
    result = store.import_file(write(tmp_path, "card.png", data))
    assert result.character.name == "Aria" and "not valid base64" in result.warnings[0]


def test_pygmalion_json_and_textgen_yaml_import(store, tmp_path):
    pyg = {
        "char_name": "Pip",
        "char_persona": "{{char}} is a parrot.",
        "world_scenario": "A ship.",
        "example_dialogue": "{{user}}: Hi\n{{char}}: Squawk!",
        "char_greeting": "Ahoy!",
    }
    ch = store.load(store.import_file(write(tmp_path, "pip.json", json.dumps(pyg).encode())).file_name)
    assert (ch.name, ch.context, ch.scenario, ch.greeting) == ("Pip", "{{char}} is a parrot.", "A ship.", "Ahoy!")
    assert ch.examples.endswith("Squawk!")
    tutor = (PROJECT_DIR / "characters" / "Tutor.yaml").read_bytes()
    ch = store.load(store.import_file(write(tmp_path, "Tutor.yaml", tutor)).file_name)
    original = yaml.safe_load(tutor)
    assert (ch.name, ch.greeting, ch.context, ch.examples) == (
        original["name"],
        original["greeting"],
        original["context"],
        original["examples"],
    )
    tg_json = {"name": "Nia", "greeting": "Hello", "context": "{{char}} helps."}
    ch = store.load(store.import_file(write(tmp_path, "nia.json", json.dumps(tg_json).encode())).file_name)
    assert (ch.name, ch.greeting, ch.context) == ("Nia", "Hello", "{{char}} helps.")


def test_old_yaml_files_load_and_save_unchanged(store):
    store.folder.mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "characters" / "Tutor.yaml", store.folder / "Tutor.yaml")
    before = yaml.safe_load((store.folder / "Tutor.yaml").read_text())
    store.save("Tutor", store.load("Tutor"))
    assert yaml.safe_load((store.folder / "Tutor.yaml").read_text()) == before


def comparable(ch: Character) -> dict:
    return {k: v for k, v in ch.__dict__.items() if k != "picture"} | {
        "character_book": ch.character_book.to_json() if ch.character_book else None
    }


@pytest.mark.parametrize("fmt", ["png", "json"])
def test_export_then_import_gives_the_same_character(store, tmp_path, fmt):
    first = store.import_file(write(tmp_path, "aria.png", png_card(v3_card(), "ccv3")))
    exported = store.export_card(first.file_name, fmt)
    other = CharacterStore(tmp_path / "other")
    second = other.import_file(write(tmp_path, f"export.{fmt}", exported))
    assert comparable(other.load(second.file_name)) == comparable(store.load(first.file_name))
    if fmt == "png":
        with Image.open(io.BytesIO(exported)) as im:
            assert im.size == (48, 64)  # the character's own picture carries the card


def test_exported_json_is_a_complete_v2_card(store, tmp_path):
    store.save("Zed", Character(name="Zed", context="desc", greeting="hi"))
    card = json.loads(store.export_card("Zed", "json"))
    assert card["spec"] == "chara_card_v2" and card["spec_version"] == "2.0"
    required = {
        "name": str,
        "description": str,
        "personality": str,
        "scenario": str,
        "first_mes": str,
        "mes_example": str,
        "creator_notes": str,
        "system_prompt": str,
        "post_history_instructions": str,
        "alternate_greetings": list,
        "tags": list,
        "creator": str,
        "character_version": str,
        "extensions": dict,
    }
    for key, kind in required.items():
        assert isinstance(card["data"][key], kind), key
    assert card["name"] == "Zed" and card["first_mes"] == "hi"  # V1 fields too, as SillyTavern writes them
    png_bytes = store.export_card("Zed", "png")
    with Image.open(io.BytesIO(png_bytes)) as im:
        assert json.loads(base64.b64decode(im.info["chara"]))["data"]["name"] == "Zed"
        assert json.loads(base64.b64decode(im.info["ccv3"]))["spec"] == "chara_card_v3"


def test_dropped_card_files_are_listed_and_load(store):
    store.folder.mkdir(parents=True)
    (store.folder / "Dropped.png").write_bytes(png_card(v2_card(name="Dropped Aria")))
    (store.folder / "Other.json").write_text(json.dumps(V1))
    (store.folder / "JustAPicture.png").write_bytes(png())
    (store.folder / "Kept.yaml").write_text("name: Kept\ngreeting: hi\ncontext: x\n")
    (store.folder / "Kept.png").write_bytes(png())
    assert store.names() == ["Assistant", "Dropped", "Kept", "Other"]
    dropped = store.load("Dropped")
    assert dropped.name == "Dropped Aria" and dropped.picture == store.folder / "Dropped.png"
    assert store.load("Other").greeting == V1["first_mes"]


# ----- bad input ------------------------------------------------------------------------------
def test_png_without_card(store, tmp_path):
    with pytest.raises(CardError, match="without a character card"):
        store.import_file(write(tmp_path, "cat.png", png()))
    assert not store.folder.exists()


def test_broken_base64_and_broken_json(store, tmp_path):
    with pytest.raises(CardError, match="not valid base64"):
        store.import_file(write(tmp_path, "a.png", png(text={"chara": "@@@ not base64 @@@"})))
    bad_json = base64.b64encode(b'{"name": "x", "description": ').decode()
    with pytest.raises(CardError, match="not valid JSON"):
        store.import_file(write(tmp_path, "b.png", png(text={"chara": bad_json})))
    with pytest.raises(CardError, match="not valid JSON"):
        store.import_file(write(tmp_path, "c.json", b'{"name": "x",'))
    not_card = base64.b64encode(b'["a list"]').decode()
    with pytest.raises(CardError, match="not a character card"):
        store.import_file(write(tmp_path, "d.png", png(text={"chara": not_card})))
    with pytest.raises(CardError, match="not a character card"):
        store.import_file(write(tmp_path, "e.json", b'{"hello": "world"}'))
    assert not store.folder.exists()


def test_50_mb_file_is_refused_before_reading(store, tmp_path):
    big = tmp_path / "huge.png"
    with open(big, "wb") as f:
        f.write(png_card(v2_card()))
        f.truncate(50 * 2**20)
    assert big.stat().st_size > MAX_CARD_BYTES
    with pytest.raises(CardError, match=r"50\.0 MB; character files up to 16 MB"):
        store.import_file(big)


def test_huge_picture_is_skipped_without_decoding(store, tmp_path, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("the pixels were decoded"))
    result = store.import_file(write(tmp_path, "big.png", png_card(v2_card(), size=(5000, 4000))))
    assert result.character.picture is None and "5000x4000 pixels" in result.warnings[0]


def test_card_name_with_path_parts_stays_inside_the_folder(store, tmp_path):
    upload = write(tmp_path, "evil.png", png_card(v2_card(name="../../x")))
    before = files_outside(tmp_path, store)
    result = store.import_file(upload)
    after = files_outside(tmp_path, store)
    assert after == before
    assert "/" not in result.file_name and (store.folder / f"{result.file_name}.yaml").is_file()
    assert result.character.name == "../../x"  # the name shown is the card's; only the file name changed
    assert "Saved as" in result.warnings[0]
    # importing the same card again never overwrites the first one
    again = store.import_file(write(tmp_path, "evil.png", png_card(v2_card(name="../../x"))))
    assert again.file_name != result.file_name


def test_lorebook_with_10000_entries_is_refused_clearly(store, tmp_path):
    entries = [{"keys": [f"k{i}"], "content": f"c{i}"} for i in range(10_000)]
    card = v2_card(character_book=lorebook(*entries))
    with pytest.raises(CardError, match=f"10,000 entries; at most {MAX_ENTRIES:,}"):
        store.import_file(write(tmp_path, "big.json", json.dumps(card).encode()))
    assert not store.folder.exists()


def test_truncated_png_and_non_card_text(store, tmp_path):
    data = png_card(v2_card())
    with pytest.raises(CardError):
        read_card("cut.png", data[:60])  # cut inside the text chunk
    with pytest.raises(CardError, match="not a character card"):
        read_card("notes.txt", b"just some words")


def test_card_png_of_a_character_without_picture(tmp_path):
    data = card_png(Character(name="Plain", greeting="hi"))
    character, picture, warnings = read_card("plain.png", data)
    assert character.greeting == "hi" and picture is not None and warnings == []


def nested_card_text(depth: int) -> str:
    """A V2 card whose ``extensions`` nest ``depth`` objects deep (written as text: json.dumps would overflow)."""
    head = json.dumps(v2_card(extensions={}))
    nested = '{"a": ' * depth + "{}" + "}" * depth
    return head.replace('"extensions": {}', f'"extensions": {nested}')


def store_files(store):
    return {p.name: p.read_bytes() for p in store.folder.iterdir()} if store.folder.exists() else {}


@pytest.mark.parametrize("depth", [300, 5000])
@pytest.mark.parametrize("fmt", ["json", "png", "yaml"])
def test_deeply_nested_card_is_refused_clearly(store, tmp_path, depth, fmt):
    store.save("Kept", Character(name="Kept", greeting="hi"))
    before = store_files(store)
    text = nested_card_text(depth)
    if fmt == "json":
        upload = write(tmp_path, "deep.json", text.encode())
    elif fmt == "png":
        upload = write(tmp_path, "deep.png", png(text={"chara": base64.b64encode(text.encode()).decode()}))
    else:  # JSON is YAML too (flow style): the YAML path gets the same card
        upload = write(tmp_path, "deep.yaml", text.encode())
    with pytest.raises(CardError, match="nested too deeply") as info:
        store.import_file(upload)
    assert info.value.code == "invalid_card" and not isinstance(info.value.__cause__, RecursionError)
    assert store_files(store) == before and store.names() == ["Assistant", "Kept"]


def test_deep_yaml_in_block_style_and_cards_of_usual_depth(store, tmp_path):
    block = (
        "name: Deep\ncontext: x\nextensions:\n"
        + "".join("  " * (i + 1) + "a:\n" for i in range(300))
        + "  " * 301
        + "b: 1\n"
    )
    with pytest.raises(CardError, match="nested too deeply"):
        store.import_file(write(tmp_path, "block.yaml", block.encode()))
    # a card nested like real ones (a lorebook entry's own extensions) still imports
    result = store.import_file(write(tmp_path, "ok.json", nested_card_text(30).encode()))
    assert store.load(result.file_name).extensions["a"]["a"]["a"] is not None


def test_yaml_aliases_that_repeat_a_list_a_billion_times_are_refused(store, tmp_path):
    text = "name: Laughs\ncontext: x\nl0: &l0 [" + ", ".join(["lol"] * 100) + "]\n"
    for i in range(1, 9):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 100) + "]\n"
    with pytest.raises(CardError, match="more than .* values"):
        store.import_file(write(tmp_path, "laughs.yaml", text.encode()))
    assert not store.folder.exists()
