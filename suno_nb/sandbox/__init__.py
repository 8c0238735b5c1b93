"""A faithful local emulator of the Suno API: routes, callbacks with retries, faults, audio.

>>> from suno_nb.sandbox import Sandbox, Faults
>>> with Sandbox(delay=0.5) as sb:
...     song = sb.create_song(duration=60)
...     sb.inject(Faults(error_code=501), count=1)   # the next task fails

The CLI (``python -m suno_nb sandbox``) calls :func:`main`.
"""

from __future__ import annotations

from .cli import main
from .delivery import DeliveryAttempt
from .faults import ERROR_CODES, Failure, Faults
from .records import Song, SongTrack
from .server import Sandbox
from .synth import decode_audio, encode_mp3, synthesize_song
from .takes import replace_section

__all__ = [
    "ERROR_CODES",
    "DeliveryAttempt",
    "Failure",
    "Faults",
    "Sandbox",
    "Song",
    "SongTrack",
    "decode_audio",
    "encode_mp3",
    "main",
    "replace_section",
    "synthesize_song",
]
