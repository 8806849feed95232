#!/bin/sh
# Issue 33: training and inference speed before (a checkout of 4e0db53, the
# commit before the renovation, at $BEFORE) and after (this tree), run in
# alternation on one machine so that both see the same load.
#   BEFORE=/path/to/checkout-of-4e0db53 sh benchmarks/results/issue33_before_after.sh
set -e
BEFORE=${BEFORE:?set BEFORE to a checkout of 4e0db53}
AFTER=$(pwd)
PY=${PY:-$AFTER/.venv/bin/python}
export OMP_NUM_THREADS=1
for round in 1 2; do
  for side in before after; do
    if [ $side = before ]; then tree=$BEFORE; else tree=$AFTER; fi
    echo "## round $round, $side ($tree)"
    (cd "$tree" && PYTHONPATH="$tree" "$PY" -W ignore benchmarks/bench_training.py --epochs 4 \
       --datasets digits lowrank --size 8000 2000 --methods estimator "plain loop")
    (cd "$tree" && PYTHONPATH="$tree" "$PY" -W ignore benchmarks/bench_inference.py \
       --features 8656 --n-query 1000 --repeats 3 --threads 1)
  done
done
