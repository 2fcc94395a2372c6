#!/usr/bin/env bash
# Install abcgen and everything its tests and commands need, on a fresh Debian machine with Python 3.11.
# Idempotent: a second run only checks. Creates .venv/ in the repository (override with ABCGEN_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ABCGEN_VENV:-.venv}"

# System tools: abc2midi (abcmidi) is the strict ABC checker and ABC -> MIDI converter; fluidsynth with
# the General MIDI soundfont renders audio; libcairo2 lets cairosvg turn sheet music into PNG.
# chromium + chromium-driver: the browser tests of abcgen demo / listen drive them with selenium (headless;
# nothing is downloaded at test time); fonts-dejavu-core gives the pages' text a font without recommends.
# --no-install-recommends: fluidsynth recommends qsynth, which pulls in Qt and GTK.
if ! command -v abc2midi >/dev/null 2>&1 || ! command -v fluidsynth >/dev/null 2>&1 \
    || [ ! -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || ! ldconfig -p | grep -q libcairo.so.2 \
    || [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] \
    || [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    abcmidi fluidsynth fluid-soundfont-gm libcairo2 chromium chromium-driver fonts-dejavu-core >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null
# torch first, pinned: an unpinned torch pulled in by transformers/peft would be a multi-GB CUDA build.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[all,dev]"  # dev: the tests need every extra (render, eval, tracking)
echo "abcgen installed in $VENV ($("$PY" -c 'import abcgen, torch; print("abcgen", abcgen.__version__, "torch", torch.__version__)'))"
