"""The Model tab's embedding-model panel in Chromium: pick, Load, read the status, Unload; the choice is remembered.

The panel is served on its own (a Blocks holding only it, over the real services and a real embedding
model, all-MiniLM-L6-v2 as a GGUF), so it is tested whatever the Model tab around it looks like.
"""

from __future__ import annotations

import threading

import fastapi
import gradio as gr
import pytest
import uvicorn

from browserkit import choose, wait_text
from embedding_models import MINILM_GGUF, ensure_minilm_gguf
from server_process import free_port
from testdata import MODELS_DIR, PROJECT_DIR, SMOLLM
from webui.services import Services
from webui.settings import Settings
from webui.storage import read_yaml
from webui.ui.embeddings_panel import build_embeddings_panel
from webui.ui.i18n import gradio_i18n

pytestmark = pytest.mark.browser


@pytest.fixture
def panel_app(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / MINILM_GGUF).symlink_to(ensure_minilm_gguf())
    (models / SMOLLM).symlink_to(MODELS_DIR / SMOLLM)
    settings = Settings(user_data_dir=tmp_path / "user", model_dir=models, language="en")
    services = Services.build(settings, tmp_path / "settings.yaml")
    with gr.Blocks() as demo:
        demo.i18n_instance = gradio_i18n("en")
        build_embeddings_panel(services, open=True)
    app = gr.mount_gradio_app(fastapi.FastAPI(), demo, path="", i18n=demo.i18n_instance)
    port = free_port()
    # lifespan on: Gradio starts its event queue there (Load and Unload are queued events)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            threading.Event().wait(0.05)
        yield f"http://127.0.0.1:{port}", services, tmp_path / "settings.yaml"
    finally:
        server.should_exit = True
        thread.join(30)
        services.close()


def test_load_and_unload_the_embedding_model(browser, panel_app):
    url, services, settings_file = panel_app
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    page.set_default_timeout(60_000)
    page.goto(url + "/")
    wait_text(page, "#embeddings-status", "No embedding model loaded")
    # an embedding model is picked first (its name says so), not the chat model
    assert page.locator("#embeddings-model input").input_value() == MINILM_GGUF
    page.locator("#embeddings-load").click()
    wait_text(page, "#embeddings-status", "384 dimensions")
    status = page.locator("#embeddings-status").inner_text()
    assert MINILM_GGUF in status and "llama.cpp" in status and "mean pooling" in status
    assert services.embeddings.current.name == MINILM_GGUF
    assert read_yaml(settings_file)["embedding_model"] == MINILM_GGUF  # loaded again at the next start
    (PROJECT_DIR / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(PROJECT_DIR / "test-artifacts" / "embeddings-panel.png"))
    page.reload()  # a page opened later shows what is loaded now
    wait_text(page, "#embeddings-status", "384 dimensions")
    page.locator("#embeddings-unload").click()
    wait_text(page, "#embeddings-status", "No embedding model loaded")
    assert services.embeddings.current is None and read_yaml(settings_file)["embedding_model"] is None
    choose(page, "embeddings-model", SMOLLM)  # a chat model's GGUF works too (mean of its token vectors)
    page.locator("#embeddings-load").click()
    wait_text(page, "#embeddings-status", "576 dimensions")
    page.close()
