#!/usr/bin/env bash
# Set up a fresh machine: system packages, a virtual environment in .venv, the project with its extras.
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--no-system]
#   TORCH_CONSTRAINT=<file>  pip constraints for torch (default constraints/cpu.txt: the small CPU build;
#                            set it to an empty string on a CUDA machine to keep pip's choice)
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PKGS=(espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox libsndfile1 libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins shellcheck)
SYSTEM_PKGS+=(flite)  # a third synthesizer (opt-in in train.synth): speech from an engine the demo model never heard
SYSTEM_PKGS+=(chromium chromium-driver)  # browser tests of the dashboard and the HTML report (Playwright drives it)
SYSTEM_PKGS+=(portaudio19-dev)  # python -m bench peers: RealtimeSTT and WhisperLive build PyAudio against it

if [[ "${1:-}" != "--no-system" ]]; then
  missing=()
  for p in "${SYSTEM_PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip

CONSTRAINT=${TORCH_CONSTRAINT-constraints/cpu.txt}
args=()
[[ -n "$CONSTRAINT" ]] && args+=(-c "$CONSTRAINT")
if ! python -c "import fdrl_core" >/dev/null 2>&1 || [[ pyproject.toml -nt .venv/.installed ]]; then
  echo "setup: installing the project into .venv (first time takes a few minutes)"
  python -m pip install -q "${args[@]}" -e ".[dev]"
  touch .venv/.installed
fi
echo "setup: ready (.venv)"
