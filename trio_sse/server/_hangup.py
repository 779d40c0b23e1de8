"""Noticing that stream clients left, with one task for all of them.

An SSE client sends nothing after its request, so the only news from its socket is that it
closed (EOF), reset, or broke. Waiting for that with a task per stream costs a task, a nursery
and a stack of coroutine frames per connection: about 5.7 KB, more than a third of what an idle
stream holds (``docs/performance.md``). Instead, each stream's socket joins one epoll set
(level-triggered ``EPOLLIN | EPOLLRDHUP``), and one task per server waits until that set is
readable, then tells each stream whose client hung up. Bytes a client sends anyway are read and
ignored, as before. A connection whose next request may already be arriving (a long poll on a
kept-alive connection) is watched without reading (``EPOLLRDHUP`` alone), so pipelined bytes
stay in the socket for the request after it. Where ``select.epoll`` does not exist,
:meth:`HangupWatcher.watch` says so and the stream watches its own socket with a task.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable
from typing import NoReturn

import trio

READ_SIZE = 65536
_GONE = getattr(select, "EPOLLHUP", 0) | getattr(select, "EPOLLERR", 0)
_RDHUP = getattr(select, "EPOLLRDHUP", 0)
_IN = getattr(select, "EPOLLIN", 0)
_WATCH = _IN | _RDHUP


class HangupWatcher:
    """Calls each watched socket's callback once its peer has closed, reset or broken it."""

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None  # while run() runs
        self._callbacks: dict[int, Callable[[], None]] = {}

    def watch(self, fd: int, on_hangup: Callable[[], None], *, drain: bool = True) -> bool:
        """Call ``on_hangup`` when the peer of socket ``fd`` leaves; False if this cannot
        (no epoll here, or :meth:`run` is not running).

        With ``drain``, bytes the peer sends are read and dropped (an event stream's client
        has nothing more to say); without, they are left for the next request and only a
        close, reset or half-close (``EPOLLRDHUP``) counts. :meth:`unwatch` it before the
        socket is closed (its number may be reused).
        """
        if self._epoll is None:
            return False
        self._epoll.register(fd, _WATCH if drain else _RDHUP)
        self._callbacks[fd] = on_hangup
        return True

    def unwatch(self, fd: int) -> None:
        """Stop watching ``fd``; harmless if it is not watched."""
        if self._callbacks.pop(fd, None) is not None and self._epoll is not None:
            self._epoll.unregister(fd)

    @property
    def watched(self) -> int:
        """Sockets watched now."""
        return len(self._callbacks)

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Watch until cancelled; the epoll set exists only meanwhile (:meth:`watch` refuses
        before and after)."""
        if not hasattr(select, "epoll"):
            task_status.started()
            await trio.sleep_forever()
        with select.epoll() as epoll:
            self._epoll = epoll
            task_status.started()
            try:
                while True:
                    await trio.lowlevel.wait_readable(epoll)
                    self._check(epoll.poll(0))
            finally:
                self._epoll = None
                self._callbacks.clear()

    def _check(self, ready: list[tuple[int, int]]) -> None:
        for fd, mask in ready:
            if fd in self._callbacks and _hung_up(fd, mask):
                callback = self._callbacks[fd]
                self.unwatch(fd)
                callback()


def _hung_up(fd: int, mask: int) -> bool:
    """Whether the peer left; reads (and drops) what it sent, to find out."""
    if mask & (_GONE | _RDHUP) and not mask & _IN:  # closed, or watched without reading
        return True
    if mask & _GONE:
        return True
    try:
        data = os.read(fd, READ_SIZE)
    except BlockingIOError:
        return bool(mask & _RDHUP)
    except OSError:
        return True
    return not data
