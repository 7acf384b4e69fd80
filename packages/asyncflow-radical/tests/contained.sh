#!/usr/bin/env bash
# Run a Python program that starts RADICAL-Pilot pilots on this machine, contained.
#
#   bash packages/asyncflow-radical/tests/contained.sh -m pytest ...      (what run.sh does)
#   bash packages/asyncflow-radical/tests/contained.sh benchmarks/radical_overhead.py
#
# The arguments go to the Python of the active virtualenv ($VIRTUAL_ENV, else `python`).
# ASYNCFLOW_RADICAL_KEEP=1 keeps the temporary folder (pilot sandboxes, logs) for a post-mortem;
# ASYNCFLOW_RADICAL_TIMEOUT bounds the run (seconds, default 900).
#
# A pilot's ~40 daemons are double-forked but keep our process group, so the program runs as
# the leader of a new session (setsid) and whatever survives it is killed by group afterwards.
# HOME, TMPDIR and RADICAL's folders point into one temporary directory, removed at the end;
# the resource `ci.localhost` (resource_ci.json below) keeps every endpoint on loopback, gives
# the pilot fake cores, and puts no-op `ping`/`dig` first on the bootstrap's PATH so that the
# bootstrap never reaches out to its hard-coded NTP host.
set -uo pipefail

PYTHON=${PYTHON:-python}
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  PYTHON="$VIRTUAL_ENV/bin/python"
fi
PYTHON=$(command -v "$PYTHON")
LIMIT=${ASYNCFLOW_RADICAL_TIMEOUT:-900}
CORES=${ASYNCFLOW_RADICAL_TEST_CORES:-6}  # fake cores of a pilot on ci.localhost

BASE=$(mktemp -d -t asyncflow-rp.XXXXXX)
mkdir -p "$BASE/home" "$BASE/cfg/.radical/pilot/configs" "$BASE/shims" "$BASE/lfs" \
         "$BASE/client" "$BASE/tmp"
printf '#!/bin/sh\nexit 0\n' > "$BASE/shims/ping"
cp "$BASE/shims/ping" "$BASE/shims/dig"
chmod +x "$BASE/shims/ping" "$BASE/shims/dig"
cat > "$BASE/cfg/.radical/pilot/configs/resource_ci.json" <<JSON
{ "localhost": {
    "description": "asyncflow CI: this machine, loopback only, fork launcher",
    "default_schema": "local",
    "schemas": {"local": {"job_manager_endpoint": "fork://localhost/",
                          "filesystem_endpoint": "file://localhost/"}},
    "default_remote_workdir": "$BASE/home",
    "resource_manager": "FORK", "agent_config": "default",
    "agent_scheduler": "CONTINUOUS", "agent_spawner": "POPEN",
    "launch_methods": {"order": ["FORK"], "FORK": {}},
    "pre_bootstrap_0": ["export PATH=$BASE/shims:\$PATH"],
    "rp_version": "installed", "virtenv_mode": "local", "python_dist": "default",
    "cores_per_node": $CORES, "gpus_per_node": 0, "mem_per_node": 4096,
    "lfs_path_per_node": "$BASE/lfs", "lfs_size_per_node": 1024, "fake_resources": true,
    "network_interface": "lo",
    "raptor": {"hb_delay": 100, "hb_timeout": 400, "hb_frequency": 100},
    "system_architecture": {"oversubscribe": true}
} }
JSON

# Not for pip: nothing here installs anything.
export HOME="$BASE/home" TMPDIR="$BASE/tmp" RADICAL_PILOT_BASE="$BASE/client"
export RADICAL_CONFIG_USER_DIR="$BASE/cfg"
export ASYNCFLOW_RADICAL_TEST_RESOURCE=ci.localhost ASYNCFLOW_RADICAL_TEST_CORES="$CORES"
export RADICAL_DEFAULT_IFACE=lo RADICAL_REPORT=FALSE RADICAL_PROFILE=FALSE
export RADICAL_LOG_LVL=${RADICAL_LOG_LVL:-ERROR}

setsid timeout -k 10 "$LIMIT" "$PYTHON" "$@" &
LEADER=$!   # the process group of everything RADICAL-Pilot starts (tasks have their own)
wait "$LEADER"
RC=$?

# A clean shutdown leaves nothing; give exiting daemons a moment, then remove the rest.
for _ in $(seq 1 20); do pgrep -g "$LEADER" >/dev/null || break; sleep 0.5; done
if pgrep -g "$LEADER" >/dev/null; then
  echo "contained.sh: processes left behind:" >&2
  pgrep -a -g "$LEADER" | cut -c1-120 >&2
  kill -TERM -- "-$LEADER" 2>/dev/null; sleep 5; kill -KILL -- "-$LEADER" 2>/dev/null
  [ "$RC" -eq 0 ] && RC=1
fi
if [ "$RC" -ne 0 ]; then  # what the pilots said, for the CI log
  for f in "$BASE"/home/radical.pilot.sandbox/*/pilot.*/{bootstrap_0.out,agent_0.err}; do
    [ -s "$f" ] && { echo "---- ${f#"$BASE"/} (tail)" >&2; tail -n 30 "$f" >&2; }
  done
fi
if [ -n "${ASYNCFLOW_RADICAL_KEEP:-}" ]; then
  echo "contained.sh: kept $BASE (sandboxes and logs; RADICAL_LOG_LVL=DEBUG for more)" >&2
else
  rm -rf "$BASE"
fi
exit "$RC"
