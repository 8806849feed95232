#!/bin/sh
# Issue 36 part 2 on the CPU: fit's set-up and inference, before and after,
# in one run on the same machine (the checkout of BEFORE imported through
# PYTHONPATH, this checkout's benchmark scripts run against both).
# Usage: BEFORE=<checkout of 1e507ab> sh benchmarks/results/issue36_part2_before_after.sh [setup] [inference]
: "${BEFORE:?set BEFORE to a checkout of the code before}"
PY=${PY:-.venv/bin/python}
PARTS=${*:-setup inference}
for tree in "$BEFORE" .; do
    echo "== $tree"
    case $PARTS in *setup*)
        PYTHONPATH=$tree $PY -W ignore benchmarks/bench_fit_setup.py --sizes 8000x4000 160000x4096 --threads 2 --repeats 2;;
    esac
    case $PARTS in *inference*)
        PYTHONPATH=$tree $PY -W ignore benchmarks/bench_inference.py --features 8656 50000 --n-query 1000 --threads 2 --calls transform score_samples
        PYTHONPATH=$tree $PY -W ignore benchmarks/bench_inference.py --features 200000 --n-query 200 --threads 2 --repeats 2 --calls transform score_samples;;
    esac
done
