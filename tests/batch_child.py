"""A child process for tests/test_batch.py: run_batch over a store file, against a sandbox
the test process runs.  argv: url key store marker jobs_file stop_after.

With stop_after > 0, the stop_after-th answered submit writes ``marker`` and blocks forever
(the test kills the process there, before the batch could store the answer); with 0, the
batch runs to the end and prints its summary and its frame as two JSON lines.
"""

import json
import sys
import threading
from pathlib import Path

import requests

import suno_nb as snb
from suno_nb import session


class Stopping(requests.Session):
    """After the ``stop_after``-th answered submit: say so, and never return."""

    def __init__(self, stop_after: int, marker: str) -> None:
        super().__init__()
        self.stop_after, self.marker, self.sent = stop_after, marker, 0

    def request(self, method, url, *args, **kwargs):
        resp = super().request(method, url, *args, **kwargs)
        if method == "POST" and url.endswith("replace-section"):
            self.sent += 1
            if self.sent == self.stop_after:
                Path(self.marker).write_text("stopped")
                threading.Event().wait()
        return resp


def main() -> None:
    url, key, store, marker, jobs_file, stop_after = sys.argv[1:7]
    jobs = json.loads(Path(jobs_file).read_text())
    rx = session.start_receiver(store, tunnel=None, poll_interval=0.5, poll_grace=1.0)
    http = Stopping(int(stop_after), marker) if int(stop_after) else None
    client = snb.SunoClient(key, base_url=url, session=http)
    b = snb.run_batch(client, jobs, receiver=rx, name="overnight", progress=False)
    b.wait(timeout=120, uncertain=True, progress=False)
    print(json.dumps(b.summary()))
    print(json.dumps(b.frame()[["state", "sends"]].to_dict("list")))
    session.stop_receiver()


if __name__ == "__main__":
    main()
