"""Pinned processes, their CPU time and memory, and making sure none outlives the run.

Every server and load generator starts in a session of its own (so its whole process
group can be stopped), pinned with taskset, and is written down in the run folder's
`pgids` file, which bench/run.sh's exit trap reads too in case Python itself dies.
"""

import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Procs:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.live = []
        self.pgid_file = run_dir / "pgids"
        atexit.register(self.stop_all)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        print(f"bench: stopping on signal {signum}", file=sys.stderr)
        sys.exit(128 + signum)

    def spawn(self, cmd, cpu=None, log=None, stdin=None, stdout=None, env=None):
        """Starts cmd pinned to `cpu` (a taskset list) in its own session."""
        argv = (["taskset", "-c", cpu] if cpu is not None else []) + [str(c) for c in cmd]
        out = stdout if stdout is not None else (open(log, "ab") if log else subprocess.DEVNULL)
        err = (open(log, "ab") if log else subprocess.DEVNULL)
        proc = subprocess.Popen(
            argv, stdin=stdin if stdin is not None else subprocess.DEVNULL, stdout=out,
            stderr=err, env=env, start_new_session=True)
        self.live.append(proc)
        with open(self.pgid_file, "a") as f:
            f.write(f"{proc.pid}\n")
        return proc

    def run(self, cmd, cpu=None, timeout=None, env=None):
        """Runs cmd to completion (pinned, in its own session) and returns its output."""
        proc = self.spawn(cmd, cpu=cpu, stdout=subprocess.PIPE, env=env)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise
        finally:
            self.forget(proc)
        return proc.returncode, out.decode(errors="replace")

    def forget(self, proc):
        if proc in self.live:
            self.live.remove(proc)

    def stop(self, proc, grace=3.0):
        """SIGTERM to the process group, then SIGKILL after `grace` seconds."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group, if any
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.forget(proc)

    def stop_all(self):
        for proc in list(self.live):
            self.stop(proc, grace=2.0)


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name is in parentheses and may hold spaces; fields follow it.
    return text[text.rindex(")") + 2:].split()


def children(pid):
    """Direct children of pid."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
        return out
    except OSError:
        pass
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(entry)[1]) == pid:
                    out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def tree(pid):
    """pid and all its descendants that are alive."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            pids.append(p)
            todo += children(p)
    return pids


def cpu_seconds(root_pid):
    """User+system CPU time of a process tree: every live member, plus the children
    the root has already reaped (cutime/cstime), so a worker that exits is not lost."""
    total = 0
    for p in tree(root_pid):
        try:
            fields = _stat_fields(p)
        except OSError:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        total += int(fields[11]) + int(fields[12])
        if p == root_pid:
            total += int(fields[13]) + int(fields[14])
    return total / CLOCK_TICKS


def rss_bytes(root_pid):
    """Resident memory of a process tree (VmRSS summed)."""
    total = 0
    for p in tree(root_pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def wait_until(check, timeout, interval=0.01):
    """Polls check() until it is truthy or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def pss_bytes(root_pid):
    """Proportional set size of a process tree: shared pages split among the processes
    sharing them, so a master and its forked worker are not counted twice."""
    total = 0
    for p in tree(root_pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total
