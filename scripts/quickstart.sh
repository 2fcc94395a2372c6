#!/usr/bin/env bash
# The main job end to end on the embedded corpus, offline, on CPU:
#   1. build two corpora: a base corpus (Essen folk songs + Bach chorales) and a fine-tuning corpus (Irish
#      dance tunes: O'Neill's 1850 + Ryan's Mammoth);
#   2. train a byte-level BPE base tokenizer and extend it with music units and controls;
#   3. train a small Llama from scratch on the base corpus (offline, there is no pretrained model to download);
#   4. fine-tune it with LoRA on the Irish tunes with rhythm/key/meter controls;
#   5. generate conditioned jigs through the abc-generation pipeline (constrained decoding), render them
#      to MIDI, WAV and PNG;
#   6. evaluate the model against real test tunes (report.md, plots), write the model card and the hub
#      repository to a local folder (no push), and print a report.
# To fine-tune a real hub model instead, skip 2-3 and run stage 4 with --model.name_or_path HUB_ID
# (e.g. Qwen/Qwen2.5-0.5B; see train/configs/qwen2.5-0.5b-lora.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV="${ABCGEN_VENV:-.venv}"
RUN=runs/quickstart
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
ABCGEN="$VENV/bin/abcgen"
PY="$VENV/bin/python"

# Outputs are never replaced silently: a re-run of the quickstart replaces its own earlier outputs, so every
# command that writes one says --overwrite (each is written beside the old one and swapped in when complete).
"$ABCGEN" data build --quiet --overwrite --source music21:essenFolksong music21:bach --out "$RUN/corpus-base"
"$ABCGEN" data build --quiet --overwrite --source music21:oneills1850 music21:ryansMammoth --out "$RUN/corpus-finetune"
"$ABCGEN" tokenizer train-base --overwrite --data "$RUN/corpus-base" --out "$RUN/base-bpe"
"$ABCGEN" tokenizer build --overwrite --base "$RUN/base-bpe" --data "$RUN/corpus-base" --out "$RUN/tokenizer-base" \
  --units shipped
"$PY" train/finetune.py --config train/configs/quickstart-base.yaml --checkpoint.overwrite true "$@"
"$PY" train/finetune.py --config train/configs/quickstart-lora.yaml --checkpoint.overwrite true "$@"
"$ABCGEN" generate --model "$RUN/lora/final" --rhythm jig --meter 6/8 --key D --bars 16 --num 4 \
  --render mid,wav,png --out "$RUN/samples" --threads 2 --overwrite
"$ABCGEN" evaluate --model "$RUN/lora/final" --data "$RUN/corpus-finetune" --num-samples 16 --seeds 3 \
  --perplexity-tunes 50 --threads 2 --quiet --out "$RUN/eval" --overwrite
"$ABCGEN" publish --model "$RUN/lora/final" --repo-id local/abcgen-quickstart --report "$RUN/eval" \
  --local-dir "$RUN/hub" --overwrite
"$PY" scripts/quickstart_report.py "$RUN"
