"""A shared backend on Redis Streams, through coredis (its async client runs on trio).

Every broadcaster on one Redis serves the same sessions. Per session Redis holds a stream of the
retained events and a record of its epoch and sequence (``_redis_scripts.py`` draws the keys);
one Lua script numbers, appends, trims and notifies, atomically. Each process runs two tasks,
whatever the number of sessions:

- the *notification reader* blocks on ``XREAD`` over the shards of the notification stream (a
  short ``block=``, below ``stream_timeout``: a blocked read is never cancelled, since that
  closes its connection) and marks the sessions it names dirty, if they are watched here;
- the *fetcher* reads each dirty session's new events from its stream (the ``READ`` script,
  ``read_batch`` at a time, from the watch cursor) and hands them to ``deliver`` in order.

So delivery per session follows the stream, exactly once, from the position :meth:`watch` was
given, and the cost of a quiet process does not grow with the sessions it watches. After an
error both tasks back off and retry; on recovery every watched session is read again from its
cursor, so nothing retained is lost. See ``docs/architecture.md`` section 10.
"""

from __future__ import annotations

import logging
import math
import secrets
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import coredis
import coredis.exceptions
import trio
from coredis.retry import NoRetryPolicy

from .._config import BroadcasterConfig, check_redis_url
from .._exceptions import BackendUnavailableError, ConfigError
from .._protocol import SSEEvent
from . import _redis_scripts as scripts
from ._base import Deliver, SessionEnded, SharedBackend, Snapshot

logger = logging.getLogger("trio_sse.redis")

_T = TypeVar("_T")
_ERRORS = (coredis.exceptions.RedisError, TimeoutError, OSError, trio.TooSlowError)
"""What a Redis call raises when Redis is down, frozen or unreachable."""


@dataclass(slots=True)
class _Watch:
    epoch: str
    seq: int


@dataclass(slots=True)
class RedisStatistics:
    """Counters of one :class:`RedisBackend` (``/stats`` shows them under ``backend``)."""

    watched: int = 0
    """Sessions watched here (they have local subscribers)."""
    dirty: int = 0
    """Watched sessions with events not yet read."""
    notifications: int = 0
    """Notification entries read."""
    fetches: int = 0
    """Session reads done by the fetcher."""
    delivered: int = 0
    """Events handed to ``deliver``."""
    publish_retries: int = 0
    """Publish attempts repeated (same nonce) after an unknown outcome."""
    unavailable: int = 0
    """Operations refused with ``BackendUnavailableError``."""
    reconnects: int = 0
    """Times a task recovered after an error."""
    gaps: int = 0
    """Times events were trimmed in Redis before this process read them."""
    ready: bool = False
    """Whether the last Redis call succeeded."""


class RedisBackend(SharedBackend):
    """Sessions shared through one Redis; see the module docstring.

    Args:
        url: ``redis://host:port/db`` (or ``rediss://``, ``unix://``).
        config: The broadcaster's config: its history bounds (count, bytes), ``session_ttl``
            and ``event_ttl`` apply in Redis too.
        prefix: Prefix of every key.
        timeout: Seconds a publish may take, retries included, before
            :class:`~trio_sse.BackendUnavailableError`; also coredis's ``stream_timeout``
            (a frozen Redis is noticed within it).
        shards: Notification streams (a session always notifies the same one).
        notify_maxlen: Approximate length each notification stream is trimmed to.
        read_batch: Most entries one read returns (notifications, or one session's events).
        block_ms: How long one ``XREAD`` blocks; below ``timeout`` (by default 250 ms, or half
            of ``timeout`` if that is less).

    Raises:
        ConfigError: a bad URL or bound.
    """

    def __init__(
        self,
        url: str,
        config: BroadcasterConfig | None = None,
        *,
        prefix: str = "trio-sse",
        timeout: float = 1.0,
        shards: int = 4,
        notify_maxlen: int = 10_000,
        read_batch: int = 500,
        block_ms: int | None = None,
    ) -> None:
        self.url = check_redis_url(url)
        if block_ms is None:
            block_ms = max(1, min(250, int(timeout * 500)))
        if not (shards >= 1 and read_batch >= 1 and block_ms >= 1 and timeout > 0):
            raise ConfigError("shards, read_batch, block_ms and timeout must be positive")
        if block_ms / 1000 >= timeout:
            raise ConfigError("block_ms must stay below timeout (a longer block would time out)")
        self.config = config or BroadcasterConfig()
        self.prefix = prefix
        self.timeout = timeout
        self.shards = shards
        self.notify_maxlen = notify_maxlen
        self.read_batch = read_batch
        self.block_ms = block_ms
        self.stats = RedisStatistics()
        self._client: coredis.Redis[str] | None = None
        self._watched: dict[str, _Watch] = {}
        self._dirty: dict[str, None] = {}  # an ordered set
        self._wake = trio.Event()
        self._publish: Any = None
        self._read: Any = None
        self._close: Any = None

    # -- keys -------------------------------------------------------------------------

    def _keys(self, session_id: str) -> tuple[str, str]:
        base = f"{self.prefix}:{{{session_id}}}"
        return f"{base}:rec", f"{base}:ev"

    def _notify_key(self, session_id: str) -> str:
        return f"{self.prefix}:notify:{zlib.crc32(session_id.encode()) % self.shards}"

    # -- running ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.stats.ready

    def statistics(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "kind": "redis",
            "ready": stats.ready,
            "watched": stats.watched,
            "dirty": stats.dirty,
            "notifications": stats.notifications,
            "fetches": stats.fetches,
            "delivered": stats.delivered,
            "publishRetries": stats.publish_retries,
            "unavailable": stats.unavailable,
            "reconnects": stats.reconnects,
            "gaps": stats.gaps,
        }

    def _new_client(self) -> coredis.Redis[str]:
        return coredis.Redis.from_url(
            self.url,
            decode_responses=True,
            stream_timeout=self.timeout,
            connect_timeout=self.timeout,
            retry_policy=NoRetryPolicy(),
        )

    async def run_shared(
        self,
        deliver: Deliver,
        ended: SessionEnded,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if self._client is not None:
            raise RuntimeError("a RedisBackend serves one broadcaster at a time")
        client, reader = self._new_client(), self._new_client()
        async with client, reader:
            self._client = client
            self._publish = client.register_script(scripts.PUBLISH)
            self._read = client.register_script(scripts.READ)
            self._close = client.register_script(scripts.CLOSE)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._notification_reader, reader, ended)
                    nursery.start_soon(self._fetcher, deliver)
                    task_status.started()
            finally:
                self._client = None
                self._watched.clear()
                self._dirty.clear()

    def _check_running(self) -> None:
        if self._client is None:
            raise trio.ClosedResourceError("the backend is not running")

    async def _attempt(self, call: Callable[[], Awaitable[_T]], what: str) -> _T:
        """One Redis call within ``timeout``; an outage becomes BackendUnavailableError."""
        try:
            with trio.fail_after(self.timeout):
                result = await call()
        except _ERRORS as exc:
            # A cancel during connection setup can surface as ConnectionError: never take a
            # cancellation for an outage.
            await trio.lowlevel.checkpoint_if_cancelled()
            self.stats.ready = False
            self.stats.unavailable += 1
            raise BackendUnavailableError(f"Redis unavailable ({what}): {exc!r}") from exc
        self.stats.ready = True
        return result

    # -- publishing -------------------------------------------------------------------

    async def publish(self, session_id: str, event: SSEEvent, ttl: float | None) -> SSEEvent:
        """Number and append ``event`` in Redis; return it with its id ``<epoch>-<seq>``.

        The script runs with a nonce: if its reply is lost (connection dropped, timeout,
        cancellation) it is sent again with the same nonce until ``timeout`` has passed, and
        Redis answers a repeated nonce with the first outcome, so it is applied at most once.

        Raises:
            BackendUnavailableError: no answer within ``timeout`` (the event may be published).
            trio.ClosedResourceError: the backend is not running.
        """
        self._check_running()
        rec, ev = self._keys(session_id)
        nonce = f"{self.prefix}:{{{session_id}}}:n:{secrets.token_hex(8)}"
        config = self.config
        args = [
            secrets.token_hex(4),
            event.type,
            event.data,
            0 if ttl is None else max(1, math.ceil(ttl * 1000)),
            "" if ttl is None else repr(float(ttl)),
            event.size,
            config.max_history_per_session,
            config.max_history_bytes_per_session,
            max(1, math.ceil(config.session_ttl * 1000)),
            session_id,
            self.notify_maxlen,
        ]
        keys = [rec, ev, nonce, self._notify_key(session_id)]
        deadline = trio.current_time() + self.timeout
        while True:
            try:
                assigned = await self._attempt(
                    lambda: self._publish(keys=keys, args=args), "publish"
                )
                break
            except BackendUnavailableError:
                if trio.current_time() + 0.05 >= deadline:
                    raise
                self.stats.publish_retries += 1
                await trio.sleep(0.05)
        return SSEEvent(event.type, event.data, id=str(assigned))

    async def close_session(self, session_id: str) -> bool:
        """Delete the session's record and stream and tell every process to end it."""
        self._check_running()
        rec, ev = self._keys(session_id)
        keys = [rec, ev, self._notify_key(session_id)]
        deleted = await self._attempt(
            lambda: self._close(keys=keys, args=[session_id, self.notify_maxlen]), "close"
        )
        return int(deleted) > 0

    # -- reading ----------------------------------------------------------------------

    async def replay(self, session_id: str, after: tuple[str, int] | None, limit: int) -> Snapshot:
        """The session's state and its newest ``limit`` retained events after ``after``."""
        self._check_running()
        keys = list(self._keys(session_id))
        epoch, seq = after or ("", 0)
        # a live subscribe (no cursor) needs the head only
        args = [epoch, str(seq), 1 if after is None else max(1, limit), "newest"]
        reply = await self._attempt(lambda: self._read(keys=keys, args=args), "replay")
        epoch, head, lost, now_ms, entries = _parse_read(reply)
        events = [] if after is None else _events(epoch, entries[::-1], now_ms)
        return Snapshot(epoch, head, lost, events)

    def watch(self, session_id: str, epoch: str, seq: int) -> None:
        if session_id not in self._watched:
            self._watched[session_id] = _Watch(epoch, seq)
            self.stats.watched = len(self._watched)
            self._mark_dirty(session_id)

    def unwatch(self, session_id: str) -> None:
        self._watched.pop(session_id, None)
        self._dirty.pop(session_id, None)
        self.stats.watched = len(self._watched)
        self.stats.dirty = len(self._dirty)

    def _mark_dirty(self, session_id: str) -> None:
        self._dirty[session_id] = None
        self.stats.dirty = len(self._dirty)
        self._wake.set()

    async def _notification_reader(self, reader: coredis.Redis[str], ended: SessionEnded) -> None:
        cursors = {f"{self.prefix}:notify:{k}": "$" for k in range(self.shards)}
        backoff = 0.05
        while True:
            try:
                if "$" in cursors.values():  # first read, or after an outage: pin the cursors
                    await self._pin_cursors(reader, cursors)
                    self.stats.ready = True
                reply = await reader.xread(cursors, count=self.read_batch, block=self.block_ms)
            except _ERRORS:
                await trio.lowlevel.checkpoint_if_cancelled()
                self.stats.ready = False
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                cursors = dict.fromkeys(cursors, "$")
                continue
            if backoff > 0.05:  # recovered: read every watched session again from its cursor
                self.stats.reconnects += 1
                backoff = 0.05
                for session_id in self._watched:
                    self._mark_dirty(session_id)
            self.stats.ready = True
            for key, entries in (reply or {}).items():
                for entry in entries:
                    cursors[key] = str(entry.identifier)
                    self._notified(entry.field_values, ended)
                self.stats.notifications += len(entries)

    async def _pin_cursors(self, reader: coredis.Redis[str], cursors: dict[str, str]) -> None:
        """Set each ``$`` cursor to its stream's last id, then read every watched session:
        whatever was published before is read from the sessions, whatever after from here."""
        for key in cursors:
            last = await reader.xrevrange(key, "+", "-", count=1)
            cursors[key] = str(last[0].identifier) if last else "0-0"
        for session_id in self._watched:
            self._mark_dirty(session_id)

    def _notified(self, fields: Any, ended: SessionEnded) -> None:
        session_id = fields.get("s")
        if session_id not in self._watched:
            return
        if fields.get("c"):
            self.unwatch(session_id)
            ended(session_id)
        else:
            self._mark_dirty(session_id)

    async def _fetcher(self, deliver: Deliver) -> None:
        backoff = 0.05
        while True:
            while not self._dirty:  # (an unwatch may empty it again before we run)
                self._wake = trio.Event()
                await self._wake.wait()
            session_id = next(iter(self._dirty))
            del self._dirty[session_id]
            self.stats.dirty = len(self._dirty)
            try:
                await self._fetch(session_id, deliver)
            except BackendUnavailableError:
                if session_id in self._watched:
                    self._mark_dirty(session_id)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05

    async def _fetch(self, session_id: str, deliver: Deliver) -> None:
        watch = self._watched.get(session_id)
        if watch is None:
            return
        keys = list(self._keys(session_id))
        args = [watch.epoch, str(watch.seq), self.read_batch, "oldest"]
        reply = await self._attempt(lambda: self._read(keys=keys, args=args), "read")
        self.stats.fetches += 1
        if self._watched.get(session_id) is not watch:
            return  # unwatched (or watched anew) while reading
        epoch, _head, _lost, _now, entries = _parse_read(reply)
        if not epoch:
            return  # no data (flushed, closed or expired): the next publish starts an epoch
        for seq, event, ttl in _events(epoch, entries, None):
            if epoch == watch.epoch and seq != watch.seq + 1:
                self.stats.gaps += 1
                lost = f"{watch.seq + 1}-{seq - 1}"
                logger.warning("session %r: events %s trimmed before read", session_id, lost)
            watch.epoch, watch.seq = epoch, seq
            self.stats.delivered += 1
            deliver(session_id, event, ttl)
        if len(entries) >= self.read_batch:
            self._mark_dirty(session_id)  # more to read


def _parse_read(reply: Any) -> tuple[str, int, int, int, list[Any]]:
    epoch, head, lost, now_ms, entries = reply
    return str(epoch), int(head), int(lost), int(now_ms), list(entries)


def _events(
    epoch: str, entries: list[Any], now_ms: int | None
) -> list[tuple[int, SSEEvent, float | None]]:
    """Stream entries as ``(seq, event, ttl)``: with ``now_ms``, the TTL left (expired ones
    skipped); without, the TTL as published (a live delivery)."""
    events = []
    for entry_id, flat in entries:
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        seq = int(str(entry_id).partition("-")[0])
        expires = int(fields["x"])
        if now_ms is None:
            ttl = float(fields["l"]) if fields["l"] else None
        elif expires == 0:
            ttl = None
        elif expires > now_ms:
            ttl = (expires - now_ms) / 1000
        else:
            continue
        events.append((seq, SSEEvent(fields["t"], fields["d"], id=f"{epoch}-{seq}"), ttl))
    return events
