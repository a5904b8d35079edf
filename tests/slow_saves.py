"""``server.py`` whose first saves of the notebook and of settings.yaml are slow, the earliest slowest.

The first write of one of those files waits ``FIRST_WRITE`` (3 s), the k-th after it ``0.15 * (8 - k)``
seconds, before writing. A server that ran a page's keystroke saves side by side would finish them
newest first and leave the file with an old, shorter text; one that runs them in the order they came
leaves the last text. Used by tests/browser/test_saves_in_order.py as
``python tests/slow_saves.py <server.py's arguments>``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import server  # noqa: E402
import webui.storage as storage  # noqa: E402

SLOW_FILES = {"notebook.txt", "settings.yaml"}
#: The first write of each waits longest: the page's first keystroke save is still running when the box is
#: left, and the blur's save of the whole text must not finish before it.
FIRST_WRITE = 3.0
_write = storage.atomic_write_bytes
_counts: Counter[str] = Counter()
_lock = threading.Lock()


def slow_write(path: Path, data: bytes) -> None:
    if Path(path).name in SLOW_FILES:
        with _lock:
            _counts[str(path)] += 1
            k = _counts[str(path)]
        time.sleep(FIRST_WRITE if k == 1 else max(0.0, 0.15 * (8 - k)))
    _write(path, data)


storage.atomic_write_bytes = slow_write  # atomic_write_text and write_yaml look it up here

if __name__ == "__main__":
    sys.exit(server.main(sys.argv[1:]))
