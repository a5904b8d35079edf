#!/usr/bin/env bash
# Quality gates: ruff (lint + format check), mypy, import-linter contracts (pyproject.toml holds their settings).
# Run after scripts/setup.sh --tests (which installs requirements/lint.txt).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${WEBUI_VENV:-$ROOT/.venv}/bin"
cd "$ROOT"
echo "[lint] ruff check" >&2
"$BIN/ruff" check webui server.py download-model.py tests bench
echo "[lint] ruff format --check" >&2
"$BIN/ruff" format --check webui server.py download-model.py tests bench
echo "[lint] mypy" >&2
"$BIN/mypy"
echo "[lint] import-linter" >&2
"$BIN/lint-imports"
echo "[lint] unique test module names" >&2
# pytest imports test modules by their bare name (tests/ has no packages): two test_x.py in
# different folders stop the whole run at collection.
dupes="$(find tests -name 'test_*.py' -printf '%f\n' | sort | uniq -d)"
if [ -n "$dupes" ]; then
    echo "[lint] test modules with the same name in two folders (rename one): $dupes" >&2
    exit 1
fi
echo "[lint] all passed" >&2
