"""The generation queue shared by several users: round-robin between users, each user's jobs in order,
model loads in their place, per-user limits (429 with a retry estimate, too many tokens), positions and
the queue as each user may see it.

Scripted FakeBackend (tests/integration/test_api_users.py has the API side on SmolLM2).
"""

from __future__ import annotations

import threading
import time

import pytest

from fakes import FakeBackend
from webui.errors import QuotaError, UserLimitError
from webui.generation.limits import UserLimits
from webui.generation.scheduler import GenerationJob, Generator, Prepared
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

ONE_TOKEN = SamplingParams(max_tokens=1)


@pytest.fixture
def gen(tmp_path, loaders) -> Generator:
    d = tmp_path / "models"
    d.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (d / name).write_bytes(b"GGUF ok")
    manager = ModelManager(d, LoadOptions(n_ctx=400), loaders=loaders)
    manager.load("a.gguf", "fake")
    return Generator(manager)


@pytest.fixture
def gate():
    """Holds every generation before its token until set (set at the end in any case)."""
    FakeBackend.gate = threading.Event()
    yield FakeBackend.gate
    FakeBackend.gate.set()


def wait_until(condition, timeout=5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


class Recorder:
    """Submits named jobs whose prepare step writes down the order in which they start."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.started: list[str] = []

    def submit(self, name: str, user: str | None, limits: UserLimits | None = None) -> GenerationJob:
        def prepare(loaded, params) -> Prepared:
            self.started.append(name)
            return Prepared(name)

        return self.gen.submit(params=ONE_TOKEN, prepare=prepare, user=user, limits=limits)


def test_users_take_turns_and_each_users_jobs_keep_their_order(gen, gate):
    rec = Recorder(gen)
    first = rec.submit("alice 1", "alice")
    wait_until(lambda: gen.active is first)
    sent = [("alice 2", "alice"), ("alice 3", "alice"), ("alice 4", "alice"), ("bob 1", "bob")]
    sent += [("carol 1", "carol"), ("bob 2", "bob")]
    by_name = {name: rec.submit(name, user) for name, user in sent}
    jobs = list(by_name.values())
    # bob and carol, who have not been served, go before alice's second job; then turns alternate
    expected = ["alice 1", "bob 1", "carol 1", "alice 2", "bob 2", "alice 3", "alice 4"]
    assert gen.position(first) == 0
    assert [gen.position(by_name[n]) for n in expected[1:]] == [1, 2, 3, 4, 5, 6]
    gate.set()
    for job in jobs:
        job.result()
    assert rec.started == expected
    assert all(gen.position(j) is None for j in [first, *jobs])
    assert [s.user for s in gen.recent] == [n.split()[0] for n in expected]


def test_a_user_with_many_jobs_does_not_hold_up_a_later_users_single_job(gen, gate):
    rec = Recorder(gen)
    mine = [rec.submit(f"alice {i}", "alice") for i in range(1, 4)]
    wait_until(lambda: gen.active is mine[0])
    theirs = rec.submit("bob 1", "bob")
    assert gen.position(theirs) == 1 and gen.position(mine[1]) == 2 and gen.position(mine[2]) == 3
    gate.set()
    theirs.result()
    for job in mine:
        job.result()
    assert rec.started == ["alice 1", "bob 1", "alice 2", "alice 3"]


def test_without_users_the_queue_is_first_come_first_served(gen, gate):
    rec = Recorder(gen)
    jobs = [rec.submit(str(i), None) for i in range(5)]
    wait_until(lambda: gen.active is jobs[0])
    assert [gen.position(j) for j in jobs] == [0, 1, 2, 3, 4]
    gate.set()
    for job in jobs:
        job.result()
    assert rec.started == ["0", "1", "2", "3", "4"]


def test_a_model_load_keeps_its_place_among_the_jobs(gen, gate):
    """Jobs sent before a load run before it (on the old model) whoever sent them; jobs sent after, after it."""
    rec = Recorder(gen)
    running = rec.submit("alice 1", "alice")
    wait_until(lambda: gen.active is running)
    before = rec.submit("alice 2", "alice")

    def load() -> None:
        rec.started.append("load b")
        gen.models.load("b.gguf", "fake")

    loading = threading.Thread(target=gen.call, args=(load,))
    loading.start()
    wait_until(lambda: gen.waiting() == 2)
    after = rec.submit("bob 1", "bob")  # bob has never been served, yet the load was asked for first
    assert gen.position(before) == 1 and gen.position(after) == 3
    view = gen.queue_view("bob", is_admin=False)
    assert [(e["position"], e["kind"]) for e in view] == [
        (0, "generation"),
        (1, "generation"),
        (2, "model load"),
        (3, "generation"),
    ]
    gate.set()
    loading.join(10)
    for job in (running, before, after):
        job.result()
    assert rec.started == ["alice 1", "alice 2", "load b", "bob 1"]
    assert [s.model for s in gen.recent] == ["a.gguf", "a.gguf", "b.gguf"]


def test_a_user_at_the_queue_limit_gets_a_429_with_a_retry_estimate_others_do_not(gen, gate):
    rec = Recorder(gen)
    limits = UserLimits(max_queued=2)
    running = rec.submit("alice 1", "alice", limits)
    waiting = rec.submit("alice 2", "alice", limits)
    with pytest.raises(QuotaError) as refused:
        rec.submit("alice 3", "alice", limits)
    error = refused.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert error.retry_after is not None and error.retry_after >= 1 and float(error.retry_after).is_integer()
    assert "2 generations running or waiting" in error.message and "admin" in error.message
    others = rec.submit("bob 1", "bob", limits)  # bob's own share is untouched
    unlimited = rec.submit("alice 3", "alice", None)  # an admin (no limits) is never refused
    gate.set()
    for job in (running, waiting, others, unlimited):
        job.result()
    assert "alice 3" in rec.started


def test_a_finished_or_cancelled_job_frees_its_place_at_once(gen, gate):
    rec = Recorder(gen)
    limits = UserLimits(max_queued=1)
    gate.set()
    for i in range(3):  # one after the other: never refused, even right after the previous one ended
        rec.submit(f"alice {i}", "alice", limits).result()
    gate.clear()
    blocker = rec.submit("bob 1", "bob")
    wait_until(lambda: gen.active is blocker)
    waiting = rec.submit("alice 3", "alice", limits)
    with pytest.raises(QuotaError):
        rec.submit("alice 4", "alice", limits)
    waiting.cancel.set()  # the client went away while the job waited: it no longer counts
    again = rec.submit("alice 4", "alice", limits)
    assert gen.position(waiting) is None and gen.position(again) == 1  # leaves the queue unrun
    gate.set()
    for job in (blocker, waiting, again):
        job.result()
    assert "alice 3" not in rec.started and "alice 4" in rec.started


def test_too_many_tokens_for_one_request_is_refused_before_queueing(gen):
    limits = UserLimits(max_tokens=100)
    with pytest.raises(UserLimitError) as refused:
        gen.submit("Hello", SamplingParams(max_tokens=500), user="alice", limits=limits)
    assert refused.value.status_code == 400
    message = refused.value.message
    assert "500" in message and "100" in message and "admin" in message
    assert gen.waiting() == 0 and gen.active is None
    assert gen.submit("Hello", SamplingParams(max_tokens=100), user="alice", limits=limits).result().endswith("99 ")


def test_the_queue_view_names_others_only_for_admins(gen, gate):
    rec = Recorder(gen)
    running = rec.submit("alice 1", "alice")
    wait_until(lambda: gen.active is running)
    bobs = rec.submit("bob 1", "bob")
    alices = rec.submit("alice 2", "alice")
    bob_sees = gen.queue_view("bob", is_admin=False)
    assert [(e["position"], e["user"], e["mine"], e["state"]) for e in bob_sees] == [
        (0, "another user", False, "running"),
        (1, "bob", True, "waiting"),
        (2, "another user", False, "waiting"),
    ]
    admin_sees = gen.queue_view("root", is_admin=True)
    assert [e["user"] for e in admin_sees] == ["alice", "bob", "alice"]
    # nothing has finished yet: each job ahead is guessed at the first guess (10 s)
    waits = [e["estimated_wait_seconds"] for e in bob_sees]
    assert waits[0] == 0 and 0 < waits[1] <= 10 < waits[2] <= 20
    assert all(e["waited_seconds"] >= 0 for e in bob_sees)
    gate.set()
    for job in (running, bobs, alices):
        job.result()
    assert gen.queue_view("bob", is_admin=False) == []


def test_wait_estimates_follow_how_long_jobs_took_here(gen, gate):
    rec = Recorder(gen)
    gate.set()
    for i in range(3):
        rec.submit(f"quick {i}", "alice").result()  # the fake answers in milliseconds
    gate.clear()
    running = rec.submit("alice 1", "alice")
    wait_until(lambda: gen.active is running)
    waiting = [rec.submit(f"bob {i}", "bob") for i in range(3)]
    view = gen.queue_view("bob", is_admin=False)
    assert all(e["estimated_wait_seconds"] < 1 for e in view)
    with pytest.raises(QuotaError) as refused:
        rec.submit("bob 4", "bob", UserLimits(max_queued=3))
    assert refused.value.retry_after == 1  # never less than a second
    gate.set()
    for job in (running, *waiting):
        job.result()


def test_ahead_of_counts_what_runs_before_a_job(gen, gate):
    rec = Recorder(gen)
    first = rec.submit("alice 1", "alice")
    wait_until(lambda: gen.active is first)
    second, third = rec.submit("bob 1", "bob"), rec.submit("bob 2", "bob")
    assert gen.ahead_of(first) == 0  # it runs
    assert gen.ahead_of(second) == 1 and gen.ahead_of(third) == 2
    gate.set()
    third.result()
    assert gen.ahead_of(third) == 0


def test_a_lone_job_has_nothing_ahead_even_before_it_starts(gen):
    gen._ensure_worker = lambda: None  # (no generation thread: the job stays in line, nothing runs)
    job = gen.submit("alone", ONE_TOKEN, user="alice")
    assert gen.position(job) == 1 and gen.ahead_of(job) == 0


def test_a_load_waiting_for_the_jobs_before_it_says_how_many_until_it_starts(gen, gate):
    """Generator.call's ``waiting``: told at once and then while the load waits (the Model tab shows it),
    never once the load runs."""
    rec = Recorder(gen)
    running = rec.submit("alice 1", "alice")
    wait_until(lambda: gen.active is running)
    before = rec.submit("bob 1", "bob")
    told: list[tuple[int, float, list[str]]] = []

    def load() -> None:
        rec.started.append("load b")
        gen.models.load("b.gguf", "fake")

    loading = threading.Thread(
        target=gen.call, args=(load,), kwargs={"waiting": lambda n, s: told.append((n, s, list(rec.started)))}
    )
    loading.start()
    wait_until(lambda: len(told) >= 2)  # at once, then again half a second later
    assert [n for n, _, _ in told[:2]] == [2, 2]  # the running job and the one sent before the load
    assert all(s > 0 for _, s, _ in told)
    gate.set()
    loading.join(10)
    running.result(), before.result()
    assert rec.started == ["alice 1", "bob 1", "load b"]
    assert all("load b" not in started for _, _, started in told)


def test_a_load_with_nothing_before_it_is_never_told_to_wait(gen):
    told: list[tuple[int, float]] = []
    assert gen.call(lambda: 7, waiting=lambda n, s: told.append((n, s))) == 7
    assert told == []


def test_a_reply_running_longer_than_usual_is_given_the_time_its_tokens_left_take(gen):
    """The Model tab's "about N s" for a load behind a long reply: past the usual time of a reply here,
    the reply's own speed and its tokens left to max_tokens (found by hand: it said "about 1 s" for 12 s)."""
    from webui.generation.scheduler import GenerationStats

    gen._job_seconds.extend([1.0, 1.0])  # replies here take a second
    job = GenerationJob(lambda loaded, params: Prepared("p"), SamplingParams(max_tokens=300))
    now = time.perf_counter()
    job.started_at = now - 5.0
    job.stats = GenerationStats(
        model="m", loader="fake", seed=1, completion_tokens=100, ttft_seconds=0.5, total_seconds=5.0
    )
    # 100 tokens in 4.5 s of writing: 200 left take 9 s
    assert gen._remaining(job, now) == pytest.approx(9.0, rel=0.01)
    job.stats.completion_tokens = 300  # at max_tokens: it ends at once
    assert gen._remaining(job, now) == 0.0
    job.stats = GenerationStats(
        model="m", loader="fake", seed=1, completion_tokens=3, ttft_seconds=4.0, total_seconds=5.0
    )
    assert gen._remaining(job, now) == 0.0  # too few tokens to tell its speed
    job.started_at = now - 0.25  # within the usual time: the usual time left
    assert gen._remaining(job, now) == pytest.approx(0.75, abs=0.01)
