"""Character cards in the Chat tab, in Chromium: upload a PNG card, chat starts with its greeting."""

from __future__ import annotations

import base64
import json

import pytest
from playwright.sync_api import expect

from browserkit import (
    bot_texts,
    choose,
    choose_files,
    load_smollm,
    open_chat,
    open_parameters,
    send,
    set_number,
    wait_text,
)
from cardkit import png_card, v2_card
from testdata import SMOLLM

pytestmark = pytest.mark.browser


def open_import(page) -> None:
    page.get_by_text("Import / export characters").click()
    page.locator("#char-import").wait_for()


def upload(page, path) -> None:
    choose_files(page, page.locator("#char-import").click).set_files(str(path))


def test_upload_png_card_then_chat_starts_with_its_greeting(page, server, tmp_path):
    card = tmp_path / "Lighthouse Aria.png"
    card.write_bytes(png_card(v2_card(name="Aria the Keeper", first_mes="Welcome in, {{user}}. Mind the puddles.")))
    open_chat(page)
    open_import(page)
    upload(page, card)
    wait_text(page, "#char-import-message", "Imported")
    page.wait_for_function("() => document.querySelector('#chat-character input').value === 'Aria the Keeper'")
    # the greeting is the first message of the new chat; the creator's notes are shown, not sent
    wait_text(page, "#chat-box", "Welcome in, You. Mind the puddles.")
    assert len(bot_texts(page)) == 1
    wait_text(page, "#chat-creator-notes", "Best with a slow burn")
    assert (server.user_dir / "characters" / "Aria the Keeper.yaml").is_file()
    assert (server.user_dir / "characters" / "Aria the Keeper.png").is_file()

    # an alternate greeting is another version of the first message
    page.locator("#chat-next-version").click()
    wait_text(page, "#chat-box", "Another storm, You?")
    page.locator("#chat-prev-version").click()
    wait_text(page, "#chat-box", "Mind the puddles.")

    # the chat goes on from the greeting on the real model
    if server.health()["model"] != SMOLLM:
        page.get_by_role("tab", name="Model").click()
        load_smollm(page)
    open_parameters(page)
    set_number(page, "param-max_tokens", "20")
    open_chat(page)
    send(page, "Hello!")
    assert bot_texts(page)[0].startswith("Welcome in, You.") and len(bot_texts(page)) == 2
    saved = [json.loads(p.read_text()) for p in (server.user_dir / "logs" / "chats" / "Aria the Keeper").glob("*.json")]
    assert saved[0]["messages"][0]["content"] == "Welcome in, You. Mind the puddles."
    assert saved[0]["messages"][1]["content"] == "Hello!"


def test_png_without_card_shows_a_clear_error(page, server, tmp_path):
    from cardkit import png

    picture = tmp_path / "cat.png"
    picture.write_bytes(png())
    open_chat(page)
    open_import(page)
    upload(page, picture)
    page.get_by_text("without a character card inside").first.wait_for()
    assert not (server.user_dir / "characters" / "cat.yaml").exists()
    # The reason stays under the button after the pop-up has gone, and replaces an earlier import's line.
    wait_text(page, "#char-import-message", "without a character card inside")
    (tmp_path / "ok.json").write_text(json.dumps(v2_card(name="Okay")))
    upload(page, tmp_path / "ok.json")
    wait_text(page, "#char-import-message", "Imported")
    (tmp_path / "broken.json").write_text("{name: oops")
    upload(page, tmp_path / "broken.json")
    wait_text(page, "#char-import-message", "not valid JSON")
    assert "Imported" not in page.locator("#char-import-message").inner_text()


def test_export_png_card_downloads_a_card(page, server):
    open_chat(page)
    open_import(page)
    with page.expect_download() as info:
        page.locator("#char-export-png").click()
    path = info.value.path()
    from PIL import Image

    with Image.open(path) as im:
        data = json.loads(base64.b64decode(im.info["chara"]))
    assert (
        data["spec"] == "chara_card_v2" and data["data"]["name"] == page.locator("#chat-character input").input_value()
    )


def test_upload_modelfile_sets_character_and_parameters(page, server, tmp_path):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(
        'FROM mistral\nSYSTEM "You are a Shakespearean assistant..."\nPARAMETER temperature 0.35\n'
        'TEMPLATE """[Q] {{.Input}} [A] {{.Output}}"""\n'
    )
    open_chat(page)
    open_import(page)
    upload(page, modelfile)
    wait_text(page, "#char-import-message", "preset")
    message = page.locator("#char-import-message").inner_text()
    assert "TEMPLATE is kept" in message and "FROM mistral: there is no such file" in message
    # A file called just "Modelfile": named after its SYSTEM's first words, not after FROM (a model)
    name = "Shakespearean assistant"
    page.wait_for_function("(n) => document.querySelector('#chat-character input').value === n", arg=name)
    assert (server.user_dir / "presets" / f"{name}.yaml").is_file()
    open_parameters(page)
    page.wait_for_function(
        "() => Number(document.querySelector('#param-temperature input[type=number]').value) === 0.35"
    )
    expect(page.locator("#preset-dropdown input")).to_have_value(name)


def test_an_imported_modelfile_is_named_after_its_file_and_its_preset_is_shown(page, server, tmp_path):
    """Issue 16, item 9: "my-tutor.Modelfile" gives the character "my-tutor" (not FROM's "mistral"), and
    the Parameters tab's preset dropdown and name box show the imported preset, not the old one."""
    open_parameters(page)
    choose(page, "preset-dropdown", "Creative")
    expect(page.locator("#preset-name textarea")).to_have_value("Creative")
    modelfile = tmp_path / "my-tutor.Modelfile"
    modelfile.write_text('FROM mistral\nSYSTEM "You are a patient maths tutor."\nPARAMETER temperature 0.25\n')
    open_chat(page)
    open_import(page)
    upload(page, modelfile)
    wait_text(page, "#char-import-message", "preset")
    page.wait_for_function("() => document.querySelector('#chat-character input').value === 'my-tutor'")
    assert (server.user_dir / "characters" / "my-tutor.yaml").is_file()
    open_parameters(page)
    expect(page.locator("#preset-dropdown input")).to_have_value("my-tutor")
    expect(page.locator("#preset-name textarea")).to_have_value("my-tutor")
    page.wait_for_function(
        "() => Number(document.querySelector('#param-temperature input[type=number]').value) === 0.25"
    )
