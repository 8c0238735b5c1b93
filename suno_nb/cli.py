"""``python -m suno_nb``: the demo, the quickstart and the sandbox server."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources

import pandas as pd
import requests

SEED_FILES = ("seed_success.json", "seed_failure_error.json", "seed_failure_null.json")


def seed_body(name: str) -> bytes:
    """A seed document's example callback body, byte for byte (shipped with the package)."""
    return resources.files("suno_nb").joinpath("data", name).read_bytes()


def _show(df: pd.DataFrame, columns: list[str]) -> str:
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.max_colwidth", 40):
        return df[columns].to_string(index=False)


def demo(args: argparse.Namespace) -> int:
    """Start a receiver, POST the seeds' example payloads over HTTP, print the tables."""
    from .session import start_receiver, stop_receiver  # noqa: PLC0415

    rx = start_receiver(args.store, tunnel=None, poll=False)
    try:
        print(f"receiver: {rx.local_url.rsplit('/', 1)[0]}/<token>  store: {rx.store.path}")
        for name in SEED_FILES:
            r = requests.post(rx.url, data=seed_body(name),
                              headers={"Content-Type": "application/json"}, timeout=10)
            print(f"POST {name:<26} -> {r.status_code} {r.text}")
        print("\nframe():")
        print(_show(rx.frame(), ["task_id", "track_id", "title", "duration", "source"]))
        print("\ntasks():")
        print(_show(rx.tasks(), ["task_id", "state", "code", "msg", "tracks"]))
        print("\ndeliveries():")
        print(_show(rx.deliveries(), ["delivery_id", "verdict", "status", "size"]))
    finally:
        stop_receiver()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m suno_nb", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="POST the seed payloads to a receiver, print the frames")
    p.add_argument("--store", default=":memory:", help="store file (default: in memory)")
    p.set_defaults(func=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
