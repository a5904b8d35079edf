"""Hostile /v1 input: schemathesis cases from our own /openapi.json, valid and invalid, and huge bodies.

``WEBUI_FUZZ_CASES`` cases in all (CI: 200, full run: 3000), spread over the operations, half
valid and half invalid (schemathesis' positive and negative modes). ``max_tokens`` is capped
so the generation endpoints answer quickly. No case may get a 5xx (503 "no model" excepted, as
the fuzzer may unload it by loading a bad model... which it cannot: a failed load keeps the
model) or hang, and the server must serve a normal request afterwards.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import requests
from reltools import scale

from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration
CASES = scale("WEBUI_FUZZ_CASES", 200, 3000)
KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    srv = start_server(root, *make_dirs(root), "--model", SMOLLM, "--api-key", KEY, "--threads", "1", ctx_size=512)
    yield srv
    stop_server(srv)


def test_fuzz_v1_from_our_openapi(api):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    # Unloading takes no input to fuzz, and the server must keep its model for the other cases.
    operations = [op for op in (r.ok() for r in schema.get_all_operations()) if not op.path.endswith("/model/unload")]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/models"}
    per_run = max(1, CASES // (2 * sum(op.method.lower() == "post" for op in operations)))
    tally: Counter[str] = Counter()
    failures: list[str] = []
    session = requests.Session()

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=per_run,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case) -> None:
                if isinstance(case.body, dict) and "max_tokens" in case.body or op.path.endswith("completions"):
                    if isinstance(case.body, dict):
                        mt = case.body.get("max_tokens")
                        case.body["max_tokens"] = 2 if not isinstance(mt, int) or mt > 2 or mt < 1 else mt
                        case.body.pop("preset", None) if mode == GenerationMode.POSITIVE else None
                start = time.monotonic()
                try:
                    response = case.call(base_url=api.url, session=session, headers=AUTH, timeout=120)
                except requests.RequestException as exc:
                    failures.append(f"{op.method} {op.path}: no answer ({exc}) for {case.body!r}"[:500])
                    return
                took = time.monotonic() - start
                tally[f"{op.method.upper()} {op.path} {response.status_code}"] += 1
                if response.status_code >= 500 or took > 60:
                    failures.append(
                        f"{op.method} {op.path} -> {response.status_code} in {took:.1f}s for "
                        f"{json.dumps(case.body, default=str)[:300]}: {response.text[:300]}"
                    )

            try:
                run()
            except Unsatisfiable:
                tally[f"{op.method.upper()} {op.path} (no invalid input exists)"] += 0
    total = sum(tally.values())
    print(f"\nfuzz cases: {total} (asked {CASES}); by answer: {dict(sorted(tally.items()))}")
    assert not failures, "\n".join(failures[:20])
    assert total >= CASES * 0.8
    # still serving, with the model loaded
    r = requests.post(
        api.url + "/v1/completions",
        headers=AUTH,
        timeout=60,
        json={"prompt": "The capital of France is", "max_tokens": 3, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    assert api.health()["model"] == SMOLLM


def test_huge_bodies_refused_fast(api):
    prompt = "word " * 2_000_000  # 10 MB
    for path in ("/v1/completions", "/v1/chat/completions", "/gradio_api/queue/join"):
        body = (
            json.dumps({"prompt": prompt})
            if "chat" not in path
            else json.dumps({"messages": [{"role": "user", "content": prompt}]})
        ).encode()
        start = time.monotonic()
        r = requests.post(api.url + path, data=body, headers={**AUTH, "Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        assert time.monotonic() - start < 10
        assert "larger than this server accepts" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: counted as it arrives and cut off at the limit
        for _ in range(100):
            yield b"x" * 100_000

    start = time.monotonic()
    r = requests.post(api.url + "/v1/completions", data=chunks(), headers=AUTH, timeout=30)
    assert r.status_code == 413 and time.monotonic() - start < 10
    ok = requests.post(api.url + "/v1/completions", headers=AUTH, timeout=60, json={"prompt": "Hello", "max_tokens": 1})
    assert ok.status_code == 200
