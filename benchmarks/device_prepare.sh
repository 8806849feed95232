#!/bin/sh
# Prepare, on the CPU, one run of device_check.py on a GPU machine lent by
# the device tool, so that its few minutes go to the measurements.
#
# Usage, from the checkout's root:  sh benchmarks/device_prepare.sh
#
# 1. Fetches into .whl/ (ignored through .git/info/exclude) the wheels of
#    what those machines lack: skorch, nibabel and nilearn, pure Python.
#    Their image has torch, scikit-learn, pandas, pytest-xdist and the rest.
# 2. Unless REHEARSE=0, rehearses the run here: a virtual environment like
#    the machines' (torch 2.11.0, the libraries their image holds, neither
#    this package nor the wheels' packages installed), a copy of what the
#    tool sends (the files git does not ignore, and .whl/), and in it
#    `sh benchmarks/device_run.sh rehearsal --device cpu --quick --also
#    "train beyond" "sprites budget"`. Every
#    step of its table must pass (the gpu tests skip). A first rehearsal
#    found that the steps could not import the package there.
#
# Then, in a session whose `status` shows a device, one call:
#   run(command='sh benchmarks/device_run.sh check --also "train beyond"', carry=[".whl"], timeout_s=540)
# (at most 450 s of steps, and the install) and read the table in its output
# (the logs: device_logs.tar.gz). Part 5, in a later device session of its
# own once that table shows the graphed estimator fast enough:
#   run(command='sh benchmarks/device_run.sh sprites --steps "sprites budget"', carry=[".whl"], timeout_s=600)
set -eu
SKORCH=${SKORCH:-1.4.0}
NIBABEL=${NIBABEL:-5.4.2}
NILEARN=${NILEARN:-0.14.1}
VENV=${VENV:-/tmp/device_rehearsal_venv}

git rev-parse --show-toplevel >/dev/null
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
    "skorch==$SKORCH" "nibabel==$NIBABEL" "nilearn==$NILEARN"
ls -l .whl
[ "${REHEARSE:-1}" = 0 ] && exit 0

if [ ! -x "$VENV/bin/python3" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch==2.11.0 numpy scipy scikit-learn pandas pytest pytest-xdist hypothesis \
        matplotlib safetensors accelerate joblib lxml requests tabulate tqdm packaging jinja2
fi
tree=$(mktemp -d)
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$tree"
cp -r .whl "$tree/"
mkdir "$tree/out"
cd "$tree"
# What the machine has: its python3 first on the path, no PYTHONPATH, no package installed.
rm -rf /tmp/site
PATH="$VENV/bin:$PATH" OUT="$tree/out" LOGS="$tree/logs" PYTHONPATH='' \
    sh benchmarks/device_run.sh rehearsal --device cpu --quick --also "train beyond" "sprites budget"
echo "rehearsal passed in $tree; logs packed in $tree/out/device_logs.tar.gz"
