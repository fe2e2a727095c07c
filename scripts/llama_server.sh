#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (CPU-only, portable) from the llama.cpp vendored in the same
# llama-cpp-python sdist scripts/llama_cpp.sh downloads, once, into a cache outside the checkout
# keyed by version and flags, so fresh clones and CI reuse it. Prints the binary's path.
# Same portable ggml flags as the wheel (the native build segfaults on quantized models on these
# hosts); static, so the one file runs anywhere; no web UI (it would be downloaded) and no HTTPS
# (the router talks to it over loopback only).
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
GGML_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
SERVER_FLAGS="-DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
-DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Release"
ROOT="${DISTILL_CACHE_DIR:-$HOME/.cache/distill}"
KEY="$(printf '%s %s %s' "$VERSION" "$GGML_FLAGS" "$SERVER_FLAGS" | sha256sum | cut -c1-12)"
CACHE="$ROOT/llama-server-$VERSION-$KEY"
BIN="$CACHE/bin/llama-server"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

# The sdist scripts/llama_cpp.sh keeps (it downloads it when missing).
SDIST="$(ls "$("$(dirname "$0")/llama_cpp.sh")"/sdist/llama_cpp_python-*.tar.gz | head -1)"
echo "building llama-server from $(basename "$SDIST") (portable, CPU, ~5 min on 2 cores)..." >&2
WORK="$CACHE.tmp"
rm -rf "$WORK" && mkdir -p "$WORK/src"
top="$(basename "$SDIST" .tar.gz)"
tar -xzf "$SDIST" -C "$WORK/src" --strip-components=3 "$top/vendor/llama.cpp"
# shellcheck disable=SC2086 # the flag lists are word-split on purpose
cmake -S "$WORK/src" -B "$WORK/build" $GGML_FLAGS $SERVER_FLAGS >&2
cmake --build "$WORK/build" --target llama-server --parallel "$(nproc)" >&2
mkdir -p "$WORK/bin" && cp "$WORK/build/bin/llama-server" "$WORK/bin/"
rm -rf "$WORK/src" "$WORK/build"
rm -rf "$CACHE" && mv "$WORK" "$CACHE"
echo "$BIN"
