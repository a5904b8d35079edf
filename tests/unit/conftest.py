"""Unit-test fixtures: the scripted FakeBackend, in a loader registry handed to what the test builds."""

from __future__ import annotations

import pytest

from fakes import FakeBackend
from webui.loaders import LoaderRegistry, default_registry


@pytest.fixture(autouse=True)
def loaders() -> LoaderRegistry:
    """The real loaders plus ``fake``; FakeBackend's recorded loads and gate are reset for every test.

    Tests pass it in (``ModelManager(..., loaders=loaders)``, ``Services.build(..., loaders=loaders)``):
    the app's registry is built once and passed, never patched.
    """
    FakeBackend.loads = []
    FakeBackend.gate = None
    real = default_registry()
    return LoaderRegistry([*(real.get(name) for name in real), FakeBackend])
