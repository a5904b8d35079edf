"""pydantic ``Field(ge=.., le=..)`` through the openai SDK's ``parse()`` (issue 17).

``parse()`` sends a strict schema, and pydantic writes ``minimum``/``maximum`` for every bounded
field: the server must enforce the bounds in the grammar (once a 400), so even a 135M model that
would happily rate something 10 out of 5 returns a value in range.
"""

from __future__ import annotations

import openai
import pytest
from pydantic import BaseModel, Field

from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration


class Rating(BaseModel):
    stars: int = Field(ge=1, le=5)
    comment: str


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("bounded")
    srv = start_server(root, *make_dirs(root), "--api", "--model", SMOLLM, ctx_size=2048)
    yield openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    stop_server(srv)


@pytest.mark.parametrize(
    "ask",
    [
        "Rate the movie Titanic from 1 to 5 stars with a very short comment. Reply in JSON.",
        "I loved this pizza, it was a 10 out of 10! Rate it with a very short comment. Reply in JSON.",
    ],
)
def test_parse_with_bounded_fields_returns_a_value_in_range(client, ask):
    schema = Rating.model_json_schema()["properties"]["stars"]
    assert (schema["minimum"], schema["maximum"]) == (1, 5)  # what the request carries
    r = client.chat.completions.parse(
        model=SMOLLM,
        messages=[{"role": "user", "content": ask}],
        response_format=Rating,
        temperature=0,
        max_tokens=40,
    )
    rating = r.choices[0].message.parsed
    assert isinstance(rating, Rating), r.choices[0].message.content
    assert 1 <= rating.stars <= 5


def test_bounds_no_value_meets_are_a_clear_400(client):
    class Impossible(BaseModel):
        n: int = Field(ge=3, le=2)

    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.parse(
            model=SMOLLM, messages=[{"role": "user", "content": "Hi"}], response_format=Impossible, max_tokens=8
        )
    assert "no integer meets" in str(info.value) and "properties.n" in str(info.value)
