#!/usr/bin/env bash
# Issue 18's GPU measurements in one call of a lent machine (about 9 minutes), after
# `bash benchmarks/gpu/prepare.sh` here:
#   run(command="bash benchmarks/gpu/check.sh", carry=[".whl", ".bench"], timeout_s=600)
# Random weights of SmolLM2-135M's shapes (the same kernels; no weights to carry). Writes under
# $OUT: machine.txt, train.json/.log (leap's engine, 16 rows per step: one row per micro-batch,
# the step's rows padded into one micro-batch or concatenated into one sequence, with and without
# compiled layers; each engine's figures are saved as it ends), profile-leap-batched.txt (the
# PyTorch profiler's top operators of two such steps, one micro-batch of 16 rows), rollout.json/.log (100 household
# episodes of horizon 20: the growing cache without prefix reuse, the fastest there so far,
# against the static, compiled one, and against transformers' concatenating growing cache).
# On a CPU, `DEVICE=cpu SIZE=tiny bash benchmarks/gpu/check.sh` runs the same steps in seconds.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/leap-gpu-check}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}; SIZE=${SIZE:-full}
if [ -d .whl ] && [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "check: the wheels did not install" >&2; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# a fresh machine's home holds no converted models; nothing there needs them
[ "$DEVICE" = cuda ] && export LEAP_CACHE=${LEAP_CACHE:-/tmp/leap-cache}
if [ "$SIZE" = tiny ]; then
  model=(--model tiny-random); train=(--steps 2 --episodes 4); roll=(--episodes 3 --horizon 2)
  profile=(--episodes 4); limit=(timeout 300); short=(timeout 300)
else
  model=(--model .bench/smollm2-shape --random-weights); train=(--steps 8 --episodes 60 --batch-size 16)
  roll=(--episodes 100 --horizon 20); profile=(--episodes 60 --batch-size 16)
  limit=(timeout 230); short=(timeout 75)
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, transformers, peft, trl, datasets; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__)"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

start=$(date +%s)
"${limit[@]}" python3 benchmarks/train_throughput.py "${model[@]}" --device "$DEVICE" "${train[@]}" \
  --engines leap,leap-batched,leap-batched-compile,leap-concat,leap-compile --json "$OUT/train.json" > "$OUT/train.log" 2>&1
echo "train: exit $? after $(( $(date +%s) - start )) s"
grep -v "it/s\]\|s/it\]\|it\]$" "$OUT/train.log" | tail -14

# where a step's time goes: profiler steps 3 and 4 (the schedule waits one step, warms up one)
start=$(date +%s)
"${short[@]}" python3 benchmarks/train_throughput.py "${model[@]}" --device "$DEVICE" "${profile[@]}" \
  --steps 4 --engines leap-batched --profile "$OUT" > "$OUT/profile.log" 2>&1
echo "profile: exit $? after $(( $(date +%s) - start )) s"
head -c 1500 "$OUT/profile-leap-batched.txt" 2>/dev/null || tail -5 "$OUT/profile.log"

start=$(date +%s)
"${limit[@]}" python3 benchmarks/rollout_throughput.py "${model[@]}" --device "$DEVICE" "${roll[@]}" \
  --modes lockstep-nocache,lockstep-static,lockstep-nocache-concat --json "$OUT/rollout.json" > "$OUT/rollout.log" 2>&1
echo "rollout: exit $? after $(( $(date +%s) - start )) s"
tail -12 "$OUT/rollout.log"
