#!/bin/sh
# Run device_check.py on a GPU machine that has torch but not this package's
# other needs (the device tool's machines: see device_prepare.sh, which
# fetches the wheels into .whl/ and rehearses this script on the CPU).
#
# Usage, from the checkout's root:
#   sh benchmarks/device_run.sh NAME [device_check.py arguments ...]
# e.g. the check and issue 36's part 4 in one budget (7.5 minutes):
#   sh benchmarks/device_run.sh check --also "train beyond"
#
# Installs the wheels in .whl/ once per machine (into /tmp/site, with no
# index: the machine reaches nothing), writes the logs of run NAME to $LOGS/NAME
# (default /tmp/device_logs), and packs every run's logs into one file,
# $OUT/device_logs.tar.gz, when OUT is set: the tool brings back at most 8
# files, and a check with --also writes 9. The summary table goes to stdout too.
# Exits with device_check.py's code.
set -u
name=${1:?usage: sh benchmarks/device_run.sh NAME [device_check.py arguments ...]}
shift
logs=${LOGS:-/tmp/device_logs}
site=/tmp/site
if [ ! -e "$site/.installed" ]; then  # a marker: an install cut short is redone
    rm -rf "$site"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl \
        || { echo "device_run.sh: could not install the wheels in .whl/" >&2; exit 2; }
    touch "$site/.installed"
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
python3 benchmarks/device_check.py --out "$logs/$name" "$@"
code=$?
if [ -n "${OUT:-}" ]; then
    tar -czf "$OUT/device_logs.tar.gz" -C "$logs" .
fi
exit $code
