"""Failed log-ins are limited per user (any spelling) and per address, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from webui.accounts.ratelimit import LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_user_is_blocked_after_max_failures_until_the_window_passes(clock):
    limiter = LoginLimiter(max_failures=3, window_s=60, clock=clock)
    for i in range(3):
        assert limiter.retry_after("alice", f"10.0.0.{i}") == 0
        limiter.failed("alice", f"10.0.0.{i}")
        clock.now += 1
    # blocked whatever the address and spelling; the first failure (at 1000) frees a slot at 1060
    assert limiter.retry_after("ALICE", "10.9.9.9") == pytest.approx(57)
    assert limiter.retry_after("bob", "10.9.9.9") == 0
    clock.now = 1059.5
    assert limiter.retry_after("Ａｌｉｃｅ", None) == pytest.approx(0.5)
    clock.now = 1060
    assert limiter.retry_after("alice", "10.9.9.9") == 0


def test_address_is_blocked_after_max_failures_on_many_names(clock):
    limiter = LoginLimiter(max_failures=3, window_s=60, clock=clock)
    for name in ("a", "b", "c"):
        limiter.failed(name, "10.0.0.1")
    assert limiter.retry_after("d", "10.0.0.1") == pytest.approx(60)
    assert limiter.retry_after("d", "10.0.0.2") == 0


def test_failures_outside_the_window_do_not_count(clock):
    limiter = LoginLimiter(max_failures=2, window_s=10, clock=clock)
    limiter.failed("alice", "x")
    clock.now += 11
    limiter.failed("alice", "y")
    assert limiter.retry_after("alice", "z") == 0


def test_success_clears_the_user_but_not_the_address(clock):
    limiter = LoginLimiter(max_failures=2, window_s=60, clock=clock)
    limiter.failed("alice", "10.0.0.1")
    limiter.failed("alice", "10.0.0.1")
    assert limiter.retry_after("alice", "10.0.0.2") > 0
    limiter.succeeded("ALICE", "10.0.0.2")
    assert limiter.retry_after("alice", "10.0.0.2") == 0
    # a valid account does not reset the guesses made from an address
    assert limiter.retry_after("alice", "10.0.0.1") > 0


def test_many_random_names_are_swept_once_expired(clock):
    limiter = LoginLimiter(max_failures=5, window_s=1, clock=clock)
    for i in range(3000):
        limiter.failed(f"name{i}", None)
        clock.now += 0.01
    assert len(limiter._failures) < 1500


def test_threads_count_every_failure(clock):
    limiter = LoginLimiter(max_failures=400, window_s=60, clock=clock)

    def fail() -> None:
        for _ in range(100):
            limiter.failed("alice", None)

    threads = [threading.Thread(target=fail) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter.retry_after("alice", None) == pytest.approx(60)
