#!/usr/bin/env bash
# The candidates for issue 18's GPU targets in one call of a lent machine (at most about 9
# minutes: its time limits add up to 515 s),
# after `bash benchmarks/gpu/prepare.sh` here:
#   run(command="bash benchmarks/gpu/targets.sh", carry=[".whl", ".bench"], timeout_s=570)
# Where only one call fits a session's device time, this one before check.sh (check.sh asks
# why things are slow: cuDNN, kernels, profiles; this one measures what may meet the targets).
# Random weights of SmolLM2-135M's shapes, as in check.sh. Writes under $OUT:
#   targets-rollout.json, targets.log: 100 household episodes of horizon 20 (target: 20 s)
#     without the prefix cache (configs/household-gpu.yaml's; 77.3 s on the H200 of 2026-11-28)
#     and with leap's decoding loop replaying a CUDA graph per decoding pass (student.cache
#     graphs; graph_batches says how many generate calls replayed one);
#   targets-train.json, targets.log: 16 packed rows side by side per step (target: 100,000
#     tokens/s; 17,089 there), 30 steps each, tokens/s over steps 11 to 29 (--warmup 10; the
#     last step's operators are counted, untimed), with the recompilations, in this order:
#     - leap-batched in fp32 (train.bf16 auto on CUDA) and every decoder layer compiled and
#       replayed as a CUDA graph in bf16 (train.compile: graphs): two graph launches per layer
#       (forward, backward) instead of about 200 operators, the way to a step bound by the GPU's
#       arithmetic rather than its host. Lanes are padded to multiples of 256 tokens, so about
#       10 shapes are recorded in the first steps; cudagraph_skips in the JSON counts the
#       compiled graphs that ran without one (inductor's log says why). Then the same with the
#       batch copied to the GPU by the trainer from ordinary host memory (-blocking): each such
#       copy waits for the work queued on the device, so the host cannot prepare the next
#       micro-batch while a step computes (PrefixTreeCollator.copy_ahead); and with the log's
#       value reads at every step and a wait for the device to time each step (-logsync):
#       the others log every 10th step (train.logging_steps auto) and time steps with CUDA
#       events, so the host queues the steps between logs ahead of the device;
#     - eager bf16 autocast and TF32. A step bound by launching pays for every operator: on 2
#       CPU cores bf16 autocast's step counted 7,892 operators against fp32's 5,913 (its casts:
#       1,979; 840 of them the adapters' weights and their gradients, cast at every
#       micro-batch, the rest activations that each linear layer casts anew), while TF32 runs
#       fp32's operators on the tensor cores;
#     - graphs in fp32, compiled layers without graphs in bf16, the step with its mid-step value
#       reads back (leap-batched-syncs) and compiled layers in fp32 (7.7 s per step over 8 steps
#       on that H200, compiling again for new shapes then; compiled layers now compile once);
#       the time limit may cut these last ones;
#   targets-probe.json: 100 episodes of horizon 2, both rollout modes, with the operators each
#     leaves to the host per agent step (--count-ops).
# What is done survives the time limits. `DEVICE=cpu SIZE=tiny bash benchmarks/gpu/targets.sh`
# runs the same steps on a CPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/gpu/env.sh || exit 1
if [ "$SIZE" = tiny ]; then
  model=(--model tiny-random); rows=(--episodes 8 --batch-size 4); steps=(--steps 4 --warmup 2)
  engines=leap-batched,leap-batched-compile-graphs,leap-batched-syncs; train_limit=(timeout 600)
  roll=(--episodes 3 --horizon 2); probe=(--episodes 3 --horizon 1); roll_limit=(timeout 300)
else
  model=(--model .bench/smollm2-shape --random-weights); rows=(--episodes 60 --batch-size 16)
  steps=(--steps 30 --warmup 10); train_limit=(timeout 250)
  engines=leap-batched,leap-batched-bf16-compile-graphs,leap-batched-bf16-compile-graphs-blocking
  engines=$engines,leap-batched-bf16-compile-graphs-logsync
  engines=$engines,leap-batched-bf16,leap-batched-tf32,leap-batched-compile-graphs,leap-batched-bf16-compile
  engines=$engines,leap-batched-syncs,leap-batched-compile
  roll=(--episodes 100 --horizon 20); probe=(--episodes 100 --horizon 2); roll_limit=(timeout 190)
fi
log="$OUT/targets.log"
: > "$log"
clean() { grep -v "it/s\]\|s/it\]\|it\]$\|__recompiles" "$log" | tail -"$1"; }

start=$(date +%s)
"${roll_limit[@]}" python3 benchmarks/rollout_throughput.py "${model[@]}" --device "$DEVICE" "${roll[@]}" \
  --modes lockstep-nocache,lockstep-graphs --json "$OUT/targets-rollout.json" >> "$log" 2>&1
echo "rollout: exit $? after $(( $(date +%s) - start )) s"
clean 7

start=$(date +%s)
TORCH_LOGS=recompiles "${train_limit[@]}" python3 benchmarks/train_throughput.py "${model[@]}" --device "$DEVICE" \
  "${rows[@]}" "${steps[@]}" --engines "$engines" --count-ops --json "$OUT/targets-train.json" >> "$log" 2>&1
echo "train: exit $? after $(( $(date +%s) - start )) s; $(grep -c 'Recompiling' "$log") recompilations"
clean 14

start=$(date +%s)
timeout 75 python3 benchmarks/rollout_throughput.py "${model[@]}" --device "$DEVICE" "${probe[@]}" \
  --modes lockstep-nocache,lockstep-graphs --count-ops --json "$OUT/targets-probe.json" >> "$log" 2>&1
echo "probe: exit $? after $(( $(date +%s) - start )) s"
clean 7
