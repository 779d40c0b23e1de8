"""The broadcaster: sessions, fan-out, and the supervised tasks that keep it bounded.

``open_broadcaster`` owns a nursery holding the backend's task, the cleanup loop and the memory
check; nothing it starts outlives the ``async with`` block. ``publish`` builds each event once
(id, encoding) and the backend hands it with its TTL to ``_deliver``, which appends it to the
session's history beside its expiry deadline and offers it to every subscriber with
``send_nowait``: a publisher never waits for a subscriber. ``subscribe`` registers the
subscriber and takes its replay in one synchronous step, so no event can fall between the replay
and the live queue, and none can be in both. With a shared backend (Redis) ``publish`` gets
its id from the backend, and ``subscribe`` first awaits the backend's replay, then hands over to
live events in one synchronous step (``docs/architecture.md`` section 10.3).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

from ._config import BroadcasterConfig
from ._exceptions import (
    BatchError,
    EventTooLargeError,
    InvalidEventError,
    MemoryPressureError,
    SubscriberLimitError,
    TrioSSEError,
)
from ._history import RESET_EVENT_TYPE, check_ttl, expiry, parse_event_id, reset_notice
from ._memory import (
    MemoryLevel,
    MiB,
    RSSReader,
    next_level,
    process_rss_bytes,
)
from ._protocol import SSEEvent
from ._sessions import Session, SessionRegistry
from ._stats import BroadcasterStatistics, CleanupReport, Counters, MetricsSnapshot
from ._subscription import GAP_EVENT_TYPE, CloseReason, SubscriberOutput, Subscription
from .backends import Backend, InMemoryBackend, SharedBackend, Snapshot

logger = logging.getLogger("trio_sse")

RESERVED_EVENT_TYPES: Final = frozenset({RESET_EVENT_TYPE, GAP_EVENT_TYPE})
SLOW_CLEANUP_SECONDS: Final = 1.0
ID_FIELD_MAX_BYTES: Final = len("id: \n") + 8 + 1 + 19
"""Most bytes an ``id: <epoch>-<seq>`` line adds to an event a shared backend numbers."""


class Broadcaster:
    """Fans events out to the subscribers of each session. Made by :func:`open_broadcaster`."""

    def __init__(
        self,
        config: BroadcasterConfig,
        backend: Backend,
        rss_probe: Callable[[], int],
        perf_counter: Callable[[], float],
    ) -> None:
        self.config = config
        self._backend = backend
        self._shared = backend if isinstance(backend, SharedBackend) else None
        self._epoch_changes = 0  # sessions whose shared backend lost their data (new epoch)
        self._rss_probe = rss_probe
        self._perf_counter = perf_counter
        self._counters = Counters()
        self._sessions = SessionRegistry(config, self._counters)
        self._memory_level = MemoryLevel.NORMAL
        self._rss_kept_mb = 0.0  # RSS above the warning threshold that shedding cannot free
        self._closed = False

    # -- publishing -------------------------------------------------------------------

    async def publish(
        self, session_id: str, type: str, data: Any, *, ttl: float | None = None
    ) -> SSEEvent:
        """Append an event to ``session_id``'s history and offer it to its subscribers.

        Args:
            session_id: The session; created if it does not exist.
            type: The event name. ``reset`` and ``gap`` are reserved for the broadcaster.
            data: A str or a JSON-serialisable value.
            ttl: Seconds the event stays in history; None uses ``config.event_ttl``.

        Returns:
            The event, with its id ``<epoch>-<seq>`` and its encoding.

        Raises:
            InvalidEventError: bad type, data, or ttl; nothing is created.
            EventTooLargeError: the encoded event exceeds ``max_event_bytes``.
            SessionLimitError: a new session is needed and none can be evicted.
            trio.ClosedResourceError: the broadcaster is closed.
        """
        # A full checkpoint, as trio channels do: a burst of publishes lets readers run, and a
        # cancelled publish has published nothing.
        await trio.lowlevel.checkpoint()
        return await self.publish_now(session_id, type, data, ttl=ttl)

    async def publish_now(
        self, session_id: str, type: str, data: Any, *, ttl: float | None = None
    ) -> SSEEvent:
        """:meth:`publish` without its leading checkpoint (package-internal).

        For a caller that yields on its own between publishes: the HTTP server waits for the
        socket between requests, so a checkpoint per publish request only cost a pass of the
        scheduler (about 3.5 us). With the in-memory backend it never yields.
        """
        self._check_open()
        _check_session_id(session_id)
        session, event, ttl = self._prepare(self._sessions.lookup(session_id), type, data, ttl)
        return await self._commit(session, event, ttl)

    async def publish_batch(
        self, items: Sequence[tuple[str, str, Any, float | None]]
    ) -> list[SSEEvent]:
        """Publish several events, for one session or many, in order; all or none.

        Each item is ``(session_id, type, data, ttl)`` as for :meth:`publish`. Every event is
        checked and encoded before the first is published: one that :meth:`publish` would
        refuse refuses the whole batch. Consecutive events of one session get consecutive ids.

        Raises:
            BatchError: an event was refused (its ``index`` and ``error``); nothing published.
            SessionLimitError: a new session is needed and none can be evicted (the events
                before it are published).
            trio.ClosedResourceError: the broadcaster is closed.
        """
        await trio.lowlevel.checkpoint()
        self._check_open()
        planned: list[tuple[Session, SSEEvent, float | None]] = []
        sessions: dict[str, tuple[Session, int]] = {}
        for index, (session_id, type, data, ttl) in enumerate(items):
            try:
                _check_session_id(session_id)
                session, ahead = sessions.get(session_id) or (self._sessions.lookup(session_id), 0)
                planned.append(self._prepare(session, type, data, ttl, ahead))
            except TrioSSEError as error:
                raise BatchError(index, error) from error
            sessions[session_id] = (session, ahead + 1)
        events = []
        for session, event, ttl in planned:
            if self._shared is not None:
                events.append(await self._commit(session, event, ttl))
                continue
            session = self._sessions.get(session.id) or session
            history = session.history
            if event.id != history.next_id():  # another publish came between (async backend)
                event = self._prepare(session, event.type, event.data, ttl)[1]
            events.append(await self._commit(session, event, ttl))
        return events

    def _prepare(
        self, session: Session, type: str, data: Any, ttl: float | None, ahead: int = 0
    ) -> tuple[Session, SSEEvent, float | None]:
        """Check and build the event ``ahead`` publishes after the next one of ``session``."""
        if type in RESERVED_EVENT_TYPES:
            raise InvalidEventError(f"event type {type!r} is reserved for trio-sse notices")
        ttl = self.config.event_ttl if ttl is None else ttl
        check_ttl(ttl)
        history = session.history
        if self._shared is None:
            event = SSEEvent(type, data, id=history.id_for(history.reserved + 1 + ahead))
            size = event.size
        else:  # the backend numbers it: count the longest id it can get
            event = SSEEvent(type, data)
            size = event.size + ID_FIELD_MAX_BYTES
        if size > self.config.max_event_bytes:
            raise EventTooLargeError(
                f"event is {size} bytes encoded; max_event_bytes={self.config.max_event_bytes}"
            )
        return session, event, ttl

    async def _commit(self, session: Session, event: SSEEvent, ttl: float | None) -> SSEEvent:
        """Register the session if new, reserve the event's sequence, hand it to the backend.

        A shared backend numbers the event and keeps the session: no local session is made
        (the read loop delivers the event here only if the session has subscribers here).
        """
        if self._shared is not None:
            self._counters.events_published += 1
            return await self._shared.publish(session.id, event, ttl)
        now = trio.current_time()
        self._sessions.admit(session, now, write=True)
        self._sessions.touch(session, now)
        session.history.reserve()
        self._counters.events_published += 1
        await self._backend.publish(session.id, event, ttl)
        return event

    def _deliver(self, session_id: str, event: SSEEvent, ttl: float | None) -> None:
        """Append ``event`` to history, expiring ``ttl`` seconds from now, and offer it to
        every subscriber. Never blocks. The backend's ``deliver`` callback."""
        session = self._sessions.get(session_id)
        position = parse_event_id(event.id or "")
        if session is None or self._closed:
            logger.debug("event %s for gone session %r not delivered", event.id, session_id)
            return
        now = trio.current_time()
        history = session.history
        if self._shared is not None and position is not None:
            if position[0] != history.epoch:
                self._new_epoch(session, position[0], position[1], now)
            history.reserved = max(history.reserved, position[1])
        if position is None or position[0] != history.epoch:
            logger.error("event %s is not of session %r's epoch; dropped", event.id, session_id)
            return
        try:
            history.append(event, position[1], expiry(now, ttl))
        except ValueError:
            logger.exception("backend delivered event %s out of order; dropped", event.id)
            return
        if not session.subscribers:
            return
        if session.waiting:
            self._fan_out(session, event, now, self._live_for(session, position))
        else:
            self._fan_out(session, event, now, session.subscribers)

    def _fan_out(
        self, session: Session, event: SSEEvent, now: float, targets: Iterable[Subscription]
    ) -> None:
        size = event.size
        slow = [sub for sub in targets if not sub.offer(event, size, now)]
        for subscription in slow:
            self._counters.slow_consumer_disconnects += 1
            subscription.end(CloseReason.SLOW_CONSUMER)

    @staticmethod
    def _live_for(session: Session, position: tuple[str, int]) -> list[Subscription]:
        """The subscribers event ``position`` goes to: not those whose replay already held
        it; a waiting subscriber takes live events from the one after its replay's last."""
        waiting = session.waiting
        targets = []
        for subscription in session.subscribers:
            reached = waiting.get(subscription)
            if reached is not None and reached[0] == position[0]:
                if position[1] >= reached[1]:
                    del waiting[subscription]
                if position[1] <= reached[1]:
                    continue
            targets.append(subscription)
        return targets

    def _new_epoch(self, session: Session, epoch: str, seq: int, now: float) -> None:
        """The shared backend lost the session's data: adopt ``epoch`` and tell every
        subscriber, once, with a ``reset`` notice (a replay of that epoch already told the
        subscribers waiting in it; a cache that never held an event has nothing to tell)."""
        history = session.history
        told = history.epoch != "" or history.last_seq != 0
        old = history.id_for(history.last_seq)
        history.adopt(epoch, seq - 1)
        self._epoch_changes += 1
        targets = []
        for subscription in session.subscribers:
            reached = session.waiting.get(subscription)
            if reached is not None and reached[0] in (epoch, ""):
                if reached[0] == "":
                    del session.waiting[subscription]
                continue
            session.waiting.pop(subscription, None)
            targets.append(subscription)
        if told and targets:
            notice = reset_notice("epoch-changed", old, [], f"{epoch}-{seq - 1}")
            self._fan_out(session, notice, now, targets)

    # -- subscribing ------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self,
        session_id: str,
        last_event_id: str | None = None,
        *,
        output: SubscriberOutput | None = None,
    ) -> AsyncIterator[Subscription]:
        """Subscribe to ``session_id``: replay after ``last_event_id``, then live events.

        With ``last_event_id=None`` only live events arrive. With an id that cannot be resumed
        exactly (unknown, another epoch, older than the retained history) a ``reset`` event comes
        first, then all retained history. Leaving the block, by any path, removes the subscriber
        and closes its channel. ``output`` (a server's socket transport) takes events straight
        from the publisher while the reader waits idle (see :class:`SubscriberOutput`).

        Raises:
            InvalidEventError: ``session_id`` is not a non-empty str.
            SubscriberLimitError: ``max_subscribers_per_session`` or ``max_subscribers`` reached.
            SessionLimitError: a new session is needed and the table is full of sessions that
                have subscribers or were published to (a read never evicts those).
            MemoryPressureError: memory is critical; try again later.
            trio.ClosedResourceError: the broadcaster is closed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._shared is not None:
            subscription = await self._open_shared_subscription(session_id, last_event_id, output)
        else:
            subscription = self._open_subscription(session_id, last_event_id, output)
        try:
            yield subscription
        finally:
            subscription.end(CloseReason.CLOSED)

    def check_subscribe(self, session_id: str) -> Session:
        """Raise what :meth:`subscribe` would raise now, without subscribing.

        A server calls it to refuse a stream with a 4xx or 503 before it answers 200. Returns
        the session (a new, unregistered one if it does not exist).
        """
        self._check_open()
        _check_session_id(session_id)
        if self._memory_level is MemoryLevel.CRITICAL:
            raise MemoryPressureError("memory is above the critical threshold; try again later")
        if self._counters.subscribers >= self.config.max_subscribers:
            raise SubscriberLimitError(
                f"max_subscribers={self.config.max_subscribers} reached; try again later"
            )
        session = self._sessions.lookup(session_id)
        if len(session.subscribers) >= self.config.max_subscribers_per_session:
            raise SubscriberLimitError(
                f"session {session_id!r} has max_subscribers_per_session="
                f"{self.config.max_subscribers_per_session} subscribers"
            )
        self._sessions.check_room(session, write=False)
        return session

    def _open_subscription(
        self, session_id: str, last_event_id: str | None, output: SubscriberOutput | None
    ) -> Subscription:
        session = self.check_subscribe(session_id)
        now = trio.current_time()
        replay = session.history.replay(last_event_id, now)
        self._sessions.admit(session, now, write=False)

        def on_close(subscription: Subscription) -> None:
            self._sessions.detach(session, subscription, trio.current_time())

        history = session.history
        exact = last_event_id is not None and replay.reset_reason is None
        cursor = last_event_id if exact else history.id_for(history.last_seq)
        subscription = Subscription(
            session_id, replay.events, self.config, self._counters, on_close, now, cursor, output
        )
        self._sessions.attach(session, subscription)
        return subscription

    async def _open_shared_subscription(
        self, session_id: str, last_event_id: str | None, output: SubscriberOutput | None
    ) -> Subscription:
        """Replay from the shared backend, then hand over to live events in one synchronous
        step (``docs/architecture.md`` section 10)."""
        assert self._shared is not None
        self.check_subscribe(session_id)
        cursor = None if last_event_id is None else parse_event_id(last_event_id) or ("", 0)
        limit = self.config.max_history_per_session
        snapshot = await self._shared.replay(session_id, cursor, limit)
        events, reason = _shared_replay(snapshot, last_event_id, cursor)
        if reason is not None and cursor is not None and cursor[0] == snapshot.epoch:
            snapshot = await self._shared.replay(session_id, ("", 0), limit)  # all retained
            events, _ = _shared_replay(snapshot, last_event_id, ("", 0))
        if reason is not None:
            before = snapshot.events[0][0] - 1 if snapshot.events else snapshot.head
            start = f"{snapshot.epoch}-{before}"
            events = [reset_notice(reason, str(last_event_id), events, start), *events]
        # From here on nothing yields: the handoff to live events is one synchronous step.
        session = self.check_subscribe(session_id)
        now = trio.current_time()
        self._sessions.admit(session, now, write=False)
        history = session.history
        waiting: tuple[str, int] | None = None
        if not session.subscribers:  # not watched: the cache starts at the snapshot
            history.adopt(snapshot.epoch, snapshot.head)
        elif history.epoch == snapshot.epoch and history.last_seq >= snapshot.head:
            ahead = history.replay(history.id_for(snapshot.head), now)  # the cache is ahead
            events += ahead.events[1:] if ahead.reset_reason else ahead.events
        else:  # the read loop has yet to deliver up to the snapshot's head
            waiting = (snapshot.epoch, snapshot.head)

        def on_close(subscription: Subscription) -> None:
            session.waiting.pop(subscription, None)
            self._sessions.detach(session, subscription, trio.current_time())
            if not session.subscribers and self._shared is not None:
                self._shared.unwatch(session.id)

        last_id = events[-1].id if events else f"{snapshot.epoch}-{snapshot.head}"
        resume = last_event_id if reason is None and last_event_id is not None else last_id
        config, counters = self.config, self._counters
        subscription = Subscription(
            session_id, events, config, counters, on_close, now, resume, output
        )
        self._sessions.attach(session, subscription)
        if waiting is not None:
            session.waiting[subscription] = waiting
        self._shared.watch(session_id, history.epoch, history.last_seq)
        return subscription

    async def close_session(self, session_id: str) -> bool:
        """End ``session_id``: close its subscribers and forget its history.

        With a shared backend the session ends on every broadcaster sharing it.

        Returns:
            Whether the session existed.
        """
        await trio.lowlevel.checkpoint()
        existed = False
        if self._shared is not None:
            existed = await self._shared.close_session(session_id)
        session = self._sessions.get(session_id)
        if session is None:
            return existed
        self._remove_session(session, CloseReason.SESSION_CLOSED)
        return True

    def _ended(self, session_id: str) -> None:
        """A shared backend reports ``session_id`` closed by another broadcaster."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._remove_session(session, CloseReason.SESSION_CLOSED)

    def _remove_session(self, session: Session, reason: CloseReason) -> None:
        for subscription in list(session.subscribers):
            subscription.end(reason)
        self._sessions.remove(session)
        if self._shared is not None:
            self._shared.unwatch(session.id)

    # -- cleanup and memory -------------------------------------------------------------

    def cleanup(self) -> CleanupReport:
        """One cleanup pass: expired events, idle sessions, stale subscribers.

        The periodic task calls this every ``cleanup_interval``; it may also be called directly.
        """
        started = self._perf_counter()
        now = trio.current_time()
        expired_before = self._counters.events_expired
        expired_sessions = self._sessions.expired(now)
        for session in expired_sessions:
            self._sessions.remove(session)
        self._counters.sessions_expired += len(expired_sessions)
        stale = 0
        idle_time = self.config.max_subscriber_idle_time
        for session in self._sessions:
            session.history.expire(now)
            for subscription in [s for s in session.subscribers if s.is_stale(now, idle_time)]:
                subscription.end(CloseReason.STALE)
                stale += 1
        self._counters.stale_subscribers_removed += stale
        self._counters.cleanup_count += 1
        seconds = self._perf_counter() - started
        self._counters.last_cleanup_seconds = seconds
        report = CleanupReport(
            self._counters.events_expired - expired_before, len(expired_sessions), stale, seconds
        )
        if seconds > SLOW_CLEANUP_SECONDS:
            logger.warning("slow cleanup pass: %s", report)
        return report

    async def _run_cleanup(self, *, task_status: trio.TaskStatus[None]) -> None:
        interval = self.config.cleanup_interval
        deadline = trio.current_time()
        task_status.started()
        while True:
            deadline = max(deadline + interval, trio.current_time())
            await trio.sleep_until(deadline)
            self._supervised(self.cleanup, "cleanup")

    def check_memory(self) -> MemoryLevel:
        """Read RSS and ``heldBytes``, update the memory level, and shed if it is critical.

        RSS counts less what the broadcaster cannot free: when shedding has emptied every
        history and RSS is still above the warning threshold (the allocator keeps freed memory),
        the excess is set aside until RSS falls back under the threshold, so the level follows
        ``heldBytes`` and comes back to normal (issue 10). See ``docs/architecture.md`` 6.3.
        """
        rss_mb = self._rss_probe() / MiB
        if rss_mb <= self.config.memory_warning_threshold_mb:
            self._rss_kept_mb = 0.0
        level = self._level(rss_mb)
        if level is MemoryLevel.CRITICAL:
            self._shed()
            if self._counters.history_events == 0:  # nothing left that shedding can free
                # malloc_trim(0) was tried here and returned 0.6 MiB of 27 after a 70 MiB
                # burst (docs/performance.md, "Memory"): not kept.
                excess = rss_mb - self.config.memory_warning_threshold_mb
                self._rss_kept_mb = max(0.0, excess)
                level = self._level(rss_mb)
        if level is not self._memory_level:
            log = logger.info if level is MemoryLevel.NORMAL else logger.warning
            log("memory %s -> %s (rss %.1f MiB)", self._memory_level.value, level.value, rss_mb)
            self._memory_level = level
        return level

    def _level(self, rss_mb: float) -> MemoryLevel:
        config = self.config
        return next_level(
            self._memory_level,
            rss_mb - self._rss_kept_mb,
            self._counters.held_bytes() / MiB,
            warning_mb=config.memory_warning_threshold_mb,
            critical_mb=config.memory_critical_threshold_mb,
            held_threshold_mb=config.held_threshold_mb,
        )

    def _shed(self) -> None:
        """Halve every history (oldest events first) to give memory back."""
        self._counters.memory_sheds += 1
        evicted = 0
        for session in self._sessions:
            evicted += session.history.trim(len(session.history) // 2)
        self._counters.events_evicted += evicted
        logger.warning("memory critical: trimmed %d events from histories", evicted)

    async def _run_memory_check(self, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            self._supervised(self.check_memory, "memory check")
            await trio.sleep(self.config.memory_check_interval)

    def _supervised(self, step: Callable[[], object], name: str) -> None:
        try:
            step()
        except Exception:
            self._counters.cleanup_errors += 1
            logger.exception("%s pass failed; the broadcaster carries on", name)

    # -- state ------------------------------------------------------------------------

    @property
    def memory_level(self) -> MemoryLevel:
        """The memory level found by the last check."""
        return self._memory_level

    @property
    def backend_ready(self) -> bool:
        """Whether the backend answers (always, for a local one): ``/readyz``."""
        return self._shared is None or self._shared.ready

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> BroadcasterStatistics:
        """A frozen snapshot; costs the same whatever the number of sessions."""
        c = self._counters
        return BroadcasterStatistics(
            memory_usage_mb=self._rss_probe() / MiB,
            memory_level=self._memory_level.value,
            total_sessions=len(self._sessions),
            total_events=c.history_events,
            total_subscribers=c.subscribers,
            history_bytes=c.history_bytes,
            queued_bytes=c.queued_bytes,
            queued_events=c.queued_events,
            held_bytes=c.held_bytes(),
            metrics=MetricsSnapshot.of(c) if self.config.enable_metrics else None,
        )

    def get_stats(self) -> dict[str, Any]:
        """:meth:`statistics` as a JSON-ready dict with camelCase keys."""
        stats = self.statistics().as_dict()
        if self._shared is not None:
            stats["backend"] = {**self._shared.statistics(), "epochChanges": self._epoch_changes}
        return stats

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the broadcaster is closed")

    def close(self) -> None:
        """End every subscription (``CloseReason.SHUTDOWN``) and refuse further work.

        A server calls it to start a graceful drain; ``open_broadcaster`` calls it on exit.
        Idempotent; never blocks.
        """
        self._closed = True
        for session in self._sessions:
            self._remove_session(session, CloseReason.SHUTDOWN)


def _shared_replay(
    snapshot: Snapshot, last_event_id: str | None, cursor: tuple[str, int] | None
) -> tuple[list[SSEEvent], str | None]:
    """The events a shared snapshot replays after ``cursor``, and why it is not exact."""
    events = [event for _seq, event, _ttl in snapshot.events]
    if cursor is None:
        return [], None
    epoch, seq = cursor
    if epoch == "" or parse_event_id(str(last_event_id)) is None:
        return events, "unknown-id"
    if epoch != snapshot.epoch:
        return events, "epoch-changed"
    if seq > snapshot.head:
        return events, "unknown-id"
    first = snapshot.events[0][0] if snapshot.events else snapshot.head + 1
    if seq < snapshot.lost_through or first > seq + 1:
        return events, "history-expired"
    return events, None


def _check_session_id(session_id: str) -> None:
    if not isinstance(session_id, str) or not session_id:
        raise InvalidEventError(f"session id must be a non-empty str, not {session_id!r}")


@asynccontextmanager
async def open_broadcaster(
    config: BroadcasterConfig | None = None,
    *,
    backend: Backend | None = None,
    rss_probe: Callable[[], int] | None = None,
    perf_counter: Callable[[], float] = time.perf_counter,
) -> AsyncIterator[Broadcaster]:
    """Run a broadcaster for the duration of the block.

    The cleanup loop, the memory check and the backend's task run in a nursery owned by the
    block. On exit every subscription ends with ``CloseReason.SHUTDOWN`` and every task is
    cancelled. An exception raised in the block propagates as itself, not wrapped in a group.

    Args:
        config: Bounds and timings; defaults to ``BroadcasterConfig()``.
        backend: The fan-out transport; defaults to a new :class:`InMemoryBackend`.
        rss_probe: Returns the process's resident memory in bytes (replace it in tests); by
            default an :class:`RSSReader` the block owns (``/proc/self/statm`` kept open).
        perf_counter: Measures the duration of cleanup passes. It is not used for any deadline:
            every TTL and interval uses ``trio.current_time()``.
    """
    config = BroadcasterConfig() if config is None else config
    reader = RSSReader() if rss_probe is None else None
    probe = rss_probe or reader or process_rss_bytes
    broadcaster = Broadcaster(config, backend or InMemoryBackend(), probe, perf_counter)
    body_error: BaseException | None = None
    with contextlib.closing(reader) if reader is not None else contextlib.nullcontext():
        async with _running(broadcaster) as running:
            try:
                yield running
            except trio.Cancelled:
                raise
            except BaseException as exc:  # re-raised below, outside the nursery, unwrapped
                body_error = exc
    if body_error is not None:
        raise body_error


@asynccontextmanager
async def _running(broadcaster: Broadcaster) -> AsyncIterator[Broadcaster]:
    async with trio.open_nursery() as nursery:
        shared = broadcaster._shared
        if shared is None:
            await nursery.start(broadcaster._backend.run, broadcaster._deliver)
        else:
            run = functools.partial(shared.run_shared, broadcaster._deliver, broadcaster._ended)
            await nursery.start(run)
        await nursery.start(broadcaster._run_cleanup)
        await nursery.start(broadcaster._run_memory_check)
        try:
            yield broadcaster
        finally:
            broadcaster.close()
            nursery.cancel_scope.cancel()
