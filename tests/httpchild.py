"""A receiver in a child process, for tests that kill it or limit its file descriptors.

Run as ``python -m tests.httpchild STORE [--nofile N] [--max-connections N]``: prints the
callback URL on one line, then serves until stdin closes (or the process is killed).
"""

from __future__ import annotations

import argparse
import resource
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--nofile", type=int, default=None)
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--hmac-key", default=None)
    args = parser.parse_args()
    if args.nofile is not None:  # this process only
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    from suno_nb.session import start_receiver, stop_receiver

    rx = start_receiver(
        args.store,
        tunnel=None,
        poll=False,
        max_connections=args.max_connections,
        hmac_key=args.hmac_key,
    )
    print(rx.local_url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    stop_receiver()


if __name__ == "__main__":
    main()
