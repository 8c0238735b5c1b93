"""Tunnel agent processes and their pid records, inspected and ended through psutil.

Each agent this package starts (ngrok, cloudflared) is recorded in a small JSON file in the
state folder: its pid, create time and command line, and the pid and create time of the
process (kernel) that started it.  On the next start, a record whose owner is gone names an
orphan: it is ended by that pid, and only when the pid still runs the recorded command line
and started at the recorded time, so a reused pid is never touched.  Nothing is ever found
or killed by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("suno_nb.tunnel")

__all__ = [
    "AgentTunnel",
    "Identity",
    "alive",
    "cmdline_digest",
    "identity",
    "matches",
    "reap_leftovers",
    "remove_record",
    "terminate",
    "write_record",
]


class AgentTunnel:
    """What every open tunnel shares: ``public_url`` forwarding to ``upstream`` (the receiver
    on ``port``) through the agent process ``agent_pid``; subclasses add ``close()``."""

    kind = "agent"

    def __init__(
        self, *, public_url: str, port: int, upstream: str, agent_pid: int | None, state_dir: Path
    ) -> None:
        self.public_url = public_url
        self.port = port
        self.upstream = upstream
        self.agent_pid = agent_pid
        self._state_dir = state_dir
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"agent pid {self.agent_pid}"
        name = "Tunnel" if self.kind == "ngrok" else "QuickTunnel"
        return f"<{name} {self.public_url} -> {self.upstream} ({state})>"


TERM_WAIT = 3.0  # s an agent gets to exit after SIGTERM before SIGKILL
_CLOCK_SLACK = 0.05  # s: create times are read from /proc jiffies, equal when the same process


Identity = tuple[float, list[str]]  # (create_time, cmdline)


def identity(pid: int | None) -> Identity | None:
    """``(create_time, cmdline)`` of a live, non-zombie ``pid``; None when gone or hidden."""
    if pid is None or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc.create_time(), proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # another user's process: alive, but not ours to judge
        return None


def alive(pid: int | None) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    if pid is None or pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def cmdline_digest(cmdline: list[str]) -> str:
    """sha256 of a command line: records compare it without storing it (it may hold a token)."""
    return hashlib.sha256("\0".join(cmdline).encode("utf-8", "replace")).hexdigest()


def matches(pid: int, created: Any, digest: Any) -> bool:
    """Does ``pid`` still run the process recorded with ``created`` and command-line ``digest``?

    Both must be known and equal: a missing create time or command line never matches, so a
    record that cannot be checked never leads to a kill.
    """
    if not isinstance(created, (int, float)) or not isinstance(digest, str) or not digest:
        return False
    now = identity(pid)
    if now is None:
        return False
    return abs(now[0] - float(created)) <= _CLOCK_SLACK and cmdline_digest(now[1]) == digest


def terminate(pids: list[int], wait: float = TERM_WAIT) -> list[int]:
    """SIGTERM each pid, SIGKILL those still up after ``wait`` s; return the pids left alive."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            procs.append(proc)
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied as exc:
            log.warning("could not end agent pid %d: %s", pid, exc)
    _gone, left = psutil.wait_procs(procs, timeout=wait)
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.kill()
    _gone, left = psutil.wait_procs(left, timeout=2.0)
    return [proc.pid for proc in left]


# --- records ------------------------------------------------------------------------------------


def _record_path(state_dir: Path, prefix: str, pid: int) -> Path:
    return state_dir / f"{prefix}{pid}.json"


def write_record(state_dir: Path, prefix: str, pid: int | None, **extra: Any) -> None:
    """Record the agent ``pid`` (its identity and ours) as ``<prefix><pid>.json``."""
    if pid is None:
        return
    agent = identity(pid)
    me = identity(os.getpid())
    record = {
        "agent_pid": pid,
        "agent_created": agent[0] if agent else None,
        "agent_cmdline_sha256": cmdline_digest(agent[1]) if agent else None,
        "owner_pid": os.getpid(),
        "owner_created": me[0] if me else None,
        "written_at": time.time(),
        **extra,
    }
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = _record_path(state_dir, prefix, pid)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        log.warning("could not record the agent's pid in %s: %s", state_dir, exc)


def remove_record(state_dir: Path, prefix: str, pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(OSError):
            _record_path(state_dir, prefix, pid).unlink()


def reap_leftovers(state_dir: Path, prefix: str, own_pids: set[int]) -> list[dict]:
    """End orphaned agents recorded under ``prefix``; return the records of live owners.

    A record is dropped when its agent is gone or no longer the recorded process.  An agent
    whose owner still runs (another kernel) is left alone and its record returned, so an
    error about account limits can name it.  Otherwise the agent is an orphan of a dead
    kernel and is ended by its pid.
    """
    foreign: list[dict] = []
    try:
        files = sorted(state_dir.glob(f"{prefix}*.json"))
    except OSError:
        return []
    for file in files:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
            pid = int(record["agent_pid"])
        except (OSError, ValueError, KeyError, TypeError):
            log.debug("ignoring unreadable pid record %s", file)
            with contextlib.suppress(OSError):
                file.unlink()
            continue
        if pid in own_pids:
            continue
        if not matches(pid, record.get("agent_created"), record.get("agent_cmdline_sha256")):
            if alive(pid):
                log.info("pid %d is no longer the recorded agent; forgetting its record", pid)
            with contextlib.suppress(OSError):
                file.unlink()
            continue
        owner = record.get("owner_pid")
        if isinstance(owner, int) and owner != os.getpid():
            owner_now = identity(owner)
            created = record.get("owner_created")
            if owner_now is not None and (
                not isinstance(created, (int, float))
                or abs(owner_now[0] - float(created)) <= _CLOCK_SLACK
            ):
                log.info("agent pid %d belongs to running process %d; leaving it", pid, owner)
                foreign.append(record)
                continue
        log.warning("ending the tunnel agent left behind by a previous kernel (pid %d)", pid)
        terminate([pid])
        with contextlib.suppress(OSError):
            file.unlink()
    return foreign
