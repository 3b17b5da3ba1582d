#!/usr/bin/env bash
# GPU check for the trainer and studies, sized for ONE H100 (or A100/H200) in under 10 minutes.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, venv with a CUDA torch active
#   OUT=/tmp/gpu_check CIFAR=shared/data/cifar10 bash benchmarks/gpu_check.sh
#
# Steps (each bounded by `timeout`, budget in brackets; a failing step is recorded and the rest go on):
#   1. environment: nvidia-smi, torch/CUDA versions                                   [~10 s]
#   2. bench_train.py on cuda: tiny + All-CNN-C, batch 512, ratio vs plain loop       [<= 90 s]
#   3. default-style study on the GPU: tiny x 5 operators x 3 seeds, textures, fast   [<= 120 s]
#      recipe, 10 epochs (bf16 autocast, channels_last); rerun must skip everything    [<= 30 s]
#   4. torch.compile path: one tiny run with --compile                                 [<= 90 s]
#   5. All-CNN-C: Model C base vs All-CNN-C (papers.md 1.3 "paper" recipe shortened to  [<= 240 s]
#      15 epochs, no augmentation) on CIFAR-10 if $CIFAR (npz dir) exists, else textures
#   6. GPU packing: ResNet-20 runs/hour at --jobs 1/2/4/8 on the one device              [<= 300 s]
# Everything lands in $OUT (default ./gpu_check_out): logs, JSON results, study dirs, summary.txt.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
CIFAR=${CIFAR:-shared/data/cifar10}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  local t0=$(date +%s)
  echo "=== $name (limit ${secs}s): $*" | tee -a "$SUMMARY"
  timeout --signal=INT --kill-after=15 "$secs" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "--- $name: exit $rc after $(( $(date +%s) - t0 )) s" | tee -a "$SUMMARY"
  tail -n 25 "$OUT/$name.log" >> "$SUMMARY"
  return 0
}

step env 30 bash -c 'nvidia-smi; python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0))"'

python - <<'PY' || { echo "CUDA is not available: nothing to check" | tee -a "$SUMMARY"; exit 1; }
import sys, torch
sys.exit(0 if torch.cuda.is_available() else 1)
PY

step bench 90 python benchmarks/bench_train.py --device cuda --models tiny,allcnn-c --rounds 3

STUDY="$OUT/study_tiny"
step study 120 poolstride compare --device cuda --recipe fast --epochs 10 --seeds 3 \
  --variants max,avg,conv,convpool,blur --out "$STUDY" --no-report
step study_resume 30 poolstride compare --device cuda --recipe fast --epochs 10 --seeds 3 \
  --variants max,avg,conv,convpool,blur --out "$STUDY" --json
python - "$OUT/study_resume.log" <<'PY' | tee -a "$SUMMARY"
import json, sys
text = open(sys.argv[1]).read()
try:
    s = json.loads(text[text.index("{"):])
    print(f"resume check: runs_done={s['runs_done']}/{s['runs_total']} complete={s['complete']}")
    for v in s["variants"]:
        print(f"  {v['name']:10s} acc {v['acc_mean']} ci {v['acc_ci95']} shift {v.get('shift_consistency_mean')}"
              f" img/s {v.get('images_per_s_mean')}")
except Exception as e:  # noqa: BLE001
    print("resume check: could not parse the summary:", e)
PY

step compile 90 poolstride train --device cuda --recipe fast --epochs 3 --downsample blur --compile \
  --out "$OUT/run_compile" --json

if [ -f "$CIFAR/test.npz" ]; then DATA="npz:$CIFAR"; else DATA=textures; fi
step allcnn 240 poolstride compare --device cuda --model allcnn-c --dataset "$DATA" --recipe paper \
  --epochs 15 --seeds 1 --variants allcnn-c:base,allcnn-c:all-cnn --out "$OUT/study_allcnn" --no-report

# 6. GPU packing: ResNet-20 runs/hour with --jobs 1/2/4/8 worker processes sharing the one device  [<= 4 x 75 s]
for J in 1 2 4 8; do
  step "pack_j$J" 75 poolstride compare --device cuda --model resnet20 --dataset "$DATA" --recipe demo --epochs 2 \
    --seeds 8 --variants max --jobs "$J" --out "$OUT/pack_j$J" --no-report
done
python - "$OUT" <<'PY' | tee -a "$SUMMARY"
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
for j in (1, 2, 4, 8):
    log = (out / f"pack_j{j}.log").read_text() if (out / f"pack_j{j}.log").exists() else ""
    m = re.search(r"study directory: \S+\s+\(([0-9.]+) s\)", log)
    runs = len(list((out / f"pack_j{j}").rglob("result.json")))
    if m and runs:
        print(f"packing --jobs {j}: {runs} ResNet-20 runs in {float(m.group(1)):.1f} s = "
              f"{runs * 3600 / float(m.group(1)):.0f} runs/hour")
    else:
        print(f"packing --jobs {j}: no timing ({runs} runs finished)")
PY

echo "=== done; see $SUMMARY" | tee -a "$SUMMARY"
