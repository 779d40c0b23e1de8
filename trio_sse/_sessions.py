"""The session registry: history and subscribers per session id, bounded by ``max_sessions``.

Sessions without subscribers sit in ``idle``, an ordered dict kept in order of last activity
(a publish moves a session to the end). Expiry therefore reads only the front of ``idle`` and
stops at the first session still in time, and eviction under ``max_sessions`` takes the front:
neither walks all sessions. A session leaves ``idle`` when its first subscriber arrives and
goes back, stamped with the current time, when its last one leaves.
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

    __slots__ = ("history", "id", "last_activity", "subscribers")

    def __init__(self, session_id: str, config: BroadcasterConfig, counters: Counters) -> None:
        self.id = session_id
        self.history = History(
            config.max_history_per_session, config.max_history_bytes_per_session, counters
        )
        self.subscribers: dict[Subscription, None] = {}  # an ordered set
        self.last_activity = 0.0


class SessionRegistry:
    """All sessions of one broadcaster, with the counters that describe them."""

    def __init__(self, config: BroadcasterConfig, counters: Counters) -> None:
        self._config = config
        self._counters = counters
        self._sessions: dict[str, Session] = {}
        self._idle: OrderedDict[str, Session] = OrderedDict()

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

    def admit(self, session: Session, now: float) -> None:
        """Register ``session`` if it is new, evicting the oldest idle session if full.

        Raises:
            SessionLimitError: ``max_sessions`` sessions exist and all have subscribers.
        """
        if session.id in self._sessions:
            return
        if len(self._sessions) >= self._config.max_sessions:
            if not self._idle:
                raise SessionLimitError(
                    f"max_sessions={self._config.max_sessions} reached and every session has "
                    "subscribers; try again later"
                )
            evicted = next(iter(self._idle.values()))
            self.remove(evicted)
            self._counters.sessions_evicted += 1
        session.last_activity = now
        self._sessions[session.id] = session
        self._idle[session.id] = session

    def touch(self, session: Session, now: float) -> None:
        """Record activity (a publish) on ``session``."""
        session.last_activity = now
        if session.id in self._idle:
            self._idle.move_to_end(session.id)

    def attach(self, session: Session, subscription: Subscription) -> None:
        session.subscribers[subscription] = None
        self._idle.pop(session.id, None)
        self._counters.subscribers += 1

    def detach(self, session: Session, subscription: Subscription, now: float) -> None:
        if subscription in session.subscribers:
            del session.subscribers[subscription]
            self._counters.subscribers -= 1
            self._counters.subscribers_removed += 1
        if not session.subscribers and self._sessions.get(session.id) is session:
            session.last_activity = now
            self._idle[session.id] = session
            self._idle.move_to_end(session.id)

    def expired(self, now: float) -> list[Session]:
        """Idle sessions whose ``session_ttl`` has run out, oldest first."""
        ttl = self._config.session_ttl
        found = []
        for session in self._idle.values():
            if session.last_activity + ttl > now:
                break
            found.append(session)
        return found

    def remove(self, session: Session) -> None:
        """Forget ``session`` and its history. Its subscribers must be closed first."""
        del self._sessions[session.id]
        self._idle.pop(session.id, None)
        session.history.clear()
