"""UI streaming is paced to frames: fewer updates than tokens, never the last one lost."""

from __future__ import annotations

import time

from webui.ui.common import Frames


def test_frames_pace_updates():
    frames = Frames(20)
    assert frames.due()  # the first update goes out at once
    assert not frames.due()
    time.sleep(0.06)
    assert frames.due()


def test_a_fast_stream_sends_few_updates():
    frames = Frames(20)
    sent = sum(frames.due() for _ in range(10_000))  # 10,000 tokens arriving in a burst
    assert 1 <= sent < 100


def test_the_rate_is_the_settings_one(user_dir):
    from webui.settings import Settings

    assert Settings(user_data_dir=user_dir).ui_updates_per_second == 10  # the default: 10 redraws a second
    assert Frames(Settings(user_data_dir=user_dir, ui_updates_per_second=4).ui_updates_per_second).interval == 0.25
