"""A small end-to-end demo of the broadcaster: subscribe, publish, replay, stats."""

from __future__ import annotations

import json

import trio

from ._broadcaster import open_broadcaster
from ._config import BroadcasterConfig


async def run_demo(config: BroadcasterConfig, *, events: int = 5) -> None:
    """Publish ``events`` events to two subscribers, resume a third from an id, print stats."""
    async with open_broadcaster(config) as broadcaster:
        async with (
            broadcaster.subscribe("demo") as first,
            broadcaster.subscribe("demo") as second,
        ):
            published = [
                await broadcaster.publish("demo", "progress", {"step": n, "of": events})
                for n in range(1, events + 1)
            ]
            for name, subscription in (("first", first), ("second", second)):
                for _ in published:
                    event = await subscription.receive()
                    print(f"{name:>7} got {event.type} id={event.id} data={event.data}")
        resume_after = published[0].id
        async with broadcaster.subscribe("demo", last_event_id=resume_after) as late:
            print(f"resuming after {resume_after}:")
            for _ in published[1:]:
                event = await late.receive()
                print(f"   late got {event.type} id={event.id} data={event.data}")
        print(json.dumps(broadcaster.get_stats(), indent=2))


def main(config: BroadcasterConfig, *, events: int = 5) -> None:
    trio.run(lambda: run_demo(config, events=events))
