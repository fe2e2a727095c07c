#!/usr/bin/env bash
# Builds the portable llama-cpp-python wheel and extracts llama.cpp's HF->GGUF converter from the
# same sdist, once, into a cache outside the checkout (keyed by version and flags), so fresh clones
# and CI reuse them. Prints nothing when the cache is already complete.
# Why portable flags: the default native build segfaults on quantized models on these hosts (AMX).
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
PY="${PYTHON:-python3}"
KEY="$(printf '%s %s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-12)"
CACHE="${DISTILL_CACHE_DIR:-$HOME/.cache/distill}/llama-cpp-python-$VERSION-$KEY"
WHEELS="$CACHE/wheels"
CONVERTER="$CACHE/converter"

# Bump when the set of extracted converter files changes, so older caches are completed.
CONVERTER_LAYOUT=2
MARKER="$CONVERTER/.complete-$CONVERTER_LAYOUT"
if ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1 && [ -f "$MARKER" ]; then
  echo "$CACHE"; exit 0
fi
mkdir -p "$CACHE"
SDIST_DIR="$CACHE/sdist"
if ! ls "$SDIST_DIR"/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
  rm -rf "$SDIST_DIR.tmp"
  "$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$SDIST_DIR.tmp" >&2
  mv "$SDIST_DIR.tmp" "$SDIST_DIR"
fi
SDIST="$(ls "$SDIST_DIR"/llama_cpp_python-*.tar.gz | head -1)"

if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $VERSION (portable, ~5 min on 2 cores)..." >&2
  rm -rf "$WHEELS.tmp"
  CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$PY" -m pip wheel --no-deps --no-cache-dir "$SDIST" -w "$WHEELS.tmp" >&2
  mv "$WHEELS.tmp" "$WHEELS"
fi

if [ ! -f "$MARKER" ]; then
  rm -rf "$CONVERTER" "$CONVERTER.tmp" && mkdir -p "$CONVERTER.tmp"
  top="$(basename "$SDIST" .tar.gz)"  # not `tar -t | head`: SIGPIPE fails under pipefail
  tar -xzf "$SDIST" -C "$CONVERTER.tmp" --strip-components=3 \
    "$top/vendor/llama.cpp/convert_hf_to_gguf.py" "$top/vendor/llama.cpp/convert_lora_to_gguf.py" \
    "$top/vendor/llama.cpp/gguf-py" "$top/vendor/llama.cpp/conversion"
  # newer llama.cpp keeps converter helpers beside the script; take them when present
  tar -xzf "$SDIST" -C "$CONVERTER.tmp" --strip-components=3 --wildcards \
    "$top/vendor/llama.cpp/convert_hf_to_gguf_update.py" 2>/dev/null || true
  touch "$CONVERTER.tmp/.complete-$CONVERTER_LAYOUT"
  mv "$CONVERTER.tmp" "$CONVERTER"
fi
echo "$CACHE"
