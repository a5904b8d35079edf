"""curl -d '{...}' sends JSON as a form (curl's default type): the API reads it as the JSON it is, as
llama.cpp's server does, instead of answering "Input should be a valid dictionary" (found by following the
README's own curl lines)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from webui.app import create_app
from webui.services import Services
from webui.settings import Settings

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends


def test_a_json_body_sent_as_curls_default_form_type_is_read_as_json(user_dir):
    client = TestClient(create_app(Services.build(Settings(user_data_dir=user_dir, api=True))))
    body = json.dumps({"model_name": "Missing-Model.gguf"})
    for headers in (FORM, {}):
        r = client.post("/v1/internal/model/load", content=body, headers=headers)
        assert r.status_code == 404, r.text  # the request was understood: the model is not there
        assert "Missing-Model.gguf" in r.json()["error"]["message"]
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    r = client.post("/v1/chat/completions", content=json.dumps(chat), headers=FORM)
    assert r.json()["error"]["code"] == "no_model_loaded", r.text
    # a body that is not JSON gets the parser's error, not a silent guess
    r = client.post("/v1/internal/model/load", content="model_name=x", headers=FORM)
    assert r.status_code == 400 and "json" in r.json()["error"]["message"].lower(), r.text
