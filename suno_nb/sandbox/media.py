"""The sandbox's media encodings: MP3 bytes from samples (and back), PNG covers.

Pure functions; soundfile and matplotlib are imported on first use so that
``import suno_nb`` stays light.
"""

from __future__ import annotations

import io
import threading

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


_MPL_LOCK = threading.Lock()  # matplotlib is not thread-safe; covers render on server threads
_CMAPS = ("viridis", "magma", "plasma", "cividis", "twilight", "cool", "spring", "ocean")


def cover_png(seed: int, size: int = 256) -> bytes:
    """A square PNG cover: interfering waves coloured with a colormap chosen by ``seed``."""
    import matplotlib.image  # lazy: matplotlib is heavy and only needed for covers

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size))
    for _ in range(4):
        fx, fy = rng.uniform(1, 9, 2)
        img += np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    cx, cy = rng.uniform(0.2, 0.8, 2)
    img += 3 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.05)
    buf = io.BytesIO()
    with _MPL_LOCK:
        matplotlib.image.imsave(buf, img, cmap=_CMAPS[int(rng.integers(len(_CMAPS)))], format="png")
    return buf.getvalue()
