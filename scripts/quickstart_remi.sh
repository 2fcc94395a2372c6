#!/usr/bin/env bash
# The REMI path end to end on the embedded corpus, offline, on CPU (after or without scripts/quickstart.sh):
#   1. build the base corpus (Essen folk songs + Bach chorales) with REMI text: the folk songs as one violin
#      track, the chorales as four string tracks; report.json counts the round trip ABC -> MIDI -> REMI -> MIDI;
#   2. the quickstart's tokenizer (built here if scripts/quickstart.sh has not run), REMI tokens added by training;
#   3. train the small Llama from scratch on the REMI events (train/configs/quickstart-remi.yaml);
#   4. generate pieces through the midi-generation pipeline (constrained: every piece decodes), to MIDI,
#      piano-roll PNG and WAV; harmonise the soprano of 4 test chorales (accompaniment), with Bach's own voices
#      beside them;
#   5. evaluate the model from its notes against the real test pieces (runs/quickstart/remi-eval/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV="${ABCGEN_VENV:-.venv}"
RUN="${ABCGEN_RUN:-runs/quickstart}"  # where everything is written (the quickstart's folder by default)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
ABCGEN="$VENV/bin/abcgen"
PY="$VENV/bin/python"

"$ABCGEN" data build --quiet --overwrite --remi --source music21:essenFolksong music21:bach --out "$RUN/corpus-base-remi"
if [ ! -f "$RUN/tokenizer-base/abcgen_tokenizer.json" ]; then
  "$ABCGEN" tokenizer train-base --overwrite --data "$RUN/corpus-base-remi" --out "$RUN/base-bpe"
  "$ABCGEN" tokenizer build --overwrite --base "$RUN/base-bpe" --data "$RUN/corpus-base-remi" \
    --out "$RUN/tokenizer-base" --units shipped
fi
"$PY" train/finetune.py --config train/configs/quickstart-remi.yaml --data.corpus "$RUN/corpus-base-remi" \
  --model.tokenizer "$RUN/tokenizer-base" --checkpoint.output_dir "$RUN/remi" --checkpoint.overwrite true "$@"
"$ABCGEN" generate --model "$RUN/remi/final" --meter 3/4 --key G --bars 8 --programs 40,41,42,43 --num 4 \
  --render png,wav --out "$RUN/remi-samples" --threads 2 --overwrite
"$PY" benchmarks/remi_accompaniment.py --model "$RUN/remi/final" --corpus "$RUN/corpus-base-remi" --num 4 \
  --out "$RUN/accompaniment" --json "$RUN/accompaniment.json"
"$ABCGEN" evaluate --model "$RUN/remi/final" --data "$RUN/corpus-base-remi" --num-samples 16 --seeds 3 --max-bars 16 \
  --perplexity-tunes 50 --threads 2 --quiet --out "$RUN/remi-eval" --overwrite
echo "REMI model: $RUN/remi/final; pieces: $RUN/remi-samples; accompaniment: $RUN/accompaniment; report: $RUN/remi-eval/report.md"
