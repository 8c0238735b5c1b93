"""The sandbox's media encodings: MP3 bytes from samples (and back), PNG covers.

Pure functions; soundfile is imported on first use so that ``import suno_nb`` stays light.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

from ..audio import decode

DEFAULT_SR = 22050


MAX_DECODED_PEAK = 0.98  # a sandbox MP3 decodes below full scale (a 16-bit export never clips)


def encode_mp3(samples: np.ndarray, sr: int = DEFAULT_SR) -> bytes:
    """Encode mono float samples as MP3 bytes (libsndfile through soundfile, no ffmpeg).

    MP3 coding overshoots transients (by up to ~1.7x on the synthesized songs), so the result
    is decoded once to check: if it would peak above :data:`MAX_DECODED_PEAK`, the samples
    are scaled down by the excess and encoded again.  The synthesis leaves enough headroom
    (:data:`suno_nb.sandbox.synth.LEVEL`) that ordinary songs and takes never need it.
    """
    import soundfile as sf  # lazily: keeps `import suno_nb` light

    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    for _ in range(4):
        buf = io.BytesIO()
        sf.write(buf, data, sr, format="MP3", subtype="MPEG_LAYER_III")
        peak = float(np.max(np.abs(decode(buf.getvalue())[0]), initial=0.0))
        if peak <= MAX_DECODED_PEAK:
            break
        data = data * np.float32(0.97 * MAX_DECODED_PEAK / peak)
    return buf.getvalue()


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Decode MP3 (or WAV, FLAC...) bytes to float32 mono samples and the sample rate."""
    return decode(data)


# Pairs of colours a cover blends between (dark, light), chosen by the seed.
_PALETTES = (
    ((68, 1, 84), (253, 231, 37)),
    ((0, 0, 4), (252, 253, 191)),
    ((13, 8, 135), (240, 249, 33)),
    ((0, 34, 78), (254, 232, 56)),
    ((47, 20, 54), (226, 217, 226)),
    ((0, 255, 255), (255, 0, 255)),
    ((255, 0, 255), (255, 255, 0)),
    ((0, 128, 0), (255, 255, 255)),
)


def cover_png(seed: int, size: int = 256) -> bytes:
    """A square PNG cover: interfering waves in a two-colour blend chosen by ``seed``.

    numpy and zlib only (no imaging library): the sandbox runs on a default install."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size))
    for _ in range(4):
        fx, fy = rng.uniform(1, 9, 2)
        img += np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    cx, cy = rng.uniform(0.2, 0.8, 2)
    img += 3 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.05)
    t = (img - img.min()) / (np.ptp(img) or 1.0)
    dark, light = (np.array(c, dtype=np.float64) for c in _PALETTES[int(rng.integers(8))])
    rgb = (dark + t[..., None] * (light - dark)).round().astype(np.uint8)
    return _png(rgb)


def _png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB image as PNG bytes (each row with filter type 0)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
