"""Processes of the real servers tests start (Ray nodes, ``mlflow server``): free loopback ports, the
process tree of a session read from /proc, and stopping it for good.

A server started with ``start_new_session=True`` leads a session whose id is its pid; its children may
start sessions of their own (Ray's workers do), so a tree is followed by parent pid as well.
"""

from __future__ import annotations

import os
import signal
import socket
import time


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (all held open together, so no duplicates)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, session id, state) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            table[pid] = (int(fields[1]), int(fields[3]), fields[0])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return table


def session_tree(session_id: int) -> set[int]:
    """Live processes of session ``session_id`` and all their descendants (whatever their session)."""
    table = processes()
    pids = {pid for pid, (_, sid, state) in table.items() if sid == session_id and state != "Z"}
    while True:
        more = {pid for pid, (ppid, _, state) in table.items() if ppid in pids and state != "Z"} - pids
        if not more:
            return pids
        pids |= more


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def signal_sessions(session_ids: list[int], sig: int, grace_s: float = 5.0) -> set[int]:
    """Send ``sig`` to the sessions' processes (and their descendants) at once; returns those still alive
    after ``grace_s``."""
    pids = set().union(*(session_tree(s) for s in session_ids))
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        table = processes()
        pids = {pid for pid in pids if pid in table and table[pid][2] != "Z"}
    return pids.union(*(session_tree(s) for s in session_ids))


def stop_sessions(session_ids: list[int], grace_s: float = 5.0) -> None:
    """SIGTERM the sessions' processes, then SIGKILL what is left after ``grace_s``.

    GCS and raylets take ~10 s to exit on SIGTERM; the servers are thrown away, so not waiting for them
    (what ``ray stop --force`` does) loses nothing.
    """
    left = signal_sessions(session_ids, signal.SIGTERM, grace_s) and signal_sessions(
        session_ids, signal.SIGKILL
    )
    if left:
        raise RuntimeError(f"processes {sorted(left)} survived SIGKILL")
