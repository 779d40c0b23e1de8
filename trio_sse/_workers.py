"""``trio-sse serve --workers N``: one parent binds the port, N forked workers serve it.

The parent binds the listening socket (as Hypercorn does), raises the open-file limit, then
forks each worker, which runs :func:`~trio_sse.server.serve` on the inherited socket: the
kernel hands each new connection to whichever worker accepts first, and a worker that dies
loses no queued connection (the queue belongs to the one socket). The parent never runs trio;
it only supervises:

- SIGINT or SIGTERM to the parent is forwarded (as SIGTERM) to every worker, each of which
  drains as one ``serve`` does (every stream gets a ``retry:`` and ends); a worker still alive
  ``graceful_timeout`` + :data:`KILL_MARGIN` seconds later is killed.
- A worker that dies while not asked to is restarted, at most :data:`MAX_RESTARTS` times in
  :data:`RESTART_WINDOW` seconds; one more and the parent stops all workers and exits 1.
- The exit status is 0 when every worker ended cleanly after the signal, else 1.

Workers ignore SIGINT and SIGTERM outside ``serve``'s own signal receiver, so the parent's
forwarded SIGTERM after a terminal's Ctrl-C (which reaches the whole process group) does not
interrupt a drain already started.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from contextlib import suppress
from functools import partial
from typing import TextIO

import trio

from ._config import BroadcasterConfig
from ._settings import ServerSettings
from .server import serve
from .server._serve import listening_socket, raise_open_file_limit

logger = logging.getLogger("trio_sse")

MAX_RESTARTS = 3
"""Unexpected worker deaths restarted within :data:`RESTART_WINDOW`; one more stops all."""
RESTART_WINDOW = 60.0
"""Seconds over which :data:`MAX_RESTARTS` is counted."""
KILL_MARGIN = 5.0
"""Seconds past ``graceful_timeout`` before a worker still draining is killed."""
POLL_INTERVAL = 0.05
"""Seconds between two checks for ended workers and received signals."""
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_workers(config: BroadcasterConfig, settings: ServerSettings, out: TextIO) -> int:
    """Bind, start ``settings.workers`` workers, supervise them; the exit status."""
    sock = listening_socket(settings)
    files = raise_open_file_limit()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    supervisor = _Supervisor(config, settings, sock)
    with sock:
        supervisor.install_handlers()
        supervisor.start_all()
        url = f"http://{shown}:{port}"
        pids = " ".join(str(pid) for pid in supervisor.workers)
        print(f"trio-sse serving on {url} (demo page: {url}/)", file=out)
        print(
            f"  {settings.workers} workers (pids {pids}); open-file limit "
            f"{files if files is not None else 'unknown'} each",
            file=out,
        )
        out.flush()
        return supervisor.run()


class _Supervisor:
    def __init__(
        self, config: BroadcasterConfig, settings: ServerSettings, sock: socket.socket
    ) -> None:
        self.config = config
        self.settings = settings
        self.sock = sock
        self.workers: set[int] = set()
        self.stopping = False
        self.failed = False
        self.deadline = 0.0
        self.deaths: deque[float] = deque()
        self._signalled: int | None = None

    def install_handlers(self) -> None:
        for signum in _SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signalled = signum

    def start_all(self) -> None:
        for _ in range(self.settings.workers):
            self.start_one()

    def start_one(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the worker (measured by the tests, not coverage)
                self._worker()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        self.workers.add(pid)
        logger.info("started worker %d", pid)

    def _worker(self) -> None:  # pragma: no cover - runs in the forked child
        code = 1
        try:
            for signum in _SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            trio.run(
                partial(serve, self.config, self.settings, sock=self.sock, handle_signals=True)
            )
            code = 0
        except BaseException:
            logger.exception("worker %d failed", os.getpid())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def run(self) -> int:
        while True:
            if self._signalled is not None and not self.stopping:
                logger.info(
                    "received %s: stopping the workers", signal.Signals(self._signalled).name
                )
                self.stop()
            self._reap()
            if self.stopping and not self.workers:
                return 1 if self.failed else 0
            if self.stopping and time.monotonic() > self.deadline:
                for pid in self.workers:
                    logger.warning(
                        "worker %d still running after the graceful timeout: killed", pid
                    )
                    _signal(pid, signal.SIGKILL)
                self.failed = True
                self.deadline = float("inf")
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        self.stopping = True
        self.deadline = time.monotonic() + self.settings.graceful_timeout + KILL_MARGIN
        for pid in self.workers:
            _signal(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            if pid not in self.workers:
                continue
            self.workers.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code != 0:
                    logger.error("worker %d ended with status %d", pid, code)
                    self.failed = True
                continue
            self._died(pid, code)

    def _died(self, pid: int, code: int) -> None:
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and self.deaths[0] < now - RESTART_WINDOW:
            self.deaths.popleft()
        if len(self.deaths) > MAX_RESTARTS:
            logger.error(
                "worker %d died (status %d): more than %d deaths in %.0f s, stopping all",
                pid,
                code,
                MAX_RESTARTS,
                RESTART_WINDOW,
            )
            self.failed = True
            self.stop()
            return
        logger.error("worker %d died unexpectedly (status %d): restarting it", pid, code)
        self.start_one()


def _signal(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)
