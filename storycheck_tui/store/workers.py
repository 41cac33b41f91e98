"""The worker registry: one ``worker`` row per running storycheck process, its heartbeat
(which also extends the leases it holds), and how dead or silent workers are recognised.

Worker ids are ``host:pid:NNNNNNrrrr`` (:func:`new_worker_id`); a pid is only ever judged
on the machine and pid namespace that issued it (:func:`node`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket

from storycheck_tui.states import WorkerState, sql, sql_list
from storycheck_tui.store.db import Store
from storycheck_tui.store.queue import now

def new_worker_id() -> str:
    """``host:pid:NNNNNNrrrr``: NNNNNN names this process table (see :func:`node`), rrrr is random."""
    return f"{socket.gethostname()}:{os.getpid()}:{node()}{os.urandom(2).hex()}"


@functools.lru_cache(maxsize=1)
def node() -> str:
    """Where a pid means what it means here: this boot of this kernel, this pid namespace.

    Two machines (cloned VMs, containers on the host network) may share a hostname; only a
    worker with the same node token is one whose pid can be checked from here.
    """
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/etc/machine-id"):
        try:
            with open(path) as fh:
                parts.append(fh.read().strip())
            break
        except OSError:
            continue
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:6]


def _is_local(worker_id: str) -> bool:
    parts = worker_id.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    # An id without a node token (``host:pid:rrrrrr``, older storycheck) is judged by hostname.
    return len(parts[2]) == 6 or parts[2][:6] == node()


def register_worker(store: Store, worker_id: str, threads: int) -> None:
    host, pid = worker_id.split(":")[0], int(worker_id.split(":")[1])
    p = store.dialect.param
    with store.db.atomic():
        ts = now(store)
        store.db.execute_sql(
            f"INSERT INTO worker (id, host, pid, threads, started_at, heartbeat_at, checks, rate, state) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, 0, 0, {sql(WorkerState.RUNNING)})",
            (worker_id, host, pid, threads, ts, ts))


def heartbeat(store: Store, worker_id: str, *, checks: int, rate: float, lease_seconds: float,
              state: WorkerState = WorkerState.RUNNING, pace: float | None = None,
              pace_key: str | None = None, pace_reason: str | None = None, threads: int | None = None,
              circuit: str | None = None, circuit_reason: str | None = None,
              blocked: str | None = None) -> None:
    """Say this worker is alive (with the source's pace it learned and why it last changed, its
    check threads, its circuit breaker's state, why it can send nothing if so) and extend the leases it holds, in one transaction."""
    d = store.dialect
    p = d.param
    with store.db.atomic():
        store.db.execute_sql(
            f"UPDATE worker SET heartbeat_at = {d.now}, checks = {p}, rate = {p}, state = {p}, pace = {p}, "
            f"pace_key = {p}, pace_reason = {p}, threads = COALESCE({p}, threads), circuit = {p}, "
            f"circuit_reason = {p}, blocked = {p} WHERE id = {p}",
            (checks, rate, state, pace, pace_key, pace_reason, threads, circuit, circuit_reason, blocked, worker_id))
        store.db.execute_sql(d.extend_leases_sql(), d.extend_leases_params(worker_id, lease_seconds))


def learned_pace(store: Store, pace_key: str, *, fresh_within: float, me: str = "") -> tuple[float, int]:
    """The pace other running workers learned for ``pace_key`` (requests/s, summed) and how many
    they are; only heartbeats of the last ``fresh_within`` seconds count."""
    d = store.dialect
    p = d.param
    row = store.db.execute_sql(
        f"SELECT COALESCE(SUM(pace), 0), COUNT(*) FROM worker WHERE pace_key = {p} AND pace IS NOT NULL "
        f"AND state = {sql(WorkerState.RUNNING)} AND id != {p} AND heartbeat_at > {d.now} - {p}",
        (pace_key, me, fresh_within)).fetchone()
    return float(row[0] or 0.0), int(row[1] or 0)


def stop_worker(store: Store, worker_id: str) -> None:
    p = store.dialect.param
    with store.db.atomic():
        store.db.execute_sql(f"UPDATE worker SET state = {sql(WorkerState.STOPPED)}, heartbeat_at = {store.dialect.now} WHERE id = {p}",
                             (worker_id,))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def expire_dead_local_workers(store: Store, me: str) -> list[str]:
    """Workers of this machine (same process table) whose process is gone: expire their
    leases now, no waiting. A worker elsewhere, even on a machine with the same hostname, is
    never judged by a pid here: its jobs come back when its leases expire.
    """
    host = socket.gethostname()
    d = store.dialect
    p = d.param
    rows = store.db.execute_sql(
        f"SELECT id, pid FROM worker WHERE host = {p} AND state != {sql(WorkerState.STOPPED)} AND id != {p}", (host, me)).fetchall()
    dead = [wid for wid, pid in rows if _is_local(wid) and not pid_alive(int(pid))]
    if dead:
        with store.db.atomic():
            for wid in dead:
                store.db.execute_sql(d.extend_leases_sql(), d.extend_leases_params(wid, -1.0))  # expired now
                store.db.execute_sql(f"UPDATE worker SET state = {sql(WorkerState.STOPPED)} WHERE id = {p}", (wid,))
    return dead


def mark_lost_workers(store: Store, silent_for: float) -> int:
    """Workers silent for ``silent_for`` seconds (a lease length) are 'lost': shown as such, not as running."""
    d = store.dialect
    with store.db.atomic():
        return store.db.execute_sql(
            f"UPDATE worker SET state = {sql(WorkerState.LOST)} "
            f"WHERE state IN {sql_list((WorkerState.RUNNING, WorkerState.STOPPING))} "
            f"AND heartbeat_at < {d.now} - {d.param}", (silent_for,)).rowcount


#: a worker row is listed while alive, and for this long after its last heartbeat
WORKER_SHOWN_FOR = 3600.0


__all__ = ["new_worker_id", "node", "register_worker", "heartbeat", "stop_worker", "pid_alive",
           "expire_dead_local_workers", "mark_lost_workers", "WORKER_SHOWN_FOR"]
