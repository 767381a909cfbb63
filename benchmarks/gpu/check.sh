#!/usr/bin/env bash
# Issue 18's GPU measurements in one call of a lent machine (about 8 minutes), after
# `bash benchmarks/gpu/prepare.sh` here:
#   run(command="bash benchmarks/gpu/check.sh", carry=[".whl", ".bench"], timeout_s=600)
# Random weights of SmolLM2-135M's shapes (the same kernels; no weights to carry). What it asks
# follows from the H200 run of 2026-11-28 (docs/results/speed/gpu-h200-2026-11-28/): 16 packed
# rows per micro-batch in fp32 was the fastest training step there (GPU-bound, fp32 matrix
# multiplies half of it), bf16 autocast was 1.9x slower, and 100 household episodes in bf16 took
# 77 s (about 90 ms per decoding step). The suspect for both (leap.models.attention_kernels):
# PyTorch >= 2.10 tries cuDNN's attention first on an H200 in bf16, and cuDNN builds a plan for
# every new shape; leap now leaves cuDNN out. This check measures that, with and without cuDNN.
# Writes under $OUT (8 files, the most a call brings back):
#   machine.txt: the GPU, the versions, cuDNN's version and SDPA's kernel order;
#   kernels.log: benchmarks/attention_kernels.py, each attention kernel on leap's decoding and
#     training shapes, a new shape every call and one shape repeated;
#   train.json/.log: leap-batched (16 rows per micro-batch, side by side in lanes) in fp32
#     (train.bf16 auto on CUDA), in bf16 autocast without cuDNN (leap's default now) and with it
#     (PyTorch's own order), in fp32 with each row padded to the longest (before lanes), and in
#     fp32 with the tree mask built on the host and copied (before it was built on the GPU; the
#     limit may cut this last one); each engine's operators of its last step (--count-ops; on 2
#     CPU cores 5,913 in fp32 and 7,892 in bf16, whose casts add 1,979);
#   profile-leap-batched-bf16.txt: the PyTorch profiler's top operators of two bf16 steps
#     without cuDNN (the fp32 step's profile is in the 2026-11-28 record);
#   rollout.json/.log: 100 household episodes of horizon 20 without the prefix cache
#     (configs/household-gpu.yaml's), with leap's decoding loop replaying a CUDA graph per step
#     (student.cache graphs; graph_batches says how many generate calls replayed one), without
#     the prefix cache with cuDNN allowed, and with the prefix cache (the limit may cut the last);
#     and
#     benchmarks/choice_decoding.py (constrained decoding's host cost per agent step, with and
#     without leap's savings);
#   profile-rollout-lockstep-nocache.txt: 100 episodes of horizon 2 under the PyTorch profiler and
#     cProfile: where a decoding step's time goes (the device's kernels or the host's Python),
#     and in rollout.log its operators per forward pass (--count-ops).
# On a CPU, `DEVICE=cpu SIZE=tiny bash benchmarks/gpu/check.sh` runs the same steps in a minute.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/gpu/env.sh || exit 1
if [ "$SIZE" = tiny ]; then
  model=(--model tiny-random); rows=(--episodes 4 --batch-size 4); steps=3; roll=(--episodes 3 --horizon 2)
  engines=leap-batched,leap-batched-bf16; probe=(--episodes 3 --horizon 1)
  kernels=(--rows 8 --train-rows 2 --train-length 64 --calls 3)
  kernel_limit=(timeout 120); train_limit=(timeout 300); profile_limit=(timeout 300); roll_limit=(timeout 300)
else
  model=(--model .bench/smollm2-shape --random-weights); rows=(--episodes 60 --batch-size 16); steps=8
  roll=(--episodes 100 --horizon 20); engines=leap-batched,leap-batched-bf16,leap-batched-bf16-cudnn,leap-batched-padded,leap-batched-hostmask
  probe=(--episodes 100 --horizon 2); kernels=(--calls 12)
  kernel_limit=(timeout 75); train_limit=(timeout 180); profile_limit=(timeout 80); roll_limit=(timeout 210)
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  uname -r
  python3 -c "import torch, transformers, peft, trl, datasets; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__); \
x = torch.ones(1, 1, 8, 64, device='$DEVICE', dtype=torch.bfloat16); torch.nn.functional.scaled_dot_product_attention(x, x, x); \
print('cuDNN', torch.backends.cudnn.version(), 'SDPA kernel order', torch._C._get_sdp_priority_order(), \
'(0 math, 1 flash, 2 efficient, 3 cudnn; set at the first call)'); \
import transformers.integrations.sdpa_attention as a; print('decoding without copying grouped keys (pack_gqa):', hasattr(a, 'pack_gqa'))"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
clean() { grep -v "it/s\]\|s/it\]\|it\]$" "$1" | tail -"$2"; }

start=$(date +%s)
"${kernel_limit[@]}" python3 benchmarks/attention_kernels.py --device "$DEVICE" "${kernels[@]}" > "$OUT/kernels.log" 2>&1
echo "kernels: exit $? after $(( $(date +%s) - start )) s"
grep -v "^decode \|^train " "$OUT/kernels.log" | tail -16

start=$(date +%s)
"${train_limit[@]}" python3 benchmarks/train_throughput.py "${model[@]}" --device "$DEVICE" "${rows[@]}" \
  --steps "$steps" --engines "$engines" --count-ops --json "$OUT/train.json" > "$OUT/train.log" 2>&1
echo "train: exit $? after $(( $(date +%s) - start )) s"
clean "$OUT/train.log" 10

# the profiler records steps 3 and 4 (its schedule waits one step and warms up one)
for engine in leap-batched-bf16; do
  start=$(date +%s)
  "${profile_limit[@]}" python3 benchmarks/train_throughput.py "${model[@]}" --device "$DEVICE" "${rows[@]}" \
    --steps 4 --engines "$engine" --profile "$OUT" >> "$OUT/train.log" 2>&1
  echo "profile $engine: exit $? after $(( $(date +%s) - start )) s"
  head -c 1200 "$OUT/profile-$engine.txt" 2>/dev/null; echo
done

start=$(date +%s)
"${roll_limit[@]}" python3 benchmarks/rollout_throughput.py "${model[@]}" --device "$DEVICE" "${roll[@]}" \
  --modes lockstep-nocache,lockstep-graphs,lockstep-nocache-cudnn,lockstep --json "$OUT/rollout.json" > "$OUT/rollout.log" 2>&1
echo "rollout: exit $? after $(( $(date +%s) - start )) s"
clean "$OUT/rollout.log" 8

"${kernel_limit[@]}" python3 benchmarks/choice_decoding.py "${model[0]}" "${model[1]}" --device "$DEVICE" --rows 100 \
  2>&1 | tee -a "$OUT/rollout.log"

start=$(date +%s)
"${profile_limit[@]}" python3 benchmarks/rollout_throughput.py "${model[@]}" --device "$DEVICE" "${probe[@]}" \
  --modes lockstep-nocache --profile "$OUT" --count-ops >> "$OUT/rollout.log" 2>&1
echo "rollout profile: exit $? after $(( $(date +%s) - start )) s"
grep -m1 -A 14 "cumulative" "$OUT/profile-rollout-lockstep-nocache.txt" 2>/dev/null | cut -c1-160
