"""Which components show an event's progress: the one a user looks at, not every output.

Gradio 6.31's page registers every output of every event (unless ``show_progress_on`` says
otherwise) as a "progress target", and on every streamed update of *any* event it visits all of
them: a search of the whole component tree for each, a copy of each one's value and, for a layout
block (a Tab, a Row), of every component inside it. With this app's ~220 targets that cost the
browser ~90 ms of CPU per streamed update, CPU a 2-core laptop takes from llama.cpp: the Chat tab
streamed at 8 tokens/s where the API gave 90 (``bench/ui.py``, docs/performance.md).

:func:`narrow_progress_targets` leaves a spinner where one is useful and registers nothing else:

* an event with ``show_progress="hidden"`` has no targets (nothing was shown on them anyway);
* an event that skips the queue (``queue=False``: this app's instant ones, such as filling the page
  in on load) has none either - its spinner would only flicker;
* a queued event (a model load, a download, an import, a perplexity run) shows its progress on the
  components its ``show_progress_on`` names, else on its first output that is on screen (not a
  ``gr.State``, a timer or a layout block).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.blocks import BlockContext
from gradio.components import Component

#: Components with nothing on screen to put a spinner on.
_UNSEEN = (gr.State, gr.Timer, gr.BrowserState)


def _shows_spinner(block: Any) -> bool:
    """On screen and not a layout around other components (a gr.HTML may hold children: it counts)."""
    if isinstance(block, BlockContext) and not isinstance(block, Component):
        return False
    return not isinstance(block, _UNSEEN)


def _progress_target(fn: Any) -> list[Any]:
    """The components that show ``fn``'s progress: those it names, else its first output on screen."""
    if fn.show_progress == "hidden" or not fn.queue:
        return []
    if fn.show_progress_on is not None:
        return [b for b in fn.show_progress_on if _shows_spinner(b)]
    return [b for b in fn.outputs if _shows_spinner(b)][:1]


def narrow_progress_targets(demo: gr.Blocks) -> None:
    """Give every event of ``demo`` an explicit list of the components that show its progress."""
    for fn in demo.fns.values():
        fn.show_progress_on = _progress_target(fn)
