#!/usr/bin/env python3
"""Manage the web UI's users and API keys: ``python scripts/users.py --help`` (see webui/accounts/cli.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webui.accounts.cli import main  # noqa: E402 - after the path is set

if __name__ == "__main__":
    raise SystemExit(main())
