#!/usr/bin/env bash
# Runs the whole test suite (unit, rules, PTF conformance on the embedded DPDK target, end to end).
set -uo pipefail
cd "$(dirname "$0")/.."
./.venv/bin/python -m pytest -q -p no:cacheprovider --timeout=900 "$@" tests
rc=$?
# pytest exit 5 = no tests collected: that is a failure of the suite, not a pass.
exit $rc
