#!/usr/bin/env bash
# Set-up on a fresh Debian machine with Python >= 3.10; safe to run twice (fast the second time).
#   - Debian packages: WordNet 3.0 (wordnet-base, wordnet-sense-index), venv support, chromium and
#     chromium-driver (the browser test of the inspection report);
#   - .venv/ with PyTorch ($TORCH_SPEC) and webtag (editable, with the dev extra);
#   - WordNet copied into .venv/nltk_data, where NLTK looks by default.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_missing=()
[ -f /usr/share/wordnet/data.noun ] || apt_missing+=(wordnet-base)
[ -f /usr/share/wordnet/index.sense ] || apt_missing+=(wordnet-sense-index)
"$PYTHON" -c "import ensurepip, venv" 2>/dev/null || apt_missing+=(python3-venv)
# headless Chromium and its driver: the test that opens the inspection report in a browser
command -v chromium >/dev/null || apt_missing+=(chromium)
command -v chromedriver >/dev/null || apt_missing+=(chromium-driver)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${apt_missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.webtag-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$(cat "$stamp")" != "$TORCH_SPEC" ]; then
  if ! "$VPY" -c "import torch, torchvision" 2>/dev/null; then
    echo "[setup] installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    "$VPY" -m pip install -q $TORCH_SPEC 2>&1 | grep -v "^WARNING: Location" || true
    "$VPY" -c "import torch, torchvision" # fail here, clearly, if that did not work
  fi
  echo "[setup] installing webtag and its dependencies"
  "$VPY" -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  "$VPY" -c "import text_mining, pipeline, webdataset, gensim, nltk, timm, accelerate"
  printf '%s' "$TORCH_SPEC" > "$stamp"
fi
"$VPY" -m text_mining install-wordnet >/dev/null
echo "[setup] ready: $("$VPY" -c 'import sys; print(sys.prefix)')"
