#!/usr/bin/env bash
# Set up (first run only) and start the web UI with the starter model loaded.
# Extra arguments go to server.py, e.g.  ./start.sh --listen-port 8080  or  ./start.sh --model other.gguf
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup.sh"
args=("$@")
case " $* " in
    *" --model "*|*" --model="*) ;;
    # The starter model, unless the saved settings name the model the user loaded last.
    *) args=(--default-model "${WEBUI_DEFAULT_MODEL:-SmolLM2-135M-Instruct.Q4_1.gguf}" "${args[@]}") ;;
esac
exec "${WEBUI_VENV:-$ROOT/.venv}/bin/python" "$ROOT/server.py" "${args[@]}"
