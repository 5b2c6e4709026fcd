#!/usr/bin/env bash
# One command for issue 7: regenerates bench/BENCHMARKS.md (drainpipe beside nginx,
# h2o, HAProxy and hyper). `bench/run.sh --help` for options; `--quick` is a smoke test;
# `--only two-cores` runs issue 17's scenario alone (every server with two workers on CPUs 0,1).
# The work is done by bench/run.py; this wrapper checks for python3 and makes sure no
# server it started outlives it (run.py also ends its children on exit and on signals).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v python3 >/dev/null || { echo "bench/run.sh: python3 is required (apt-get install -y python3)" >&2; exit 1; }

child=""
cleanup() {
  # run.py's servers run in their own process groups, each with PR_SET_PDEATHSIG;
  # if run.py itself is still alive (e.g. Ctrl-C reached only this shell), end it.
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 "$here/run.py" "$@" &
child=$!
set +e
wait "$child"
rc=$?
# `wait` returns early when a trapped signal arrives; wait again for the real status.
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
child=""
exit "$rc"
