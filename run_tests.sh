#!/usr/bin/env bash
# Set up (first run only: packages, Chromium, test models) and run the whole test suite.
# Extra arguments go to pytest, e.g.  ./run_tests.sh tests/unit -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup.sh" --tests
cd "$ROOT"
exec "${WEBUI_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
