"""suno_nb benchmarks: a documented command, not part of the pytest suite.

Run ``python -m benchmarks.run`` (~7 minutes) or ``python -m benchmarks.run --quick``
(~3 minutes) from the repository root.  All traffic stays on 127.0.0.1; every loop is
bounded in count and time.  Results and floors are described in ``docs/performance.md``.
"""
