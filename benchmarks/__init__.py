"""suno_nb benchmarks: a documented command, not part of the pytest suite.

Run ``python -m benchmarks.run`` (full, ~10 minutes) or ``python -m benchmarks.run --quick``
(~1–2 minutes) from the repository root.  All traffic stays on 127.0.0.1; every loop is
bounded in count and time.  Results are described in ``docs/performance.md``.
"""
