"""Reliability suite: hostile files and input, kills, exposure, load. Sizes scale with env vars (see reltools)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # reltools.py
