"""supervisord event listener for `make run`: a process that gave up is started again, with a capped backoff, forever.

supervisord retries a process that exits within `startsecs` only `startretries` times (1 s, 2 s, 3 s apart), then
leaves it FATAL: down for good, and silently. Here each FATAL schedules a new start after 5 s, then 10, 20, 40 and
60 s at most for a process that keeps failing; a start that reaches RUNNING resets its backoff. Every decision is
one line on stderr (var/log/retry.log, shown in `make run`'s terminal).
"""

from __future__ import annotations

import os
import sys
import time
import xmlrpc.client

from supervisor import childutils

BACKOFF_FIRST_S = 5.0
BACKOFF_CAP_S = 60.0


def say(line: str) -> None:
    print(f"retry: {line}", file=sys.stderr, flush=True)


def main() -> None:
    rpc = childutils.getRPCInterface(os.environ)
    rounds: dict[str, int] = {}  # FATALs in a row, per "group:process"
    due: dict[str, float] = {}  # when to start each given-up process again (time.monotonic())
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers["eventname"]
        if event.startswith("PROCESS_STATE_"):
            fields = childutils.get_headers(payload.split("\n", 1)[0])
            name = f"{fields['groupname']}:{fields['processname']}"
            if event == "PROCESS_STATE_FATAL":
                rounds[name] = rounds.get(name, 0) + 1
                delay = min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2 ** (rounds[name] - 1))
                due[name] = time.monotonic() + delay
                say(f"{name} keeps failing to start (gave up {rounds[name]} time(s) in a row); "
                    f"starting it again in {delay:.0f} s (see its log)")
            elif event == "PROCESS_STATE_RUNNING" and rounds.pop(name, None):
                due.pop(name, None)
                say(f"{name} is running again")
        else:  # TICK_5: start what is due
            for name, at in list(due.items()):
                if time.monotonic() >= at:
                    del due[name]
                    try:
                        rpc.supervisor.startProcess(name, False)
                    except xmlrpc.client.Fault as fault:  # e.g. ALREADY_STARTED: someone started it by hand
                        say(f"{name}: {fault.faultString}")
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
