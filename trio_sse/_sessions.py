"""The session registry: history and subscribers per session id, bounded by ``max_sessions``.

Sessions without subscribers are idle, and sit in one of two ordered dicts kept in order of
last activity: ``idle_read`` for sessions only readers have touched (never published to, so
they hold nothing that matters), ``idle_written`` for sessions a publish has touched (a publish
moves a session to the end, and out of ``idle_read`` for good). Expiry reads only the fronts and
stops at the first session still in time; eviction under ``max_sessions`` takes a front: no
operation walks all sessions. A session leaves its idle dict when its first subscriber arrives
and goes back, stamped with the current time, when its last one leaves.

Reads never evict data (issue 10): a full table makes room for a new session by dropping the
oldest idle reader-only session; only a publish (an authorised write) may evict a session that
was written to, oldest first. A read that finds neither gets :class:`SessionLimitError`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from ._config import BroadcasterConfig
from ._exceptions import SessionLimitError
from ._history import History
from ._stats import Counters
from ._subscription import Subscription


class Session:
    """One session: its bounded history and its open subscriptions."""

    __slots__ = ("history", "id", "last_activity", "subscribers", "waiting", "written")

    def __init__(self, session_id: str, config: BroadcasterConfig, counters: Counters) -> None:
        self.id = session_id
        self.history = History(
            config.max_history_per_session, config.max_history_bytes_per_session, counters
        )
        self.subscribers: dict[Subscription, None] = {}  # an ordered set
        # Shared backend: subscribers whose replay reached (epoch, seq) beyond the local cache;
        # they take live events only after it (docs/architecture.md section 10).
        self.waiting: dict[Subscription, tuple[str, int]] = {}
        self.last_activity = 0.0
        self.written = False  # a publish has touched it: its history and epoch matter


class SessionRegistry:
    """All sessions of one broadcaster, with the counters that describe them."""

    def __init__(self, config: BroadcasterConfig, counters: Counters) -> None:
        self._config = config
        self._counters = counters
        self._sessions: dict[str, Session] = {}
        self._idle_read: OrderedDict[str, Session] = OrderedDict()
        self._idle_written: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def lookup(self, session_id: str) -> Session:
        """The session, or a new one not yet registered (see :meth:`admit`)."""
        session = self._sessions.get(session_id)
        return session if session is not None else Session(session_id, self._config, self._counters)

    def admit(self, session: Session, now: float, *, write: bool) -> None:
        """Register ``session`` if it is new, making room if the table is full.

        Room is made by dropping the oldest idle session that only readers have touched; if
        there is none and ``write`` is true (a publish), by evicting the oldest idle session
        that was written to (``sessionsEvicted``).

        Raises:
            SessionLimitError: ``max_sessions`` sessions exist and none may give way to this
                one (a read never evicts a written session).
        """
        if session.id in self._sessions:
            return
        if len(self._sessions) >= self._config.max_sessions:
            self.remove(self._victim(write))
            self._counters.sessions_evicted += 1
        session.last_activity = now
        self._sessions[session.id] = session
        self._idle_read[session.id] = session

    def check_room(self, session: Session, *, write: bool) -> None:
        """Raise what :meth:`admit` would raise for ``session`` now, changing nothing."""
        if session.id not in self._sessions and len(self._sessions) >= self._config.max_sessions:
            self._victim(write)

    def _victim(self, write: bool) -> Session:
        """The session to evict to make room, oldest first; raise if none may give way."""
        victims = self._idle_read or (self._idle_written if write else None)
        if not victims:
            raise SessionLimitError(
                f"max_sessions={self._config.max_sessions} reached and no session may give way"
                + ("; every session has subscribers" if write else " to a read")
                + "; try again later"
            )
        return next(iter(victims.values()))

    def touch(self, session: Session, now: float) -> None:
        """Record a publish on ``session``: it is written to, and its activity is now."""
        session.last_activity = now
        if not session.written:
            session.written = True
            if self._idle_read.pop(session.id, None) is not None:
                self._idle_written[session.id] = session
        elif session.id in self._idle_written:
            self._idle_written.move_to_end(session.id)

    def attach(self, session: Session, subscription: Subscription) -> None:
        session.subscribers[subscription] = None
        self._idle_of(session).pop(session.id, None)
        self._counters.subscribers += 1

    def detach(self, session: Session, subscription: Subscription, now: float) -> None:
        if subscription in session.subscribers:
            del session.subscribers[subscription]
            self._counters.subscribers -= 1
            self._counters.subscribers_removed += 1
        if not session.subscribers and self._sessions.get(session.id) is session:
            session.last_activity = now
            idle = self._idle_of(session)
            idle[session.id] = session
            idle.move_to_end(session.id)

    def _idle_of(self, session: Session) -> OrderedDict[str, Session]:
        return self._idle_written if session.written else self._idle_read

    def expired(self, now: float) -> list[Session]:
        """Idle sessions whose ``session_ttl`` has run out (reader-only ones first)."""
        ttl = self._config.session_ttl
        found = []
        for idle in (self._idle_read, self._idle_written):
            for session in idle.values():
                if session.last_activity + ttl > now:
                    break
                found.append(session)
        return found

    def remove(self, session: Session) -> None:
        """Forget ``session`` and its history. Its subscribers must be closed first."""
        del self._sessions[session.id]
        self._idle_of(session).pop(session.id, None)
        session.history.clear()
