#!/usr/bin/env bash
# This package's tests, against real RADICAL-Pilot pilots on this machine, contained (see
# contained.sh: own process group, temporary HOME and RADICAL folders, loopback only).
#
#   bash packages/asyncflow-radical/tests/run.sh [pytest args]
#
# The root noxfile runs it inside the session's virtualenv.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASETEMP=$(mktemp -d -t asyncflow-rp-pytest.XXXXXX)
bash "$HERE/contained.sh" -m pytest -p no:cacheprovider --basetemp="$BASETEMP" "$HERE" "$@"
RC=$?
rm -rf "$BASETEMP"
exit "$RC"
