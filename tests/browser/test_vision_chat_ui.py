"""An image attached in the Chat tab reaches a vision model, in Chromium.

The model is the tests' tiny random-weight SmolVLM (GGUF + mmproj, ``tests/vlm_models.py``): its
words are noise, so the test checks the plumbing a person sees - the chip counts the image's tokens
with no "cannot see" mark, the sent message shows the picture, the prompt view shows where the image
goes, the context meter counts its tokens, and the chat file keeps it.
"""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest

from browserkit import choose, open_chat, open_parameters, press_load, reload, set_number, wait_text
from harness import make_dirs, start_server, stop_server

pytestmark = pytest.mark.browser

CHIPS = "#chat-attachments .att-chip"
PASTE_JS = """([bytes]) => {
  const dt = new DataTransfer();
  dt.items.add(new File([new Uint8Array(bytes)], 'photo.png', { type: 'image/png' }));
  const box = document.querySelector('#chat-input textarea');
  box.focus();
  box.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vlm_models import ensure_tiny_vlm_gguf

    model, projector = ensure_tiny_vlm_gguf()
    root = tmp_path_factory.mktemp("vision-ui")
    model_dir, user_dir = make_dirs(root)
    folder = model_dir / "tiny-smolvlm"
    folder.mkdir()
    shutil.copy(model, folder / model.name)
    shutil.copy(projector, folder / projector.name)
    srv = start_server(root, model_dir, user_dir)
    yield srv
    stop_server(srv)


def png_bytes() -> list[int]:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 160, 60)).save(out, format="PNG")
    return list(out.getvalue())


def test_an_image_goes_to_a_vision_model_and_shows_in_the_chat(page, server):
    choose(page, "model-dropdown", "tiny-smolvlm")
    press_load(page)
    wait_text(page, "#model-info", "yes (projector mmproj-")
    open_parameters(page)
    set_number(page, "param-max_tokens", "4")
    page.locator("#param-do_sample input[type=checkbox]").uncheck()
    open_chat(page)
    page.locator("#chat-new").click()

    box = page.locator("#chat-input textarea")
    box.fill("Describe the picture.")
    page.evaluate(PASTE_JS, [png_bytes()])
    page.wait_for_function("() => document.querySelectorAll('#chat-attachments .att-chip').length === 1")
    chip = page.locator(CHIPS).inner_text()
    match = re.search(r"photo\.png · 64×48 · (\d+) tokens", chip)
    assert match and "cannot see" not in chip, chip
    image_tokens = int(match.group(1))
    assert page.locator(f"{CHIPS}.att-warn").count() == 0

    box.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length > 0")
    page.wait_for_function("() => !document.querySelector('#chat-send').classList.contains('generating')")
    # the sent message shows the picture itself
    page.wait_for_function(
        "() => { const i = document.querySelector('#chat-box [data-testid=user] img');"
        " return i && i.complete && i.naturalWidth === 64; }"
    )
    # the context meter counts the image's tokens with the text
    meter = page.inner_text("#chat-meter")
    used = int(re.search(r"Context: (\d+) /", meter).group(1))
    assert used > image_tokens + 5, meter
    # the prompt view shows where the image goes
    page.get_by_text("Show prompt", exact=True).click()
    page.locator("#chat-show-prompt").click()
    page.wait_for_function("() => document.querySelector('#chat-prompt').innerText.includes('<__media__>')")
    prompt = page.locator("#chat-prompt").inner_text()
    assert prompt.index("<__media__>") < prompt.index("Describe the picture.")

    # saved with the chat, shown again after a reload
    saved = [
        json.loads(p.read_text())
        for p in (server.user_dir / "logs" / "chats" / "Assistant").glob("*.json")
        if not p.name.startswith(".")
    ]
    (chat,) = [c for c in saved if c["messages"] and c["messages"][0]["content"] == "Describe the picture."]
    (record,) = chat["messages"][0]["attachments"]
    assert record["kind"] == "image" and record["tokens"] == image_tokens and record["width"] == 64
    reload(page)
    open_chat(page)
    page.wait_for_function(
        "() => { const i = document.querySelector('#chat-box [data-testid=user] img');"
        " return i && i.complete && i.naturalWidth === 64; }"
    )
