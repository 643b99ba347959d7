"""Fault injection: the catalogue of fault names (a public interface), their parameters, and the
registry of active faults a service consults while it serves requests.

The catalogue lives in ``FAULTS``; ``testbed/README.md`` documents each entry and where it shows.
A fault is activated with ``{"fault": NAME, "channel"?, "magnitude"?, "duration_s"?}``; bad names
or parameters raise ``FaultError`` whose message names the valid choices (the admin API answers 400
with it). Faults with ``duration_s`` expire on their own.

This module also holds the small deterministic transforms the faults apply (embedding rotation,
projection, drift, noise at an SNR) and the generators of realistic PII (phone numbers, Chinese
resident ID numbers with a valid check digit, e-mail addresses, Luhn-valid card numbers).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diagnostics.pii import cn_id_check_char, luhn_valid

CHANNELS = ("text", "image", "audio", "router")
MODULES = ("llm", "embedding", "multimodal_router", "audio_processor")


class FaultError(ValueError):
    """An unknown fault name or a bad parameter; the message names the valid choices."""


@dataclass(frozen=True)
class FaultSpec:
    name: str
    summary: str
    channels: tuple[str, ...]  # channels it may target; the first is used when none is given
    default_channel: str | None  # None: all of ``channels`` when no channel is given
    magnitude_meaning: str
    default_magnitude: float
    magnitude_min: float
    magnitude_max: float
    shows_in: str
    integer_magnitude: bool = False


# fmt: off
FAULTS: dict[str, FaultSpec] = {
    spec.name: spec
    for spec in [
        FaultSpec(
            "embedding_dim_mismatch",
            "the image encoder returns vectors of another dimension than the text encoder",
            ("image",), "image",
            "dimension of the returned image embeddings", 512, 1, 4096,
            "image embeddings (dim != text dim); ERROR log 'embedding dimension mismatch'; "
            "router image+text requests fail with 500",
            integer_magnitude=True,
        ),
        FaultSpec(
            "image_text_misalignment",
            "image embeddings are rotated away from the text space: similarity collapses, no error",
            ("image",), "image",
            "share of the rotation (0 = none, 1 = fully rotated)", 1.0, 0.0, 1.0,
            "image-text cosine similarity of golden pairs drops; router similarity scores drop; "
            "no errors and no logs",
        ),
        FaultSpec(
            "audio_timeout",
            "the ffmpeg audio decode stalls and is killed at its timeout",
            ("audio", "router"), None,
            "seconds until the decode timeout fires", 2.0, 0.05, 120.0,
            "504 on audio (and router requests with audio); ERROR log 'ffmpeg subprocess timeout'; "
            "audio latency ~= magnitude",
        ),
        FaultSpec(
            "asr_degraded",
            "noise is mixed into the audio before transcription: transcripts get worse (WER rises)",
            ("audio", "router"), None,
            "signal-to-noise ratio in dB of the added white noise (lower = worse)", -5.0, -30.0, 40.0,
            "transcripts (WER/CER vs golden), lower intent confidence; no errors",
        ),
        FaultSpec(
            "latency_spike",
            "a channel's latency grows by magnitude milliseconds",
            CHANNELS, None,
            "added latency in milliseconds", 1500.0, 1.0, 60000.0,
            "latency histograms of the channel; WARNING 'slow request' logs past the slow threshold",
        ),
        FaultSpec(
            "error_burst",
            "a share of requests fails with HTTP 500",
            CHANNELS, None,
            "share of requests answered 500 (0..1)", 0.5, 0.0, 1.0,
            "5xx counters, error counters; ERROR logs 'HTTP 500 internal server error'",
        ),
        FaultSpec(
            "cuda_oom",
            "model calls fail with CUDA out of memory",
            CHANNELS, None,
            "share of model calls that fail (0..1)", 1.0, 0.0, 1.0,
            "500 responses; ERROR logs 'torch.OutOfMemoryError: CUDA out of memory'; health stays ready",
        ),
        FaultSpec(
            "router_degraded",
            "the multimodal router misroutes a share of requests",
            ("router",), "router",
            "share of router requests sent to the wrong module (0..1)", 0.3, 0.0, 1.0,
            "health: multimodal_router degraded; router responses whose route does not match "
            "their inputs; WARNING logs",
        ),
        FaultSpec(
            "model_not_loaded",
            "a model failed to load (checksum mismatch of its weights file)",
            ("image", "audio", "text"), "image",
            "unused", 0.0, 0.0, 0.0,
            "health: module error + checksum mismatch; model-loaded gauge 0; 503 'model not loaded' "
            "on its routes; ERROR logs 'checksum mismatch'. channel picks the model: image = CLIP "
            "(embedding), audio = Whisper (audio_processor), text = MiniLM (embedding + llm)",
        ),
        FaultSpec(
            "embedding_drift",
            "embedding distributions shift gradually along a fixed direction, growing with time",
            ("text", "image"), None,
            "shift per minute, in units of the embedding norm", 0.2, 0.0, 10.0,
            "embedding outputs (KS / Wasserstein vs baseline grow); no errors and no logs",
        ),
        FaultSpec(
            "pii_in_logs",
            "request log lines leak caller PII (phones, Chinese ID numbers, e-mails, card numbers)",
            CHANNELS, None,
            "share of request log lines that leak (0..1)", 1.0, 0.0, 1.0,
            "log lines (message and 'caller' field)",
        ),
        FaultSpec(
            "clock_skew",
            "the service's clock is off: response and stream timestamps shift",
            CHANNELS, None,
            "clock offset in milliseconds (may be negative)", 2000.0, -3_600_000.0, 3_600_000.0,
            "response 'timestamp' fields and X-Server-Time header, audio segment/word timestamps, "
            "log 'ts' fields",
        ),
    ]
}
# fmt: on

FAULT_NAMES: tuple[str, ...] = tuple(FAULTS)


@dataclass
class ActiveFault:
    name: str
    channels: tuple[str, ...]
    magnitude: float
    started_at: float  # time.time()
    started_mono: float  # time.monotonic()
    expires_mono: float | None
    duration_s: float | None
    id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_mono

    def as_dict(self) -> dict[str, Any]:
        remaining = None if self.expires_mono is None else max(0.0, self.expires_mono - time.monotonic())
        return {
            "fault": self.name,
            "channels": list(self.channels),
            "magnitude": self.magnitude,
            "duration_s": self.duration_s,
            "remaining_s": None if remaining is None else round(remaining, 3),
            "started_at": self.started_at,
        }


def _valid_names_text() -> str:
    return ", ".join(FAULT_NAMES)


def validate_request(body: Any) -> tuple[FaultSpec, tuple[str, ...], float, float | None]:
    """Check a ``POST /admin/faults`` body; return (spec, channels, magnitude, duration_s)."""
    if not isinstance(body, dict):
        raise FaultError(
            f'body must be a JSON object {{"fault": NAME, ...}}; valid faults: {_valid_names_text()}'
        )
    allowed_keys = {"fault", "channel", "magnitude", "duration_s"}
    unknown = sorted(set(body) - allowed_keys)
    if unknown:
        raise FaultError(f"unknown field(s) {unknown}; valid fields: {sorted(allowed_keys)}")
    name = body.get("fault")
    if not isinstance(name, str) or name not in FAULTS:
        raise FaultError(f"unknown fault {name!r}; valid faults: {_valid_names_text()}")
    spec = FAULTS[name]

    channel = body.get("channel")
    if channel is None or channel == "all":
        channels = (spec.default_channel,) if spec.default_channel else spec.channels
    elif isinstance(channel, str) and channel in spec.channels:
        channels = (channel,)
    else:
        raise FaultError(
            f"bad channel {channel!r} for {name}; valid channels: {', '.join(spec.channels)}"
            + ("" if spec.default_channel else " (or omit for all)")
        )

    magnitude_raw = body.get("magnitude")
    if magnitude_raw is None:
        magnitude = spec.default_magnitude
    else:
        if isinstance(magnitude_raw, bool) or not isinstance(magnitude_raw, int | float):
            raise FaultError(f"magnitude for {name} must be a number ({spec.magnitude_meaning})")
        magnitude = float(magnitude_raw)
        if not math.isfinite(magnitude) or not spec.magnitude_min <= magnitude <= spec.magnitude_max:
            raise FaultError(
                f"magnitude {magnitude_raw!r} out of range for {name}: "
                f"{spec.magnitude_min:g}..{spec.magnitude_max:g} ({spec.magnitude_meaning})"
            )
        if spec.integer_magnitude and magnitude != int(magnitude):
            raise FaultError(f"magnitude for {name} must be an integer ({spec.magnitude_meaning})")

    duration_raw = body.get("duration_s")
    duration: float | None
    if duration_raw is None:
        duration = None
    else:
        if isinstance(duration_raw, bool) or not isinstance(duration_raw, int | float):
            raise FaultError("duration_s must be a number of seconds (0 < duration_s <= 86400)")
        duration = float(duration_raw)
        if not math.isfinite(duration) or not 0 < duration <= 86400:
            raise FaultError("duration_s must be a number of seconds (0 < duration_s <= 86400)")
    return spec, channels, magnitude, duration


class FaultRegistry:
    """Thread-safe set of active faults, one per name (setting a fault again replaces it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, ActiveFault] = {}
        self._counter = 0
        self._clock = clock

    def activate(self, body: Any) -> ActiveFault:
        spec, channels, magnitude, duration = validate_request(body)
        now = self._clock()
        with self._lock:
            self._counter += 1
            fault = ActiveFault(
                name=spec.name,
                channels=channels,
                magnitude=magnitude,
                started_at=time.time(),
                started_mono=now,
                expires_mono=None if duration is None else now + duration,
                duration_s=duration,
                id=self._counter,
            )
            self._active[spec.name] = fault
        return fault

    def clear(self, name: str | None = None) -> list[str]:
        """Clear one fault (by name) or all; returns the names cleared. Unknown name: FaultError."""
        if name is not None and name not in FAULTS:
            raise FaultError(f"unknown fault {name!r}; valid faults: {_valid_names_text()}")
        with self._lock:
            if name is None:
                cleared = list(self._active)
                self._active.clear()
            else:
                cleared = [name] if self._active.pop(name, None) else []
        return cleared

    def _prune(self) -> None:
        now = self._clock()
        for key in [
            k for k, f in self._active.items() if f.expires_mono is not None and f.expires_mono <= now
        ]:
            del self._active[key]

    def active(self) -> list[ActiveFault]:
        with self._lock:
            self._prune()
            return sorted(self._active.values(), key=lambda f: f.id)

    def get(self, name: str, channel: str | None = None) -> ActiveFault | None:
        """The active fault ``name`` if it targets ``channel`` (any channel when None)."""
        with self._lock:
            self._prune()
            fault = self._active.get(name)
        if fault is None:
            return None
        if channel is not None and channel not in fault.channels:
            return None
        return fault


# --------------------------------------------------------------------------- transforms

_SEED = 24


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([_SEED, *key])


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def random_orthogonal(dim: int, key: int = 1) -> np.ndarray:
    """A fixed (seeded) random orthogonal matrix of size dim x dim."""
    a = _rng(key, dim).standard_normal((dim, dim))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return q.astype(np.float32)


def misalign(emb: np.ndarray, share: float) -> np.ndarray:
    """Rotate embeddings by a fixed random orthogonal matrix, blended by ``share`` (0..1)."""
    q = random_orthogonal(emb.shape[-1])
    return _normalize((1.0 - share) * emb + share * (emb @ q.T))


def project_dim(emb: np.ndarray, dim: int) -> np.ndarray:
    """Project embeddings to another dimension with a fixed random matrix (another encoder's head)."""
    r = _rng(2, emb.shape[-1], dim).standard_normal((emb.shape[-1], dim)).astype(np.float32)
    return _normalize(emb @ r)


def drift_shift(elapsed_s: float, per_minute: float) -> float:
    """Size of the drift after ``elapsed_s``: per_minute x (1 + minutes elapsed), capped at 5."""
    return float(min(5.0, per_minute * (1.0 + elapsed_s / 60.0)))


def drift(emb: np.ndarray, shift: float, key: int = 3) -> np.ndarray:
    """Shift normalized embeddings by ``shift`` along a fixed random direction, then renormalize."""
    d = np.asarray(_rng(key, emb.shape[-1]).standard_normal(emb.shape[-1]), dtype=np.float32)
    d = d / float(np.linalg.norm(d))
    return _normalize(emb + shift * d)


def add_noise_snr(audio: np.ndarray, snr_db: float, seed: int | None = None) -> np.ndarray:
    """White Gaussian noise mixed into ``audio`` at the given SNR (dB, relative to signal power)."""
    audio = audio.astype(np.float32)
    power = float(np.mean(audio**2)) if audio.size else 0.0
    if power <= 0:
        return audio
    noise_power = power / (10 ** (snr_db / 10.0))
    rng = np.random.default_rng(seed)
    noisy = audio + rng.standard_normal(audio.shape).astype(np.float32) * math.sqrt(noise_power)
    out: np.ndarray = np.clip(noisy, -1.0, 1.0).astype(np.float32)
    return out


# --------------------------------------------------------------------------- PII generators

# Region codes (first 6 digits) of real Chinese administrative divisions.
_CN_REGIONS = ("110105", "310104", "440305", "330106", "510107", "420106", "320102", "500103")


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit to ``prefix`` (the check is the one the PII masker applies; its
    tests pin it to published test card numbers)."""
    for check in "0123456789":
        if luhn_valid(prefix + check):
            return prefix + check
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class PiiSample:
    cn_phone: str
    intl_phone: str
    cn_id: str
    email: str
    card: str

    def as_text(self) -> str:
        return (
            f"phone={self.cn_phone} alt_phone={self.intl_phone} id_card={self.cn_id} "
            f"email={self.email} card={self.card}"
        )


def make_pii(rng: random.Random) -> PiiSample:
    """One caller profile of realistic, syntactically valid (fake) PII."""
    cn_phone = "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
    intl_phone = f"+1-{rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
    year = rng.randint(1960, 2004)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    seq = f"{rng.randint(0, 999):03d}"
    first17 = f"{rng.choice(_CN_REGIONS)}{year:04d}{month:02d}{day:02d}{seq}"
    cn_id = first17 + cn_id_check_char(first17)
    user = rng.choice(["wang.wei", "li.na", "zhang.min", "alice", "bob.smith", "chen.jie"])
    email = (
        f"{user}{rng.randint(1, 999)}@{rng.choice(['example.com', 'mail.example.cn', 'corp.example.org'])}"
    )
    card_prefix = rng.choice(["4", "51", "52", "6222"])
    body = card_prefix + "".join(rng.choice("0123456789") for _ in range(15 - len(card_prefix)))
    card = luhn_complete(body)
    return PiiSample(cn_phone, intl_phone, cn_id, email, card)
