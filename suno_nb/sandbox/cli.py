"""``python -m suno_nb sandbox``: serve a sandbox until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import time

from .server import Sandbox


def main(argv: list[str] | None = None) -> int:
    """``python -m suno_nb sandbox``: serve a sandbox until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m suno_nb sandbox",
        description="Run a local emulator of the Suno API (replace-section workflow).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="default: a random sk-sandbox-... key")
    parser.add_argument("--hmac-key", default=None, help="sign callbacks with this key")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds until a result")
    parser.add_argument("--credits", type=float, default=500.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--callback-timeout", type=float, default=10.0)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--retry-backoff", type=float, default=1.0)
    parser.add_argument(
        "--provider",
        default=None,
        help="whose contract to emulate: sunoapi.org (default), kie.ai (task API), kie.ai-legacy",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    sb = Sandbox(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        credits=args.credits,
        delay=args.delay,
        retry_backoff=args.retry_backoff,
        callback_timeout=args.callback_timeout,
        max_attempts=args.max_attempts,
        hmac_key=args.hmac_key,
        seed=args.seed,
        provider=args.provider,
    )
    try:
        sb.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    started = time.monotonic()
    try:  # from here on, Ctrl-C at any moment ends in a clean stop
        song = sb.create_song()
        # The sandbox key guards nothing real, so printing it here is fine (and needed).
        print(f"Suno API sandbox at {sb.url}")
        print(f"API key: {sb.api_key}")
        print(f"Contract: {sb.provider.name} (sections {sb.provider.section.describe()})")
        print(f"An original to replace sections of: taskId={song.task_id} audioId={song.audio_id}")
        print(f"  ({song.duration:g} s, {song.audio_url})")
        print("Press Ctrl-C to stop.", flush=True)
        sb.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
    print(f"sandbox stopped after {time.monotonic() - started:.0f} s")
    return 0
