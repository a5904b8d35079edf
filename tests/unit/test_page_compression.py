"""The page goes out gzip-compressed (Gradio writes about 2.3 MB of config, translations and endpoint
descriptions into it); everything else passes as it was, so no streamed token waits in a compressor."""

from __future__ import annotations

from fastapi.testclient import TestClient

from webui.app import create_app
from webui.services import Services
from webui.settings import Settings


def test_the_page_is_sent_compressed_and_other_answers_are_not(user_dir):
    client = TestClient(create_app(Services.build(Settings(user_data_dir=user_dir))))
    page = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200
    assert page.headers.get("content-encoding") == "gzip"
    assert "window.gradio_config" in page.text  # (the client unpacks it)
    sent = int(page.headers["content-length"])
    assert sent * 5 < len(page.content), (sent, len(page.content))
    config = client.get("/config", headers={"Accept-Encoding": "gzip"})
    assert config.headers.get("content-encoding") == "gzip" and config.json()["components"]
    # a browser that does not ask for gzip gets the page as it is
    plain = client.get("/", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and "window.gradio_config" in plain.text
