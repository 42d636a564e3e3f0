#!/bin/bash
# Before/after pairs for a speed change: bench/run.py from two checkouts, in alternating
# processes per backend (each process also times the peers, keras.applications and timm, so
# the ratios ours/peer compare across the two even if the machine drifts).
#
#   bash bench/before_after.sh OLD_CHECKOUT NEW_CHECKOUT OUT_DIR [BACKENDS] [ONLY]
#
# BACKENDS: comma-separated (default torch,jax,tensorflow); ONLY: run.py's --only (default the
# BiT trio). Writes OUT_DIR/{old,new}-BACKEND.json; `python bench/report.py FILE` prints one.
# Run it alone on the machine: each process takes a few minutes at 224 px, batch 16.
set -euo pipefail
old=$(cd "$1" && pwd); new=$(cd "$2" && pwd); out=$3; mkdir -p "$out"
backends=${4:-torch,jax,tensorflow}; only=${5:-BiT,ResNet50V2,resnetv2}
python=${PYTHON:-python}
for backend in ${backends//,/ }; do
  for side in old new; do
    dir=$old; [ "$side" = new ] && dir=$new
    (cd "$dir" && PYTHONPATH="$dir" KERAS_BACKEND="$backend" "$python" bench/run.py --backend="$backend" \
      --parts=table --repeats=3 --min_seconds=2 --only="$only" --out="$out/$side-$backend.json" \
      > "$out/$side-$backend.log" 2>&1)
    echo "$(date -u +%T) $side $backend done"
  done
done
