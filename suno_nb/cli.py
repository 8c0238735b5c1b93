"""``python -m suno_nb``: the demo, the quickstart, the notebooks and the sandbox server."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

import pandas as pd
import requests

SEED_FILES = ("seed_success.json", "seed_failure_error.json", "seed_failure_null.json")


def seed_body(name: str) -> bytes:
    """A seed document's example callback body, byte for byte (shipped with the package)."""
    return resources.files("suno_nb").joinpath("data", name).read_bytes()


def _show(df: pd.DataFrame, columns: list[str]) -> str:
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40
    ):
        return df[columns].to_string(index=False)


def demo(args: argparse.Namespace) -> int:
    """Start a receiver, POST the seeds' example payloads over HTTP, print the tables."""
    from .session import start_receiver, stop_receiver

    rx = start_receiver(args.store, tunnel=None, poll=False)
    try:
        print(f"receiver: {rx.local_url.rsplit('/', 1)[0]}/<token>  store: {rx.store.path}")
        for name in SEED_FILES:
            r = requests.post(
                rx.url,
                data=seed_body(name),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            print(f"POST {name:<26} -> {r.status_code} {r.text}")
        print("\nframe():")
        print(_show(rx.frame(), ["task_id", "track_id", "title", "duration", "source"]))
        print("\ntasks():")
        print(_show(rx.tasks(), ["task_id", "state", "code", "msg", "tracks"]))
        deliveries = rx.deliveries()
        print("\ndeliveries():")
        print(_show(deliveries, ["delivery_id", "task_id", "verdict", "status", "size"]))
        print(_why_duplicates(deliveries))
    finally:
        stop_receiver()
    return 0


def _why_duplicates(deliveries: pd.DataFrame) -> str:
    """The seeds' three examples share one task id: say why two of them are duplicates."""
    dup = deliveries[deliveries["verdict"] == "duplicate"]
    if dup.empty:
        return ""
    first = deliveries[deliveries["verdict"] == "accepted"]
    ids = ", ".join(sorted(set(dup["task_id"])))
    return (
        f"\nWhy 'duplicate': the seed documents use one task id ({ids}) for all three "
        "examples. The first to arrive decides the task"
        + (f" (delivery {int(first['delivery_id'].iloc[0])}, a success)" if len(first) else "")
        + "; a later callback of the same task can fill in missing details but never turns "
        "a success into a failure (it may be a stale retry), so the failure examples are "
        "kept as raw deliveries with the verdict 'duplicate' and change nothing. A failure "
        "of a task of its own is stored as 'failed' (see notebook 04)."
    )


RESULT_COLUMNS = [
    "task_id",
    "track_id",
    "title",
    "infill_start_s",
    "infill_end_s",
    "duration",
    "source",
    "latency_s",
]


def quickstart(args: argparse.Namespace) -> int:
    """Run the quickstart notebook headlessly against the local sandbox; print this run's
    results and the one command that opens the notebooks."""
    from .tutorials import QUICKSTART, notebook_dir, open_command
    from .tutorials import quickstart as run

    source = Path(args.notebook) if args.notebook else notebook_dir() / QUICKSTART
    print(
        f"running {source.name} headlessly against the local sandbox (an emulator of the "
        "Suno API on 127.0.0.1: no key, no credits, no internet) ...",
        flush=True,
    )
    done = run(args.out, source)
    rows = done["rows"]
    print(f"\nthis run's results ({len(rows)} track(s); earlier runs stay in the store):")
    print(_show(rows, RESULT_COLUMNS))
    print(f"\nexecuted notebook written to {done['executed']}")
    folder = source.parent if args.notebook or _in_checkout(source) else "suno_nb_notebooks"
    steps = "" if folder == source.parent else f"python -m suno_nb notebooks {folder} && "
    print(f"next: open the notebooks in JupyterLab:\n  {steps}{open_command(folder)}")
    return 0


def _in_checkout(source: Path) -> bool:
    from .tutorials import CHECKOUT_DIR

    return source.resolve().parent == CHECKOUT_DIR


def notebooks(args: argparse.Namespace) -> int:
    """Copy the tutorial notebooks into a folder; print the command that opens them."""
    from .tutorials import copy_notebooks, open_command

    copied = copy_notebooks(args.dir, overwrite=args.force)
    print(f"{len(copied)} file(s) copied into {args.dir}" + ("" if copied else " (all there)"))
    for path in copied:
        print(f"  {path.name}")
    print(f"open them with:\n  {open_command(args.dir)}")
    return 0


def doctor(args: argparse.Namespace) -> int:
    """Where this runs, what can give the receiver a public URL, what start_receiver does."""
    from .tunnel.where import doctor as check

    print(check(probe_ports=not args.no_probe, timeout=args.timeout))
    return 0


def sandbox(args: argparse.Namespace) -> int:
    """Serve the API emulator until Ctrl-C."""
    from .sandbox import main as sandbox_main

    return sandbox_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m suno_nb", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="POST the seed payloads to a receiver, print the frames")
    p.add_argument("--store", default=":memory:", help="store file (default: in memory)")
    p.set_defaults(func=demo)
    p = sub.add_parser("quickstart", help="run the quickstart notebook against the sandbox")
    p.add_argument("--notebook", default=None, help="default: the installed tutorial")
    p.add_argument("--out", default="suno_nb_out", help="where the executed notebook goes")
    p.set_defaults(func=quickstart)
    p = sub.add_parser("doctor", help="where this runs and how callbacks can reach it")
    p.add_argument("--no-probe", action="store_true", help="do not try the outbound ports")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per outbound probe")
    p.set_defaults(func=doctor)
    p = sub.add_parser("notebooks", help="copy the tutorial notebooks into a folder")
    p.add_argument("dir", nargs="?", default="suno_nb_notebooks")
    p.add_argument("--force", action="store_true", help="overwrite copies already there")
    p.set_defaults(func=notebooks)
    # The sandbox's own parser reads its options (and -h): they are passed through as given.
    p = sub.add_parser("sandbox", help="serve the Suno API emulator until Ctrl-C", add_help=False)
    p.set_defaults(func=sandbox, passthrough=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # parse_known_args, not REMAINDER: argparse's REMAINDER in a subcommand refuses a first
    # argument that looks like an option ("sandbox --port 8765" exited 2).
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
