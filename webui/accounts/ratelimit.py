"""Failed log-ins: after ``max_failures`` inside ``window_s`` a name (or an address) waits.

Both the user name (any spelling) and the client address are counted, so guessing one person's
password from many machines and guessing many names from one machine are both slowed down. A
successful log-in clears the user's failures, not the address's (one valid account must not
reset the count of guesses at other accounts).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from webui.accounts.names import canonical_key

#: Expired entries are swept after this many new keys, so random names cannot fill memory.
_SWEEP_EVERY = 1024


class LoginLimiter:
    def __init__(
        self, max_failures: int = 5, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("max_failures must be at least 1 and window_s positive")
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # Only the newest max_failures times matter: the oldest of them says when a slot frees up.
        self._failures: dict[str, deque[float]] = {}
        self._new_keys = 0

    @staticmethod
    def _keys(user: str, address: str | None) -> list[str]:
        keys = [f"user:{canonical_key(user)}"]
        if address:
            keys.append(f"addr:{address}")
        return keys

    def _wait(self, key: str, now: float) -> float:
        times = self._failures.get(key)
        if times is None or len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window_s - now)

    def retry_after(self, user: str, address: str | None) -> float:
        """Seconds until ``user`` may try again from ``address`` (0: now)."""
        with self._lock:
            now = self._clock()
            return max(self._wait(key, now) for key in self._keys(user, address))

    def failed(self, user: str, address: str | None) -> None:
        """Count a wrong password (or unknown name) for ``user`` and ``address``."""
        with self._lock:
            now = self._clock()
            for key in self._keys(user, address):
                times = self._failures.get(key)
                if times is None:
                    times = self._failures[key] = deque(maxlen=self.max_failures)
                    self._new_keys += 1
                times.append(now)
            if self._new_keys >= _SWEEP_EVERY:
                self._sweep(now)

    def succeeded(self, user: str, address: str | None) -> None:
        """A right password: forget ``user``'s failures."""
        with self._lock:
            self._failures.pop(self._keys(user, address)[0], None)

    def _sweep(self, now: float) -> None:
        self._new_keys = 0
        expired = [k for k, times in self._failures.items() if not times or times[-1] + self.window_s <= now]
        for key in expired:
            del self._failures[key]
