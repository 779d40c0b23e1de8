"""Command-line entry point: argument parsing only; the work lives in the modules below."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._config import BroadcasterConfig
from ._exceptions import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-sse",
        description="Server-Sent Events on Trio: bounded broadcaster, provable cleanup.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="start a broadcaster, subscribe, publish, resume from an id, print stats"
    )
    demo.add_argument(
        "--config", metavar="FILE", help="TOML file of broadcaster settings (see docs)"
    )
    demo.add_argument("--events", type=int, default=5, help="events to publish (default 5)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        base = BroadcasterConfig.from_toml(args.config) if args.config else None
        config = BroadcasterConfig.from_env(base=base)
    except ConfigError as exc:
        print(f"trio-sse: {exc}", file=sys.stderr)
        return 2
    if args.command == "demo":
        from ._demo import main as demo_main

        if args.events < 1:
            print("trio-sse: --events must be at least 1", file=sys.stderr)
            return 2
        demo_main(config, events=args.events)
    return 0
