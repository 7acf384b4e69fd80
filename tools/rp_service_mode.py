"""What RADICAL-Pilot 1.103's own service mode (TASK_SERVICE, info_pattern) does on a local
pilot, and why the radical backend does not use it (see asyncflow_radical/_services.py).

    bash packages/asyncflow-radical/tests/contained.sh tools/rp_service_mode.py

Printed on this machine (2 busy cores, ci.localhost, RADICAL-Pilot 1.103.2):

    31.6s pilot PMGR_ACTIVE
    61.9s plain.1 after slow service: DONE 29.4s after its submit
    61.9s svc.slow wait_info: no service info:  /
   103.0s svc.dies: TMGR_STAGING_OUTPUT_PENDING 127 | plain.2: AGENT_STAGING_INPUT_PENDING
   128.0s svc.args: no service info:  /  AGENT_STAGING_INPUT_PENDING

- a plain task submitted 1 s after a service waits out the service's whole startup_timeout
  (30 s): the agent starts services one at a time, inside the callback that takes in tasks;
- the wrapper (radical-pilot-service-wrapper) is not on a task's PATH, so the service exits
  127 and never comes up unless a pre_exec puts the virtualenv's bin/ there;
- a service that dies first, with no startup_timeout, stalls the agent's intake for good:
  every later task stays in AGENT_STAGING_INPUT_PENDING;
- the wrapper runs '%s %s' % (executable, ' '.join(arguments)) in a shell: quoting is lost.
"""
import os
import time

import radical.pilot as rp

FINAL = [rp.DONE, rp.FAILED, rp.CANCELED]
T0 = time.time()


def t() -> str:
    return f"{time.time() - T0:6.1f}s"


def service(uid: str, command: str, pattern: str, **fields: object) -> rp.TaskDescription:
    return rp.TaskDescription({"uid": uid, "mode": rp.TASK_SERVICE, "executable": "/bin/sh",
                               "arguments": ["-c", command], "info_pattern": pattern,
                               **fields})


def plain(uid: str) -> rp.TaskDescription:
    return rp.TaskDescription({"uid": uid, "executable": "/bin/echo", "arguments": ["hi"]})


session = rp.Session()
pmgr = None
try:
    pmgr = rp.PilotManager(session=session)
    tmgr = rp.TaskManager(session=session)
    seen: dict[str, list[tuple[str, str]]] = {}
    tmgr.register_callback(lambda task, state: seen.setdefault(task.uid, []).append(
        (t(), state)))
    pilot = pmgr.submit_pilots(rp.PilotDescription({
        "resource": os.environ.get("ASYNCFLOW_RADICAL_TEST_RESOURCE", "local.localhost"),
        "cores": 4, "runtime": 10, "exit_on_error": False}))
    tmgr.add_pilots(pilot)
    pilot.wait(state=[rp.PMGR_ACTIVE, *FINAL], timeout=300)
    print(t(), "pilot", pilot.state, flush=True)

    # 1. A service ready after 8 s, and a plain task submitted 1 s after it.
    slow = tmgr.submit_tasks(service("svc.slow", 'sleep 8; echo "ready now"; sleep 600',
                                     "stdout:ready", startup_timeout=30))
    submitted = time.time()
    time.sleep(1)
    first = tmgr.submit_tasks(plain("plain.1"))
    tmgr.wait_tasks(["plain.1"], timeout=60)
    print(t(), "plain.1 after slow service:", first.state,
          f"{time.time() - submitted - 1:.1f}s after its submit", flush=True)
    try:
        print(t(), "svc.slow info:", repr(slow.wait_info(timeout=30)), slow.state, flush=True)
    except Exception as exc:
        print(t(), "svc.slow wait_info:", exc, flush=True)

    # 2. A service that dies before it is ready (no startup_timeout), then a plain task.
    dies = tmgr.submit_tasks(service("svc.dies", "echo bye >&2; exit 3", "stdout:never"))
    time.sleep(1)
    second = tmgr.submit_tasks(plain("plain.2"))
    tmgr.wait_tasks(["plain.2", "svc.dies"], timeout=40)
    print(t(), "svc.dies:", dies.state, dies.exit_code, "| plain.2:", second.state,
          flush=True)

    # 3. Quoting of the arguments.
    quoted = tmgr.submit_tasks(service("svc.args", 'echo "a   b" ready; sleep 600',
                                       "stdout:ready", startup_timeout=20))
    try:
        print(t(), "svc.args info:", repr(quoted.wait_info(timeout=25)), quoted.state,
              flush=True)
    except Exception as exc:
        print(t(), "svc.args:", exc, quoted.state, flush=True)
    print("callbacks:")
    for uid, states in seen.items():
        print(" ", uid, states[-4:])
    tmgr.cancel_tasks(["svc.slow", "svc.dies", "svc.args"])
finally:
    if pmgr:
        pmgr.cancel_pilots(_timeout=60)
    session.close(download=False)
print(t(), "closed")
