"""POST /v1/embeddings on real models through a real server.py, driven by the clients RAG users run:
the ``openai`` SDK (``client.embeddings.create``) and LangChain's ``OpenAIEmbeddings``.

Models:
- all-MiniLM-L6-v2 (the ``minilm`` starter: a sentence-transformers folder, 384 dimensions) on the
  transformers kind, and the same model converted to GGUF by llama.cpp's converter on the llama.cpp
  kind. They must agree: two implementations of one model.
- SmolLM2-135M-Instruct (a chat model, no pooling declared): mean pooling of its token vectors. Its
  vectors all lie close together (cosines 0.65-0.95), but a paraphrase still ranks above an unrelated
  sentence on the pairs below (margins 0.12-0.30 measured, on the GGUF and on the transformers copy);
  one pair we tried ("The weather is sunny and warm today." / "It is a bright, hot day." / "She wrote a
  long novel about the war.") is a near tie (margin 0.004) on it and is left out for SmolLM2 only.

LangChain: ``OpenAIEmbeddings`` by default counts tokens with tiktoken and sends OpenAI's token ids, which
mean other words to a local model; the server refuses them with a message saying to set
``check_embedding_ctx_length=False`` (what LangChain's own docs say for OpenAI-compatible servers), and
that is the configuration tested here. (The default configuration cannot even be run on these machines:
tiktoken downloads its vocabulary from the internet. What it would send is sent with the openai SDK.)
"""

from __future__ import annotations

import base64
import threading

import httpx
import numpy as np
import openai
import pytest

from embedding_models import MINILM, MINILM_GGUF, ensure_minilm_gguf, minilm_folder
from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration

#: (sentence, a paraphrase, an unrelated sentence)
PAIRS = [
    ("A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch.", "Interest rates rose again this quarter."),
    (
        "How do I bake bread at home?",
        "What is a simple recipe for homemade bread?",
        "The train to Berlin leaves at noon.",
    ),
    ("He is learning to play the piano.", "He takes piano lessons.", "The volcano erupted last night."),
    ("Paris is the capital of France.", "France's capital city is Paris.", "Bananas are rich in potassium."),
    (
        "The children are playing football in the park.",
        "Kids play soccer in the park.",
        "The server returned an error code.",
    ),
    (
        "My laptop battery drains very quickly.",
        "The battery of my notebook computer runs out fast.",
        "We planted tomatoes in the garden.",
    ),
]
#: A near tie on SmolLM2 (see the docstring): only the embedding model must rank it.
WEATHER = ("The weather is sunny and warm today.", "It is a bright, hot day.", "She wrote a long novel about the war.")
SMOLLM_HF = "SmolLM2-135M-Instruct-hf"


@pytest.fixture(scope="module")
def server(tmp_path_factory, hf_checkpoint):
    try:
        folder = minilm_folder()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    root = tmp_path_factory.mktemp("embeddings")
    model_dir, user_dir = make_dirs(root)
    (model_dir / MINILM).symlink_to(folder)
    (model_dir / MINILM_GGUF).symlink_to(ensure_minilm_gguf())
    (model_dir / SMOLLM_HF).symlink_to(hf_checkpoint)
    srv = start_server(root, model_dir, user_dir, "--api", "--model", SMOLLM, "--embedding-model", MINILM)
    yield srv
    stop_server(srv)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


def use(server, name: str) -> dict:
    r = httpx.post(server.url + "/v1/internal/embedding-model/load", json={"model_name": name}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def vectors(client, texts: list[str], **kwargs) -> np.ndarray:
    r = client.embeddings.create(model=MINILM, input=texts, **kwargs)
    return np.array([d.embedding for d in sorted(r.data, key=lambda d: d.index)])


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def assert_paraphrases_rank_first(v: np.ndarray, pairs: list[tuple[str, str, str]], margin: float) -> None:
    for i, (sentence, _, _) in enumerate(pairs):
        a, para, other = v[3 * i : 3 * i + 3]
        assert cos(a, para) - cos(a, other) > margin, (sentence, cos(a, para), cos(a, other))


def test_openai_sdk_unit_vectors_that_rank_paraphrases_with_usage(server, client):
    from transformers import AutoTokenizer

    assert use(server, MINILM) == {
        "model": MINILM,
        "kind": "transformers",
        "dimensions": 384,
        "n_ctx": 256,  # sentence-transformers' max_seq_length for this model
        "pooling": "mean",
    }
    texts = [t for p in (*PAIRS, WEATHER) for t in p]
    r = client.embeddings.create(model="text-embedding-3-small", input=texts)  # the SDK asks for base64
    assert r.model == MINILM and [d.index for d in r.data] == list(range(len(texts)))
    v = np.array([d.embedding for d in r.data])
    assert v.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    alone = vectors(client, [texts[0]])[0]
    assert abs(cos(alone, v[0]) - 1) < 1e-5  # the same sentence, alone or among 23 others
    assert_paraphrases_rank_first(v, [*PAIRS, WEATHER], margin=0.3)
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    assert r.usage.prompt_tokens == sum(len(tokenizer(t)["input_ids"]) for t in texts)
    assert r.usage.total_tokens == r.usage.prompt_tokens


def test_base64_and_float_are_the_same_vectors(server, client):
    use(server, MINILM)
    texts = ["Retrieval needs vectors.", "Ünïcödé and 東京 too."]
    as_float = vectors(client, texts, encoding_format="float")
    assert np.array_equal(as_float, vectors(client, texts))  # the SDK's default: base64, decoded by it
    asked = client.embeddings.create(model=MINILM, input=texts, encoding_format="base64")  # left to the caller
    decoded = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in asked.data]
    assert np.array_equal(as_float, np.array(decoded))


def test_langchain_openai_embeddings_as_users_configure_it(server, client):
    from langchain_openai import OpenAIEmbeddings

    use(server, MINILM)
    embedder = OpenAIEmbeddings(
        model=MINILM, base_url=server.url + "/v1", api_key="not-needed", check_embedding_ctx_length=False
    )
    docs = [para for _, para, _ in PAIRS]
    doc_vectors = np.array(embedder.embed_documents(docs))
    assert np.allclose(doc_vectors, vectors(client, docs), atol=1e-6)
    for sentence, para, _ in PAIRS:  # retrieval: each question finds its own paraphrase among the documents
        query = np.array(embedder.embed_query(sentence))
        assert docs[int(np.argmax(doc_vectors @ query))] == para
    # What OpenAIEmbeddings sends with its default check_embedding_ctx_length=True: tiktoken ids.
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=MINILM, input=[[9906, 1917, 0]])
    assert "check_embedding_ctx_length=False" in refused.value.message


def test_the_gguf_conversion_gives_the_transformers_vectors(server, client):
    use(server, MINILM)
    texts = [t for p in PAIRS for t in p]
    reference = client.embeddings.create(model=MINILM, input=texts)
    info = use(server, MINILM_GGUF)
    assert (info["kind"], info["dimensions"], info["pooling"], info["n_ctx"]) == ("llama.cpp", 384, "mean", 512)
    r = client.embeddings.create(model=MINILM, input=texts)
    assert r.model == MINILM_GGUF and r.usage.prompt_tokens == reference.usage.prompt_tokens  # one tokenizer
    for mine, theirs in zip(r.data, reference.data, strict=True):
        assert cos(np.array(mine.embedding), np.array(theirs.embedding)) > 0.999
    v = np.array([d.embedding for d in r.data])
    assert_paraphrases_rank_first(v, PAIRS, margin=0.3)
    assert abs(cos(vectors(client, [texts[4]])[0], v[4]) - 1) < 1e-5


def test_a_chat_model_with_mean_pooling_and_long_inputs(server, client):
    info = use(server, SMOLLM)
    assert (info["kind"], info["dimensions"], info["pooling"]) == ("llama.cpp", 576, "mean")
    texts = [t for p in PAIRS for t in p]
    gguf = vectors(client, texts)
    assert np.allclose(np.linalg.norm(gguf, axis=1), 1, atol=1e-5)
    # A text's vector does not depend on the other inputs (llama.cpp decodes one input at a time: in a
    # 160-token batch its quantized kernels moved this one by 5e-5)
    assert abs(cos(vectors(client, [texts[0]])[0], gguf[0]) - 1) < 1e-5
    assert_paraphrases_rank_first(gguf, PAIRS, margin=0.05)
    long = "The quick brown fox jumps over the lazy dog. " * 300  # about 3000 tokens
    with pytest.raises(openai.BadRequestError) as too_long:
        client.embeddings.create(model=SMOLLM, input=["short", long])
    assert "Input 1 is" in too_long.value.message and "at most 2048" in too_long.value.message
    cut = httpx.post(server.url + "/v1/embeddings", json={"input": [long], "truncate": True}, timeout=300).json()
    assert cut["usage"]["prompt_tokens"] == 2048
    # The same model as a transformers folder (no modules.json: mean pooling) gives the same vectors.
    assert use(server, SMOLLM_HF)["kind"] == "transformers"
    hf = vectors(client, texts)
    assert all(cos(a, b) > 0.99 for a, b in zip(gguf, hf, strict=True))


def test_embeddings_answer_while_the_chat_model_generates(server, client):
    use(server, MINILM)
    before = vectors(client, ["A man is playing a guitar."])
    started, chunks = threading.Event(), []

    def chat() -> None:
        stream = client.chat.completions.create(
            model=SMOLLM,
            messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            max_tokens=80,
            stream=True,
            extra_body={"do_sample": False, "ignore_eos": True},
        )
        for event in stream:
            if event.choices and event.choices[0].delta.content:
                chunks.append(event.choices[0].delta.content)
                started.set()

    thread = threading.Thread(target=chat)
    thread.start()
    try:
        assert started.wait(120), "the chat never started"
        during = vectors(client, ["A man is playing a guitar."])
    finally:
        thread.join(300)
    assert np.allclose(before, during, atol=1e-6) and len(chunks) > 10


def test_without_an_embedding_model_the_error_says_how_to_load_one(server, client):
    assert httpx.post(server.url + "/v1/internal/embedding-model/unload").json() == {"model": None}
    try:
        with pytest.raises(openai.NotFoundError) as none:
            client.embeddings.create(model=MINILM, input="hello")
        assert "--embedding-model" in none.value.message and "Model tab" in none.value.message
        assert none.value.code == "no_embedding_model"
    finally:
        use(server, MINILM)


def test_the_model_list_marks_the_embedding_model_and_it_is_no_chat_model(server, client):
    use(server, MINILM)
    entries = {m.id: m for m in client.models.list().data}
    assert entries[MINILM].model_extra.get("embedding") is True and entries[MINILM].model_extra.get("loaded") is True
    assert client.models.retrieve(MINILM).model_extra.get("embedding") is True
    # Loading it as the chat model is a clear error, and the chat model stays.
    r = httpx.post(server.url + "/v1/internal/model/load", json={"model_name": MINILM}, timeout=300)
    assert r.status_code == 400 and "is an embedding model" in r.text and "--embedding-model" in r.text
    assert server.health()["model"] == SMOLLM
