"""Music-like audio for the sandbox: songs (their section replacements: takes; MP3, covers: media).

Everything here is a pure function of its arguments (seed in, samples out), so tests and
the audio code can call it without a server.  A song is planned first (:class:`SongPlan`:
tempo, key, chord progressions, a verse/chorus form, a lead instrument) and then rendered
note by note with additive synthesis.  All post-processing is pointwise in absolute time,
so rendering a window ``[t0, t1)`` gives the same samples as slicing the whole song — which
is what lets :func:`~.takes.replace_section` render only the replaced section.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import lru_cache, partial

import numpy as np

from .media import DEFAULT_SR
from .media import cover_png as cover_png  # re-exported: the sandbox's media, one place
from .media import decode_audio as decode_audio
from .media import encode_mp3 as encode_mp3

_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Chord progressions as scale degrees, one chord per bar (I-V-vi-IV and friends).
_PROGRESSIONS = (
    (0, 4, 5, 3),
    (0, 5, 3, 4),
    (5, 3, 0, 4),
    (0, 3, 4, 4),
    (0, 5, 1, 4),
    (3, 4, 0, 5),
    (0, 2, 3, 4),
)
# name -> (harmonic amplitudes, decay time constant s or None for sustained, attack s)
_TIMBRES: dict[str, tuple[tuple[float, ...], float | None, float]] = {
    "piano": ((1.0, 0.5, 0.3, 0.15, 0.08), 0.45, 0.004),
    "pluck": ((1.0, 0.7, 0.45, 0.3, 0.2, 0.1), 0.14, 0.002),
    "organ": ((1.0, 0.8, 0.55, 0.35), None, 0.02),
    "flute": ((1.0, 0.25, 0.06), None, 0.04),
    "square": ((1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14), None, 0.01),
    "bell": ((1.0, 0.0, 0.45, 0.0, 0.0, 0.25), 0.7, 0.002),
}
LEADS = ("piano", "pluck", "flute", "square", "bell", "organ")
_DRUM_STYLES = ("backbeat", "four", "halftime", "shuffle")
# Bars per form part; the body cycles until the song is full.
_BODY = (("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8), ("bridge", 8), ("chorus", 8))


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from any printable values, stable across processes (no ``hash()``)."""
    text = "\x1f".join(repr(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 33


@dataclass(frozen=True)
class SongPlan:
    """The musical decisions behind a song; rendering it is deterministic."""

    duration: float
    tempo: float
    root: int  # MIDI note of the tonic in the pad's octave
    mode: str  # "major" | "minor"
    progression: tuple[int, ...]  # verse chords
    chorus_progression: tuple[int, ...]
    lead: str
    drums: str
    melody_seed: int
    sections: tuple[tuple[str, float, float], ...]  # (name, start s, end s)
    arpeggio: bool = False

    @property
    def bar(self) -> float:
        return 4 * 60.0 / self.tempo

    def section_at(self, t: float) -> str:
        """Name of the form part playing at ``t`` seconds."""
        for name, start, end in self.sections:
            if start <= t < end:
                return name
        return self.sections[-1][0] if self.sections else "verse"


def plan_song(duration: float, seed: int) -> SongPlan:
    """Choose tempo, key, progressions, form and instruments for a song from ``seed``."""
    if duration <= 0:
        raise ValueError(f"duration must be > 0 s, got {duration!r}")
    rng = np.random.default_rng(seed)
    tempo = float(rng.integers(88, 132))
    bar = 4 * 60.0 / tempo
    n_bars = max(1, math.ceil(duration / bar))
    intro = 4 if n_bars >= 24 else 2 if n_bars >= 8 else 0
    outro = 4 if n_bars >= 24 else 2 if n_bars >= 8 else 0
    parts: list[tuple[str, int]] = [("intro", intro)] if intro else []
    remaining, i = n_bars - intro - outro, 0
    while remaining > 0:
        name, bars = _BODY[i % len(_BODY)]
        parts.append((name, min(bars, remaining)))
        remaining -= bars
        i += 1
    if outro:
        parts.append(("outro", outro))
    sections, t = [], 0.0
    for name, bars in parts:
        sections.append((name, t, t + bars * bar))
        t += bars * bar
    prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    chorus = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    return SongPlan(
        duration=float(duration),
        tempo=tempo,
        root=48 + int(rng.integers(12)),
        mode="minor" if rng.random() < 0.4 else "major",
        progression=prog,
        chorus_progression=chorus,
        lead=LEADS[int(rng.integers(len(LEADS)))],
        drums=_DRUM_STYLES[int(rng.integers(2))],  # originals: the two straight grooves
        melody_seed=int(rng.integers(2**31)),
        sections=tuple(sections),
    )


def variant_plan(base: SongPlan, seed: int) -> SongPlan:
    """A replacement's plan: same tempo and form, new key/mode, chords, lead, groove, tune.

    Keeping tempo and bar grid means the new section lands on the original's beat, as a
    real section replacement would; everything a listener notices is changed.
    """
    rng = np.random.default_rng(seed)
    shift = int(rng.choice([-5, -3, -2, 2, 3, 5, 7]))
    mode = base.mode if rng.random() < 0.5 else ("minor" if base.mode == "major" else "major")
    leads = [name for name in LEADS if name != base.lead]
    drums = [name for name in _DRUM_STYLES if name != base.drums]
    progs = [p for p in _PROGRESSIONS if p != base.progression]
    return replace(
        base,
        root=48 + (base.root - 48 + shift) % 12,
        mode=mode,
        progression=progs[int(rng.integers(len(progs)))],
        chorus_progression=progs[int(rng.integers(len(progs)))],
        lead=leads[int(rng.integers(len(leads)))],
        drums=drums[int(rng.integers(len(drums)))],
        melody_seed=int(rng.integers(2**31)),
        arpeggio=bool(rng.random() < 0.7),
    )


# --- note rendering -----------------------------------------------------------------------


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def _degree(plan: SongPlan, degree: int) -> int:
    """Semitones above the root for a (possibly negative or > 7) scale degree."""
    scale = _SCALES[plan.mode]
    return scale[degree % 7] + 12 * (degree // 7)


def _tone(freq: float, dur: float, sr: int, timbre: str, vibrato: float = 0.0) -> np.ndarray:
    harmonics, decay, attack = _TIMBRES[timbre]
    release = 0.03
    n = max(1, int((dur + release) * sr))
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    phase = (2 * np.pi * freq) * t
    if vibrato:
        phase = phase + np.float32(vibrato * freq / 5.0) * np.sin(2 * np.pi * 5.0 * t)
    wave = np.zeros(n, dtype=np.float32)
    for k, amp in enumerate(harmonics, start=1):
        if amp and k * freq < sr / 2 * 0.9:  # no aliasing
            wave += np.float32(amp) * np.sin(k * phase)
    env = np.minimum(t / np.float32(attack), 1.0)
    if decay is not None:
        env *= np.exp(-t / np.float32(decay))
    # Linear release after the note's nominal end, so notes never click off.
    env *= np.clip((dur + release - t) / np.float32(release), 0.0, 1.0)
    return wave * env


@lru_cache(maxsize=8)
def _drum_kit(sr: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(12345)  # fixed: drums are the same sound in every song
    t = np.arange(int(0.35 * sr), dtype=np.float32) / np.float32(sr)
    sweep = 2 * np.pi * (50.0 * t + (120.0 / 18.0) * (1 - np.exp(-18.0 * t)))
    kick = np.sin(sweep) * np.exp(-t / 0.12)
    ts = t[: int(0.2 * sr)]
    noise = rng.standard_normal(ts.size).astype(np.float32)
    snare = 0.6 * noise * np.exp(-ts / 0.05) + 0.5 * np.sin(2 * np.pi * 185 * ts) * np.exp(
        -ts / 0.04
    )
    th = t[: int(0.06 * sr)]
    hiss = rng.standard_normal(th.size + 1).astype(np.float32)
    hat = np.diff(hiss) * np.exp(-th / 0.012)  # first difference = crude high-pass
    tc = t[: int(0.35 * sr)]
    crash_noise = rng.standard_normal(tc.size + 1).astype(np.float32)
    crash = np.diff(crash_noise) * np.exp(-tc / 0.25)
    return {
        k: v.astype(np.float32)
        for k, v in {"kick": kick, "snare": snare, "hat": hat, "crash": crash}.items()
    }


Event = tuple[float, float, Callable[[], np.ndarray]]  # (start s, length s, renderer)

_INTENSITY = {"intro": 0.6, "verse": 0.85, "chorus": 1.0, "bridge": 0.8, "outro": 0.6}


def _events(plan: SongPlan, sr: int, t0: float, t1: float) -> Iterable[Event]:
    """Every note and drum hit whose sound overlaps ``[t0, t1)``."""
    bar, beat = plan.bar, plan.bar / 4
    kit = _drum_kit(sr)
    motif_rng = np.random.default_rng(plan.melody_seed)
    # One 2-bar motif per part type, so verses repeat the verse tune: song-like structure.
    motifs = {name: _motif(motif_rng) for name in ("intro", "verse", "chorus", "bridge", "outro")}
    first_bar = max(0, int(t0 // bar) - 1)  # previous bar: its tails ring into the window
    last_bar = math.ceil(min(t1, plan.duration) / bar)
    for b in range(first_bar, last_bar):
        start = b * bar
        part = plan.section_at(start + 1e-6)
        part_start = next((s for n, s, e in plan.sections if s <= start + 1e-6 < e), 0.0)
        bar_in_part = round((start - part_start) / bar)
        level = _INTENSITY.get(part, 0.8)
        prog = plan.chorus_progression if part == "chorus" else plan.progression
        if part == "bridge":
            prog = tuple((c + 3) % 7 for c in plan.progression)
        chord = prog[b % len(prog)]
        triad = [plan.root + _degree(plan, chord + i) for i in (0, 2, 4)]

        # Pad: the chord held over the bar.
        for note in triad:
            yield (
                start,
                bar,
                _scaled(partial(_tone, _midi_hz(note), bar, sr, "organ"), 0.05 * level),
            )
        # Arpeggio (replacements mostly): sixteenth-note broken chord, an octave up.
        if plan.arpeggio and part != "outro":
            for i in range(16):
                n = triad[(i % 4) % 3] + 12 + (12 if i % 4 == 3 else 0)
                yield (
                    start + i * beat / 4,
                    beat / 4,
                    _scaled(partial(_tone, _midi_hz(n), beat / 4, sr, "pluck"), 0.06 * level),
                )
        # Bass: root on the beats (eighths in the chorus).
        if part != "intro":
            steps = 8 if part == "chorus" else 4
            for i in range(steps):
                n = plan.root - 12 + _degree(plan, chord) + (12 if steps == 8 and i % 2 else 0)
                d = bar / steps
                yield (
                    start + i * d,
                    d * 0.9,
                    _scaled(partial(_tone, _midi_hz(n), d * 0.9, sr, "piano"), 0.22),
                )
        # Lead melody from the part's motif, transposed up an octave in the chorus.
        if part not in ("intro", "outro"):
            motif = motifs[part]
            half = (bar_in_part % 2) * 8
            lift = 7 if part == "chorus" else 0
            for slot, (deg, length) in enumerate(motif[half : half + 8]):
                if deg is None:
                    continue
                # Phrase endings (every 4th bar) resolve to a chord tone.
                if bar_in_part % 4 == 3 and slot >= 6:
                    deg = chord + 7
                n = plan.root + 12 + _degree(plan, deg + lift)
                d = length * beat / 2
                yield (
                    start + slot * beat / 2,
                    d,
                    _scaled(
                        partial(
                            _tone,
                            _midi_hz(n),
                            d,
                            sr,
                            plan.lead,
                            0.004 if plan.lead == "flute" else 0.0,
                        ),
                        0.16 * level,
                    ),
                )
        # Drums.
        yield from _drums(plan, part, start, beat, kit, level, opens_part=bar_in_part == 0)


def _scaled(fn: Callable[[], np.ndarray], gain: float) -> Callable[[], np.ndarray]:
    return lambda: fn() * np.float32(gain)


def _motif(rng: np.random.Generator) -> list[tuple[int | None, int]]:
    """16 eighth-note slots of (scale degree or None for rest, length in eighths)."""
    slots: list[tuple[int | None, int]] = []
    deg = int(rng.integers(0, 5))
    i = 0
    while i < 16:
        if rng.random() < 0.2 and i % 8:
            slots.append((None, 1))
            i += 1
            continue
        deg = int(np.clip(deg + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]), -2, 9))
        length = int(rng.choice([1, 1, 2, 2, 3, 4]))
        length = min(length, 16 - i, 8 - i % 8)  # notes do not cross the half
        slots.append((deg, length))
        slots.extend([(None, 1)] * (length - 1))
        i += length
    return slots


def _drums(
    plan: SongPlan,
    part: str,
    start: float,
    beat: float,
    kit: dict[str, np.ndarray],
    level: float,
    *,
    opens_part: bool,
) -> Iterable[Event]:
    def hit(name: str, gain: float) -> Callable[[], np.ndarray]:
        return lambda: kit[name] * np.float32(gain * level)

    if part == "intro":
        for i in range(8):
            yield start + i * beat / 2, 0.06, hit("hat", 0.12)
        return
    if part == "outro":
        yield start, 0.35, hit("kick", 0.5)
        return
    style = "halftime" if part == "bridge" and plan.drums != "halftime" else plan.drums
    kicks = {"backbeat": (0, 2), "four": (0, 1, 2, 3), "halftime": (0,), "shuffle": (0, 1.5, 2)}
    snares = {"backbeat": (1, 3), "four": (1, 3), "halftime": (2,), "shuffle": (1, 3)}
    for k in kicks[style]:
        yield start + k * beat, 0.35, hit("kick", 0.6)
    if part == "chorus" and style == "backbeat":
        yield start + 2.5 * beat, 0.35, hit("kick", 0.45)
    for s in snares[style]:
        yield start + s * beat, 0.2, hit("snare", 0.35)
    hats: tuple[float, ...]
    if style == "shuffle":
        hats = (0, 2 / 3, 1, 5 / 3, 2, 8 / 3, 3, 11 / 3)
    else:
        hats = tuple(i / 2 for i in range(8))
    for h in hats:
        yield start + h * beat, 0.06, hit("hat", 0.16 if part == "chorus" else 0.1)
    if part == "chorus" and opens_part:  # a crash cymbal announces every chorus
        yield start, 0.35, hit("crash", 0.25)


def render(
    plan: SongPlan, sr: int = DEFAULT_SR, t0: float = 0.0, t1: float | None = None
) -> np.ndarray:
    """Render ``[t0, t1)`` seconds of ``plan`` (the whole song by default) as float32 mono."""
    end = plan.duration if t1 is None else t1
    n0, n1 = round(t0 * sr), round(end * sr)
    out = np.zeros(max(0, n1 - n0), dtype=np.float32)
    for start, length, fn in _events(plan, sr, t0, end):
        s = round(start * sr)
        if s >= n1 or s + int((length + 0.05) * sr) <= n0:
            continue  # entirely outside the window: do not even synthesize it
        wave = fn()
        a, b = max(s, n0), min(s + wave.size, n1, round(plan.duration * sr))
        if b > a:
            out[a - n0 : b - n0] += wave[a - s : b - s]
    return _master(out, n0, sr, plan.duration)


# Peak level of the synthesis (soft clip output).  MP3 coding overshoots transients by up to
# ~1.7x here: at 0.88 the decoded files peaked at 1.15-1.29, so a faithful 16-bit export of a
# sandbox file clipped.  0.4 keeps decoded peaks near 0.6-0.75, with room for a take's section
# level-matched above the original; encode_mp3 guarantees the rest.
LEVEL = 0.4


def _master(x: np.ndarray, n0: int, sr: int, duration: float) -> np.ndarray:
    """Pointwise mastering: soft clip to :data:`LEVEL`, fade in 0.3 s and out 1.5 s
    (absolute time)."""
    t = (np.arange(x.size, dtype=np.float32) + n0) / np.float32(sr)
    fade = np.clip(t / 0.3, 0, 1) * np.clip((duration - t) / 1.5, 0, 1)
    peak = np.float32(LEVEL / math.tanh(1.5))
    return (np.tanh(1.5 * x) * peak * fade).astype(np.float32)


# --- public pure functions ----------------------------------------------------------------


def synthesize_song(duration: float, seed: int = 0, sr: int = DEFAULT_SR) -> np.ndarray:
    """A whole song of ``duration`` seconds: chords, bass, melody, drums in a verse/chorus
    form, all chosen from ``seed``.  Returns float32 mono of ``round(duration * sr)`` samples.
    """
    return render(plan_song(duration, seed), sr)
