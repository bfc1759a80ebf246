#!/usr/bin/env bash
# The paper on one accelerator: throughput benchmarks (XOR, LeNet, devices, levels in
# one program against one per level, conv layouts), then Figures 3-6 (one-shot) and
# Figures 7-8 (iterative, both controls) at the paper's settings (5 seeds, 3 + 3 controls,
# 50,000 iterations, test accuracy every 100), Conv-2 on CIFAR-10 at the later version's settings
# ($LTH_CIFAR10_DIR; without it on synthetic data, marked so), the stored runs and the report in one folder,
# seconds per stage printed. Target: under 10 minutes of wall time on one H100/H200.
#
#   bash benchmarks/accelerator.sh OUT_DIR            # on the GPU machine (MNIST: $LTH_MNIST_DIR or download)
#   bash benchmarks/accelerator.sh OUT_DIR --tiny     # the same stages at toy sizes (a CPU check: tests)
#
# Every stage resumes: run the same command again after a kill. The benchmarks write their JSON
# into OUT_DIR/benchmarks/, the runs go to OUT_DIR/runs/mnist/, the report to OUT_DIR/report/.
set -euo pipefail
OUT="${1:?usage: bash benchmarks/accelerator.sh OUT_DIR [--tiny]}"
TINY="${2:-}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT/benchmarks" "$OUT/runs/mnist" "$OUT/report"
if [[ "$TINY" == "--tiny" ]]; then
  XOR=(--trials=20 --steps=200 --repeats=1 --variants=flax+vmap --optimizers=adam --both_xla_settings=false
       --sweep=false)
  LENET=(--trials=1 --steps=50 --eval_every=50 --repeats=1 --paired=1,2)  # the paired-batch programs at 1 x 2
  SCALING=(--counts=1 --xor_trials=20 --xor_steps=100 --lenet_trials=2 --lenet_steps=100 --repeats=1)
  MERGED=(--levels=100,50 --seeds=1 --controls=0 --iterations=100)
  CONV=(--seeds=1 --batch=10 --steps=50 --layouts=unrolled --repeats=1 --zoo=)
  CIFAR=(--synthetic --preset=smoke --iterations=10 --eval_every=5 --average_over=5 --stable_for=5 --batch_size=4
         --mode=oneshot --levels=100)
  MNIST=(--preset=smoke --iterations=100 --eval_every=100 --seeds=2 --controls=1,1
         --average_over=100 --stable_for=100)
  ONESHOT=(--levels=100,50) ITERATIVE=(--min_remaining=70)
else
  XOR=() LENET=(--trials=1,5,35,70) SCALING=(--real) MERGED=(--iterations=1000) CONV=(--steps=500)
  MNIST=(--preset=paper --seeds=5 --controls=3,3 --iterations=50000 --eval_every=100)
  ONESHOT=() ITERATIVE=()
  CIFAR=(--model=conv2 --preset=paper)
  [[ -n "${LTH_CIFAR10_DIR:-}" ]] || CIFAR+=(--synthetic)  # timing only: the figure needs the real data
fi
stage() {  # stage NAME COMMAND...: run it, print its seconds
  local name=$1 t0=$SECONDS
  shift
  echo "== $name: $*"
  "$@"
  echo "== $name: $((SECONDS - t0)) s"
}
stage "xor throughput" python -m benchmarks.xor_throughput "${XOR[@]}" --out="$OUT/benchmarks/xor_throughput.json"
stage "lenet throughput" python -m benchmarks.mnist_throughput "${LENET[@]}" \
  --out="$OUT/benchmarks/mnist_throughput.json"
stage "scaling" python -m benchmarks.scaling "${SCALING[@]}" --out="$OUT/benchmarks/scaling.json"
stage "merged levels" python -m benchmarks.merged_levels "${MERGED[@]}" --out="$OUT/benchmarks/merged_levels.json"
# Which conv layout a GPU should use (lth_jax.conv; the CPU's is "unrolled"): every layout, no PyTorch there.
stage "conv throughput" python -m benchmarks.conv_throughput "${CONV[@]}" --torch=false \
  --out="$OUT/benchmarks/conv_throughput.json"
stage "figures 3-6 (one-shot)" python -m experiments.mnist "${MNIST[@]}" "${ONESHOT[@]}" --mode=oneshot \
  --out_dir="$OUT/runs/mnist" --noprogress
stage "figures 7-8 (iterative)" python -m experiments.mnist "${MNIST[@]}" "${ITERATIVE[@]}" --mode=iterative \
  --out_dir="$OUT/runs/mnist" --noprogress
stage "cifar conv-2 (later version)" python -m experiments.cifar "${CIFAR[@]}" --out_dir="$OUT/runs/cifar" \
  --noprogress
stage "report" python -m experiments.report --runs_dir="$OUT/runs" --out_dir="$OUT/report"
echo "== total: $SECONDS s (results in $OUT)"
