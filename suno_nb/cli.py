"""``python -m suno_nb``: the demo, the quickstart and the sandbox server."""

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


QUICKSTART_NOTEBOOK = Path("notebooks") / "01_quickstart.ipynb"
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


def _quickstart_inline(store: str) -> None:
    """The quickstart as plain Python: sandbox, receiver, client, one replaced section."""
    from .client import SunoClient
    from .sandbox import Sandbox
    from .session import start_receiver, stop_receiver

    with Sandbox(delay=1.0) as sb:
        rx = start_receiver(store, tunnel=None, poll_interval=2.0, poll_grace=5.0)
        try:
            client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
            song = sb.create_song(duration=90.0, title="Quickstart Original", tags="lofi, keys")
            print(f"original: task {song.task_id}, audio {song.audio_id}, {song.duration:g} s")
            job = client.replace_section(
                task_id=song.task_id,
                audio_id=song.audio_id,
                prompt="a bright brass break",
                tags="funk, brass",
                title="Quickstart Take 2",
                infill_start_s=30.0,
                infill_end_s=45.0,
                # sunoapi.org requires the whole lyrics after the change.
                full_lyrics=(
                    "[Verse] Lights over the harbour\n[Break] (brass)\n[Chorus] We sing it again"
                ),
            )
            print(f"submitted replace task {job.task_id} (30 s - 45 s); waiting for the callback")
            result = rx.wait(job.task_id, timeout=120, progress=False)
            print(f"{result!r}\n")
            print(_show(rx.frame(), RESULT_COLUMNS))
        finally:
            stop_receiver()


def quickstart(args: argparse.Namespace) -> int:
    """Run notebooks/01_quickstart.ipynb headlessly against the sandbox; print the results.

    Outside a checkout (no notebooks/ folder) the same steps run as plain Python.
    """
    notebook = Path(args.notebook)
    if not notebook.exists():
        print(f"{notebook} not found: running the quickstart steps as plain Python")
        _quickstart_inline(args.store or ":memory:")
        return 0
    import nbformat
    from nbclient import NotebookClient

    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    print(f"running {notebook} headlessly (kernel: this Python) ...")
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(out_dir)}}
    ).execute()
    executed = out_dir / notebook.name.replace(".ipynb", ".executed.ipynb")
    nbformat.write(nb, executed)
    from .frame import frame
    from .store import DEFAULT_PATH, Store

    store = Store(out_dir / DEFAULT_PATH)
    try:
        print("\nresult table (frame()):")
        print(_show(frame(store), RESULT_COLUMNS))
    finally:
        store.close()
    print(f"\nexecuted notebook written to {executed}")
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
    p.add_argument("--notebook", default=str(QUICKSTART_NOTEBOOK))
    p.add_argument("--out", default="suno_nb_out", help="where the executed notebook goes")
    p.add_argument("--store", default=None, help="store file for the plain-Python fallback")
    p.set_defaults(func=quickstart)
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
