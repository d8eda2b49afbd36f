"""A stand-in daemon for the kill -9 tests: `python -m tests.support.command_daemon MODE DIR`.

It starts command jobs the way the daemon does (a CommandHandler on a worker thread, the
process's shared warden) and writes what the test needs into DIR:
- `pids`: the command's processes, space-separated, once they all run;
- `warden`: the warden's pid, line after line (the `restart` mode writes the next one's too).

Modes:
- `session`: a command with a child in its group, one in a group of its own in the same session
  and one in a session of its own that kept the lifeline;
- `unannounced`: a command spawned with the lifeline but never announced to the warden (the
  daemon killed between the spawn and the announcement);
- `closed`: a command that closed every inherited descriptor (the lifeline too) and started a
  child in a group of its own: only its announced session finds them;
- `restart`: `closed`, then the warden is SIGKILLed; once another one runs, its pid is written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from services.engine.handlers import CommandHandler
from services.engine.handlers.warden import shared_warden
from tests.support.handler_funcs import make_context

SESSION = """
import os, subprocess, sys
kids = [
    subprocess.Popen(["sleep", "30"]),
    subprocess.Popen(["sleep", "30"], process_group=0),
    subprocess.Popen(["sleep", "30"], start_new_session=True, close_fds=False),
]
"""
CLOSED = """
import os, subprocess, sys
os.closerange(3, 65536)
kids = [subprocess.Popen(["sleep", "30"], process_group=0)]
"""
REPORT = """
path = sys.argv[1]
with open(path + ".tmp", "w") as out:
    out.write(" ".join(str(pid) for pid in [os.getpid(), *(kid.pid for kid in kids)]))
os.rename(path + ".tmp", path)
kids[0].wait()
"""


def run_command(script: str, pids: Path) -> threading.Thread:
    argv = [sys.executable, "-c", script + REPORT, str(pids)]
    ctx = make_context({"argv": argv}, job_type="command", timeout=60)
    handler = CommandHandler(allowlist=[sys.executable])
    worker = threading.Thread(target=handler.run, args=(ctx,), name="job-worker-0")
    worker.start()
    return worker


def write_warden_pid(folder: Path) -> int:
    warden = shared_warden()
    while (pid := warden.pid) is None:
        time.sleep(0.01)
    with (folder / "warden").open("a") as out:
        out.write(f"{pid}\n")
    return pid


def main(mode: str, folder: Path) -> None:
    pids = folder / "pids"
    if mode == "unannounced":
        lifeline = shared_warden().lifeline()
        leader = subprocess.Popen(["sleep", "30"], start_new_session=True, pass_fds=lifeline)
        pids.write_text(str(leader.pid))
        write_warden_pid(folder)
        leader.wait()
        return
    worker = run_command(SESSION if mode == "session" else CLOSED, pids)
    first = write_warden_pid(folder)
    if mode == "restart":
        while not pids.exists():
            time.sleep(0.01)
        os.kill(first, signal.SIGKILL)
        while shared_warden().pid in (None, first):
            time.sleep(0.01)
        write_warden_pid(folder)
    worker.join()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
