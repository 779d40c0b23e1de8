"""Public test helpers: a conformance check every :class:`~trio_sse.backends.Backend` must pass."""

from ._check_backend import check_backend as check_backend

__all__ = ["check_backend"]
