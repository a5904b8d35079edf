"""Stopping a page's generation: one registry used by the Chat, Notebook and Compare tabs and the API.

Each running generation registers its cancel event under a key: the browser page's session for the
tabs, the request's id for the API. A Stop (a button, Esc, a closed connection) sets the events of
that key only, so one person's Stop never stops another's generation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Cancels:
    """Cancel events of the running generations, by key (a page's session, an API request)."""

    def __init__(self) -> None:
        self._events: dict[str, list[threading.Event]] = {}
        self._lock = threading.Lock()

    def start(self, key: str) -> threading.Event:
        """A new cancel event for a generation that ``key`` starts."""
        event = threading.Event()
        with self._lock:
            self._events.setdefault(key, []).append(event)
        return event

    def end(self, key: str, event: threading.Event) -> None:
        """The generation of ``event`` has ended: forget it."""
        with self._lock:
            events = self._events.get(key, [])
            if event in events:
                events.remove(event)
            if not events:
                self._events.pop(key, None)

    def stop(self, key: str) -> bool:
        """Stop every generation ``key`` has running; False when it had none."""
        with self._lock:
            events = list(self._events.get(key, []))
        for event in events:
            event.set()
        return bool(events)

    def stop_all(self) -> None:
        """Stop every generation and tool call of every key (the server is stopping)."""
        with self._lock:
            events = [event for events in self._events.values() for event in events]
        for event in events:
            event.set()

    def running(self, key: str) -> int:
        with self._lock:
            return len(self._events.get(key, []))

    @contextmanager
    def scope(self, key: str) -> Iterator[threading.Event]:
        """``with cancels.scope(key) as cancel:`` registers for the block's duration."""
        event = self.start(key)
        try:
            yield event
        finally:
            self.end(key, event)
