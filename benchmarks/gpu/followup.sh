#!/usr/bin/env bash
# A follow-up to check.sh for a lent GPU with device time left (about 4-5 minutes):
#   run(command="bash benchmarks/gpu/followup.sh", carry=[".whl", ".bench"], timeout_s=360)
# Training, 16 packed rows side by side per step, 30 steps each, tokens/s over steps 11 to 29
# (--warmup 10; the last step's operators are counted, untimed), $OUT/followup.json and
# followup.log (with the recompilations), in this order:
#   - leap-batched in fp32 (train.bf16 auto on CUDA), in bf16 autocast and with TF32 matrix
#     multiplies. A step small enough to be bound by launching kernels pays for every operator:
#     on 2 CPU cores bf16 autocast's step counted 7,892 operators against fp32's 5,913 (its
#     casts: 1,979; 840 of them the adapters' weights and their gradients, cast at every
#     micro-batch, the rest activations that each linear layer casts anew), while TF32 runs
#     fp32's operators on the tensor cores;
#   - every decoder layer compiled and replayed as a CUDA graph (train.compile: graphs; bf16,
#     then fp32): two graph launches per layer (forward, backward) instead of about 200
#     operators, the way to a step bound by the GPU's arithmetic rather than the host. Lanes are padded to multiples of 256 tokens, so
#     about 10 shapes are recorded in the first steps; cudagraph_skips in the JSON counts the
#     compiled graphs that ran without one (inductor's log says why);
#   - compiled layers without graphs in bf16, the step with its mid-step value reads back
#     (leap-batched-syncs: the labelled positions found on the device, every micro-batch's loss
#     checked for NaN) and compiled layers in fp32. On the H200 of 2026-11-28
#     `leap-batched-compile` measured 7.7 s per step over 8 steps, its steady state after one
#     step only; on 2 CPU cores (without the CPU's sparse dropout, which breaks the graph)
#     compiled layers compiled again at steps 2 and 3 (the first layer's input takes no
#     gradient; the count of lanes changes) and never after, sequence lengths becoming dynamic.
# What is done survives the time limit, which the last engines may not reach. Then
# $OUT/followup-rollout.json: 100 household episodes of horizon 2 without the prefix cache and
# with leap's decoding loop replaying a CUDA graph per step, with the operators each leaves to
# the host per agent step.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/gpu/env.sh || exit 1
if [ "$SIZE" = tiny ]; then
  model=(--model tiny-random); rows=(--episodes 8 --batch-size 4); steps=(--steps 4 --warmup 2)
  engines=leap-batched,leap-batched-compile-graphs,leap-batched-syncs; limit=(timeout 600)
  probe=(--episodes 3 --horizon 1); probe_limit=(timeout 300)
else
  model=(--model .bench/smollm2-shape --random-weights); rows=(--episodes 60 --batch-size 16)
  steps=(--steps 30 --warmup 10); limit=(timeout 260)
  engines=leap-batched,leap-batched-bf16,leap-batched-tf32,leap-batched-bf16-compile-graphs,leap-batched-compile-graphs
  engines=$engines,leap-batched-bf16-compile,leap-batched-syncs,leap-batched-compile
  probe=(--episodes 100 --horizon 2); probe_limit=(timeout 70)
fi
start=$(date +%s)
TORCH_LOGS=recompiles "${limit[@]}" python3 benchmarks/train_throughput.py "${model[@]}" --device "$DEVICE" \
  "${rows[@]}" "${steps[@]}" --engines "$engines" --count-ops --json "$OUT/followup.json" > "$OUT/followup.log" 2>&1
echo "followup: exit $? after $(( $(date +%s) - start )) s; $(grep -c 'Recompiling' "$OUT/followup.log") recompilations"
grep -v "it/s\]\|s/it\]\|it\]$\|__recompiles" "$OUT/followup.log" | tail -10

start=$(date +%s)
"${probe_limit[@]}" python3 benchmarks/rollout_throughput.py "${model[@]}" --device "$DEVICE" "${probe[@]}" \
  --modes lockstep-nocache,lockstep-graphs --count-ops --json "$OUT/followup-rollout.json" >> "$OUT/followup.log" 2>&1
echo "followup rollout: exit $? after $(( $(date +%s) - start )) s"
grep -v "it/s\]\|s/it\]\|it\]$" "$OUT/followup.log" | tail -8
