#!/usr/bin/env bash
# Set up everything the web UI needs; safe to run again (it skips what is already done).
#
#   scripts/setup.sh            runtime: venv, Python packages, llama-cpp-python, starter model
#   scripts/setup.sh --tests    also: test packages, Debian chromium and a CJK font, both test models
#
# Environment:
#   LLAMA_CMAKE_ARGS  CMake flags for building llama-cpp-python. Default: portable AVX2 CPU build.
#                     Examples: "-DGGML_CUDA=on" (NVIDIA), "-DGGML_METAL=on" (Apple), "-DGGML_VULKAN=on".
#   PYTHON            Python 3.10+ to create the virtual environment with (default: python3).
#   WEBUI_VENV        Virtual environment folder (default: .venv in this project).
#   WEBUI_CACHE       Cache folder for built wheels (default: ~/.cache/localllm-webui).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WEBUI_VENV:-$ROOT/.venv}"
CACHE="${WEBUI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/localllm-webui}"
PYTHON="${PYTHON:-python3}"
DEFAULT_LLAMA_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:-$DEFAULT_LLAMA_ARGS}"
TESTS=0
[ "${1:-}" = "--tests" ] && TESTS=1

log() { echo "[setup] $*" >&2; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "please install these system packages: $*"
        sudo="sudo"
    fi
    command -v apt-get >/dev/null || die "no apt-get here; please install these packages yourself: $*"
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        $sudo apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- Python and the virtual environment ---------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$PYTHON is older than 3.10; set PYTHON=/path/to/python3.11"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment in $VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# --- Python packages (skipped when the requirement files did not change) ---------------------
REQ_FILES=("$ROOT/requirements/torch.txt" "$ROOT/requirements/base.txt" "$ROOT/requirements/constraints.txt")
[ "$TESTS" = 1 ] && REQ_FILES+=("$ROOT/requirements/test.txt" "$ROOT/requirements/lint.txt" "$ROOT/requirements/test-nodeps.txt")
REQ_STAMP="$VENV/.webui-requirements-$TESTS"
REQ_HASH="$(hash_of "${REQ_FILES[@]}")"
if [ "$(cat "$REQ_STAMP" 2>/dev/null)" != "$REQ_HASH" ]; then
    log "installing Python packages (first run: a few minutes)"
    args=(-r "$ROOT/requirements/torch.txt" -r "$ROOT/requirements/base.txt")
    [ "$TESTS" = 1 ] && args+=(-r "$ROOT/requirements/test.txt" -r "$ROOT/requirements/lint.txt")
    "${PIP[@]}" install -q "${args[@]}" -c "$ROOT/requirements/constraints.txt"
    if [ "$TESTS" = 1 ]; then
        # packages whose declared requirements contradict our pins (the file says which and why)
        "${PIP[@]}" install -q --no-deps -r "$ROOT/requirements/test-nodeps.txt"
    fi
    echo "$REQ_HASH" > "$REQ_STAMP"
fi
if [ "$TESTS" = 1 ]; then
    # The test packages include the runtime ones: ./start.sh after ./run_tests.sh need not run pip
    # again (also when the test stamp was written by an older set-up that did not write this one).
    hash_of "${REQ_FILES[@]:0:3}" > "$VENV/.webui-requirements-0"
fi

# --- llama-cpp-python, built once per version and flag set, then cached as a wheel -------------
LLAMA_SPEC="$(grep -E '^llama-cpp-python==' "$ROOT/requirements/llama.txt")"
LLAMA_VERSION="${LLAMA_SPEC#llama-cpp-python==}"
LLAMA_KEY="$(printf '%s' "$LLAMA_VERSION|$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-16)"
WHEEL_DIR="$CACHE/wheels/llama-cpp-python-$LLAMA_KEY"
if [ "$(cat "$VENV/.webui-llama" 2>/dev/null)" != "$LLAMA_KEY" ]; then
    if ! ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
        for tool in gcc g++ cmake; do
            command -v "$tool" >/dev/null || apt_install build-essential cmake
        done
        log "building llama-cpp-python $LLAMA_VERSION with: $LLAMA_CMAKE_ARGS"
        log "(compiles llama.cpp: 6-15 minutes, only once; the wheel is kept in $WHEEL_DIR)"
        build_dir="$(mktemp -d)"
        CMAKE_ARGS="$LLAMA_CMAKE_ARGS" FORCE_CMAKE=1 "${PIP[@]}" wheel -q --no-deps --no-binary llama-cpp-python \
            -w "$build_dir" "$LLAMA_SPEC"
        mkdir -p "$WHEEL_DIR"
        mv "$build_dir"/llama_cpp_python-*.whl "$WHEEL_DIR"/
        rm -rf "$build_dir"
    fi
    log "installing llama-cpp-python from $WHEEL_DIR"
    "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
    "$PY" -c "import llama_cpp" || die "llama-cpp-python does not import; see the messages above"
    echo "$LLAMA_KEY" > "$VENV/.webui-llama"
fi

# --- test-only system packages -------------------------------------------------------------------
if [ "$TESTS" = 1 ] && [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    apt_install chromium
fi
# Chinese pages render as boxes without a CJK font (a bare Debian has none); WenQuanYi Zen Hei is small.
if [ "$TESTS" = 1 ] && [ -z "$(fc-list :lang=zh 2>/dev/null || true)" ]; then
    apt_install fonts-wqy-zenhei
fi

# --- models --------------------------------------------------------------------------------------
if [ "$TESTS" = 1 ]; then
    "$PY" "$ROOT/download-model.py" --starter all
    # The tests' tiny vision model (made with transformers, converted by llama.cpp's own converter from
    # the llama-cpp-python sdist); cached, so later runs only check that it is there.
    PYTHONPATH="$ROOT:$ROOT/tests" "$PY" "$ROOT/tests/vlm_models.py" >/dev/null
    # all-MiniLM-L6-v2 also as a GGUF (llama.cpp's converter)
    PYTHONPATH="$ROOT:$ROOT/tests" "$PY" "$ROOT/tests/embedding_models.py" >/dev/null
    # SmolLM2 as Q8_0 and F16, main models the Q4_1 file drafts for (llama.cpp's quantizer; under a second)
    QUANT_LOG="$(mktemp)"
    PYTHONPATH="$ROOT:$ROOT/tests" "$PY" "$ROOT/tests/draft_models.py" >/dev/null 2>"$QUANT_LOG" \
        || { tail -20 "$QUANT_LOG"; die "could not make the Q8_0 and F16 SmolLM2 test models"; }
    rm -f "$QUANT_LOG"
else
    "$PY" "$ROOT/download-model.py" --starter
fi
log "ready"
