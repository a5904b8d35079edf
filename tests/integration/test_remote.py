"""The remote loader against real OpenAI-compatible servers on loopback: llama-cpp-python's own
server (which we did not write) and this app's /v1 (our app as its own remote)."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from harness import _free_port, make_dirs, start_server, stop_server
from testdata import PARIS_PROMPT, SMOLLM

from webui.errors import ModelLoadError
from webui.generation.scheduler import Generator
from webui.params import LoadOptions
from webui.models.manager import ModelManager
from webui.params import SamplingParams

pytestmark = pytest.mark.integration
GREEDY = SamplingParams(do_sample=False, max_tokens=30)


@pytest.fixture(scope="module")
def llama_server(smollm_path, tmp_path_factory):
    """python -m llama_cpp.server on a free port, with an API key."""
    port = _free_port()
    log = tmp_path_factory.mktemp("peer") / "llama_server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm_path), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--api_key", "peer-key"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url + "/docs", timeout=2)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()}")
    yield url
    proc.terminate()
    proc.wait(15)


def remote(url: str, key: str = "", model: str = "") -> tuple[ModelManager, Generator]:
    models = ModelManager("/nonexistent", LoadOptions(remote_url=url, remote_key=key, remote_model=model))
    models.load("", "remote")
    return models, Generator(models)


def test_llama_cpp_server_as_remote_streams_counts_and_cancels(llama_server):
    models, gen = remote(llama_server, "peer-key")
    try:
        assert models.current.loader == "remote"
        text, stats = gen.generate(PARIS_PROMPT, GREEDY)
        assert "Paris" in text and stats.completion_tokens > 0
        backend = models.current.backend
        assert stats.prompt_tokens > 5 and backend.tokens_estimated is False  # the server's tokenizer
        job = gen.submit("Write a very long story about a dragon.\n", SamplingParams(max_tokens=1500, seed=1))
        for i, _ in enumerate(job):
            if i == 5:
                job.cancel.set()
        assert job.stats.finish_reason == "cancelled" and job.stats.completion_tokens < 100
        assert "Paris" in gen.generate(PARIS_PROMPT, GREEDY)[0]  # and the next request works
    finally:
        models.unload()


def test_remote_errors_are_clear(llama_server):
    with pytest.raises(ModelLoadError, match="refused the API key"):
        remote(llama_server, "wrong")
    with pytest.raises(ModelLoadError, match="Cannot connect"):
        remote(f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(ModelLoadError, match="address"):
        remote("not a url")


def test_our_own_api_as_remote(tmp_path):
    srv = start_server(tmp_path, *make_dirs(tmp_path), "--api-key", "own", "--model", SMOLLM)
    try:
        models, gen = remote(srv.url + "/v1", "own")
        assert models.current.name == SMOLLM or models.current.name.endswith(".gguf")
        text, _ = gen.generate(PARIS_PROMPT, GREEDY)
        assert "Paris" in text
        models.unload()
    finally:
        stop_server(srv)
