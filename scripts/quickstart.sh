#!/usr/bin/env bash
# The main job end to end on the embedded corpus: install, build the corpus, build the tokenizer, report.
# Set ABCGEN_BASE_MODEL to a hub id or folder (e.g. HuggingFaceTB/SmolLM2-135M) to extend a pretrained
# model's tokenizer; without it (offline), a byte-level BPE base is trained on the corpus first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV="${ABCGEN_VENV:-.venv}"
OUT="${ABCGEN_OUT:-runs/quickstart}"
SOURCES="${ABCGEN_SOURCES:-music21:all}"
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
ABCGEN="$VENV/bin/abcgen"

"$ABCGEN" data build --source $SOURCES --out "$OUT/corpus"
BASE="${ABCGEN_BASE_MODEL:-}"
if [ -z "$BASE" ]; then
  BASE="$OUT/base-tokenizer"
  "$ABCGEN" tokenizer train-base --data "$OUT/corpus" --out "$BASE"
fi
"$ABCGEN" tokenizer build --base "$BASE" --data "$OUT/corpus" --out "$OUT/tokenizer"
echo "corpus: $OUT/corpus (report.json, control_vocabulary.json); tokenizer: $OUT/tokenizer"
