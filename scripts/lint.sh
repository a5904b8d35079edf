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
echo "[lint] all passed" >&2
