#!/usr/bin/env bash
# Issue 7's GPU measurement in one command: training throughput and memory on the Llama-3.2-1B shape
# (abcgen's loop against the Trainer + peft baselines) and constrained-decoding overhead at batch 8 and 64.
# Offline, installs nothing, needs torch + transformers + peft + accelerate (not datasets, music21 or
# abctoolkit: the training data are the committed example lengths, benchmarks/data/abc_example_lengths.json).
#
#   bash benchmarks/gpu_check.sh                         # one CUDA GPU; JSON into $OUT, else benchmarks/results/
#   bash benchmarks/gpu_check.sh --device cpu --quick --block-corpus-imports   # dry run on a CPU machine
#
# Time on one H100/H200 (estimated, not yet measured): ~15 s imports, then training set-ups until a
# 170 s budget is used (each started only if the longest so far still fits; compiled set-ups spend
# ~40-70 s compiling in their warm-up steps), hard-stopped at 200 s; generation hard-stopped at 60 s.
# Worst case ~265 s. Each JSON is rewritten after every set-up, so a stopped part keeps what it measured.
#
# --quick shrinks everything (tiny model, 2 timed steps, 600 examples, aot_eager compilation, one batch per
# condition set, 64 new tokens): it checks the scripts, its numbers mean nothing. --block-corpus-imports
# runs Python with datasets, music21 and abctoolkit made unimportable, as on the GPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda
quick=0
block=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --block-corpus-imports) block=1; shift ;;
    *) echo "unknown option $1 (use --device cuda|cpu, --quick, --block-corpus-imports)" >&2; exit 2 ;;
  esac
done

results="${OUT:-benchmarks/results}"
mkdir -p "$results"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1

if [ "$block" = 1 ]; then
  blocker="$(mktemp -d)"
  trap 'rm -rf "$blocker"' EXIT
  cat > "$blocker/sitecustomize.py" <<'PY'
"""Make the corpus-only packages look not installed, as on the GPU machine: no spec, no metadata, and an
import raises ModuleNotFoundError."""
import importlib.abc
import importlib.metadata
import importlib.util
import sys

BLOCKED = {"datasets", "music21", "abctoolkit"}


def _blocked(name):
    return name.split(".")[0] in BLOCKED


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if _blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r} (gpu_check.sh --block-corpus-imports)", name=name)
        return None


_find_spec, _distribution = importlib.util.find_spec, importlib.metadata.distribution


def find_spec(name, package=None):
    return None if _blocked(name) else _find_spec(name, package)


def distribution(name):
    if _blocked(name):
        raise importlib.metadata.PackageNotFoundError(name)
    return _distribution(name)


importlib.util.find_spec, importlib.metadata.distribution = find_spec, distribution
sys.meta_path.insert(0, _Absent())
PY
  export PYTHONPATH="$blocker${PYTHONPATH:+:$PYTHONPATH}"
  python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('music21') is not None)" \
    && ! python -c "import datasets" 2>/dev/null || { echo "the import blocker does not work" >&2; exit 2; }
  echo "datasets, music21 and abctoolkit are blocked"
fi

python - <<'PY'
import platform, torch, transformers, peft, accelerate
print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"peft {peft.__version__}, accelerate {accelerate.__version__}, "
      f"device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}")
PY

status=0
start=$(date +%s)
if [ "$device" = cuda ] && [ "$quick" = 0 ]; then
  train_out="$results/train_throughput_gpu_llama-1b.json"
  gen_out="$results/generation_gpu.json"
  timeout 200 python benchmarks/train_throughput.py --shape llama-1b --data lengths --device cuda \
    --time-budget 170 --out "$train_out" || status=$?
  timeout 60 python benchmarks/generation.py --device cuda --shape small --batches 8,64 --num 8 \
    --out "$gen_out" || status=$?
else
  suffix="dryrun_${device}"
  train_out="$results/train_throughput_${suffix}.json"
  gen_out="$results/generation_${suffix}.json"
  shape=llama-1b
  [ "$device" = cpu ] && shape=tiny
  OMP_NUM_THREADS=1 timeout 900 python benchmarks/train_throughput.py --shape "$shape" --data lengths \
    --device "$device" --quick --compile-backend aot_eager --out "$train_out" || status=$?
  OMP_NUM_THREADS=1 timeout 600 python benchmarks/generation.py --device "$device" --shape tiny --batches 8,64 \
    --quick --out "$gen_out" || status=$?
fi

python - "$train_out" "$gen_out" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
from pathlib import Path

train_path, gen_path, seconds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
print(f"--- summary ({seconds} s)")
if train_path.is_file():
    train = json.loads(train_path.read_text())
    for s in train["setups"]:
        shown = {k: s[k] for k in ("useful_tokens_per_s", "padding_share", "mfu_4N", "peak_memory_gb",
                                   "peak_memory_above_start_gb", "warmup_seconds", "attn_implementation",
                                   "error", "skipped") if s.get(k) is not None}
        print(f"{s['setup']:28s} {json.dumps(shown)}")
    wanted = {k: v for k, v in train["ratios_useful_tokens_per_s"].items() if k.endswith("/trainer_naive_pack")}
    print("ratios to trainer_naive_pack:", json.dumps(wanted))
    print("consistency:", json.dumps({k: v for k, v in train["consistency"].items() if "spread" in k}))
else:
    print(f"no {train_path}")
if gen_path.is_file():
    gen = json.loads(gen_path.read_text())
    print("constraint overhead by batch:", json.dumps({b: r["constraint_overhead"]
                                                       for b, r in gen["results_by_batch"].items()}))
else:
    print(f"no {gen_path}")
PY
exit $status
