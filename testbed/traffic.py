"""Steady golden-set traffic through the gateway.

``python -m testbed traffic --gateway URL --rate R --duration S [--mix text=…,image=…,audio=…,router=…]``

Requests are drawn from the golden set (``testbed.golden``) at a fixed rate (one every 1/R s) with
the given channel mix; each carries a user id (``X-User-Id``, from a pool), a tenant (``X-Tenant``)
and a session (``X-Session-Id``, a few per user), so the gateway's strategies and affinity see
varied callers. Audio is rare by default: each clip costs ~1.5 s of CPU in the service. The rate is
capped (``MAX_RATE``), the duration too (``MAX_DURATION_S``), and at most ``max_inflight`` requests
are outstanding: when the services fall behind, ticks are skipped (counted as ``skipped``) instead of
queueing without bound. A progress line is printed every ``progress_every`` seconds and a JSON
summary at the end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

CHANNELS = ("text", "image", "audio", "router")
DEFAULT_MIX = {"text": 0.5, "image": 0.3, "audio": 0.05, "router": 0.15}
MAX_RATE = 50.0
MAX_DURATION_S = 24 * 3600.0
TENANTS = (("default", 0.5), ("acme", 0.25), ("globex", 0.15), ("initech", 0.1))


def parse_mix(text: str | None) -> dict[str, float]:
    """``"text=0.5,image=0.3,audio=0.05,router=0.15"`` -> normalised weights (missing channels 0)."""
    if not text:
        return dict(DEFAULT_MIX)
    mix = dict.fromkeys(CHANNELS, 0.0)
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in CHANNELS:
            raise ValueError(
                f"bad mix entry {part!r}: use channel=weight with channels {', '.join(CHANNELS)}"
            )
        try:
            w = float(value)
        except ValueError as exc:
            raise ValueError(f"bad weight in {part!r}") from exc
        if w < 0:
            raise ValueError(f"negative weight in {part!r}")
        mix[name] = w
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("mix weights sum to 0")
    return {k: v / total for k, v in mix.items()}


@dataclass
class GoldenPool:
    """The golden items as ready-to-send payload pieces."""

    texts: list[tuple[str, str]]  # (text, language)
    captions: list[str]
    images_b64: list[str]
    audio: list[tuple[str, str]]  # (base64 wav, language)

    @classmethod
    def load(cls) -> GoldenPool:
        from testbed.golden import load_golden

        g = load_golden()
        return cls(
            texts=[(t.text, t.language) for t in g.texts],
            captions=[im.caption for im in g.images],
            images_b64=[base64.b64encode(im.file.read_bytes()).decode() for im in g.images],
            audio=[(base64.b64encode(a.file.read_bytes()).decode(), a.language) for a in g.audio],
        )


def build_request(channel: str, pool: GoldenPool, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of one request of ``channel`` from the golden pool."""
    if channel == "text":
        kind = rng.random()
        if kind < 0.5:
            return "/v1/chat", {"message": rng.choice(pool.texts)[0]}
        if kind < 0.75:
            return "/v1/embeddings/text", {"texts": rng.sample(pool.captions, k=min(4, len(pool.captions)))}
        return "/v1/embeddings/rag", {"texts": [rng.choice(pool.texts)[0]]}
    if channel == "image":
        k = rng.choice([1, 1, 2, 4])
        return "/v1/embeddings/image", {"images": rng.sample(pool.images_b64, k=min(k, len(pool.images_b64)))}
    if channel == "audio":
        audio, lang = rng.choice(pool.audio)
        return "/v1/audio/transcriptions", {"audio_b64": audio, "language": lang}
    kind = rng.random()
    i = rng.randrange(len(pool.images_b64))
    if kind < 0.4:
        return "/v1/router", {"text": rng.choice(pool.texts)[0]}
    if kind < 0.85 or not pool.audio:
        return "/v1/router", {"text": pool.captions[i], "image_b64": pool.images_b64[i]}
    audio, lang = rng.choice(pool.audio)
    if kind < 0.93:
        return "/v1/router", {"audio_b64": audio, "language": lang}
    return "/v1/router", {"audio_b64": audio, "language": lang, "image_b64": pool.images_b64[i]}


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


@dataclass
class Stats:
    sent: int = 0
    done: int = 0
    skipped: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    errors_by_channel: Counter[str] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "done": self.done,
            "skipped": self.skipped,
            "codes": dict(self.codes),
            "by_channel": dict(self.by_channel),
            "errors_by_channel": dict(self.errors_by_channel),
            "served_by": dict(self.served_by),
            "latency_ms": {
                ch: {"p50": _quantile(v, 0.5), "p95": _quantile(v, 0.95), "n": len(v)}
                for ch, v in sorted(self.latency.items())
            },
        }

    def line(self, elapsed: float) -> str:
        errs = sum(n for c, n in self.codes.items() if not c.startswith("2"))
        served = " ".join(f"{k}={v}" for k, v in sorted(self.served_by.items()))
        chans = " ".join(f"{k}={v}" for k, v in sorted(self.by_channel.items()))
        return (
            f"[traffic] t={elapsed:.0f}s sent={self.sent} done={self.done} errors={errs} "
            f"skipped={self.skipped} channels[{chans}] served_by[{served}]"
        )


async def run_traffic(
    gateway: str,
    rate: float = 2.0,
    duration_s: float = 60.0,
    mix: dict[str, float] | None = None,
    *,
    seed: int | None = None,
    users: int = 200,
    max_inflight: int = 8,
    progress_every: float = 10.0,
    timeout_s: float = 60.0,
    pool: GoldenPool | None = None,
    out: Callable[[str], None] = print,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Send golden requests to ``gateway`` at ``rate`` req/s for ``duration_s``; return a summary."""
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be in (0, {MAX_RATE:g}] req/s")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration must be in (0, {MAX_DURATION_S:g}] s")
    mix = mix or dict(DEFAULT_MIX)
    pool = pool or GoldenPool.load()
    rng = random.Random(seed)  # noqa: S311 - traffic shape, not security
    stats = Stats()
    sem = asyncio.Semaphore(max_inflight)
    channels = [c for c in CHANNELS if mix.get(c, 0) > 0]
    weights = [mix[c] for c in channels]
    tenants = [t for t, _ in TENANTS]
    tenant_w = [w for _, w in TENANTS]
    tasks: set[asyncio.Task[None]] = set()

    async def one(
        client: httpx.AsyncClient, channel: str, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        t0 = time.perf_counter()
        try:
            r = await client.post(path, json=body, headers=headers)
            code = str(r.status_code)
            stats.served_by[r.headers.get("x-served-by", "?")] += 1
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        finally:
            sem.release()
        stats.done += 1
        stats.codes[code] += 1
        if not code.startswith("2"):
            stats.errors_by_channel[channel] += 1
        stats.latency[channel].append((time.perf_counter() - t0) * 1000)

    start = time.monotonic()
    next_progress = start + progress_every
    async with httpx.AsyncClient(
        base_url=gateway.rstrip("/"), timeout=timeout_s, transport=transport
    ) as client:
        i = 0
        while True:
            now = time.monotonic()
            if now - start >= duration_s:
                break
            target = start + i / rate
            if target > now:
                await asyncio.sleep(target - now)
                if time.monotonic() - start >= duration_s:
                    break
            i += 1
            if progress_every > 0 and time.monotonic() >= next_progress:
                out(stats.line(time.monotonic() - start))
                next_progress += progress_every
            if sem.locked():
                stats.skipped += 1
                continue
            await sem.acquire()
            channel = rng.choices(channels, weights)[0]
            path, body = build_request(channel, pool, rng)
            user = rng.randrange(users)
            headers = {
                "X-User-Id": f"user-{user:04d}",
                "X-Tenant": rng.choices(tenants, tenant_w)[0],
                "X-Session-Id": f"sess-{user:04d}-{rng.randrange(3)}",
            }
            stats.sent += 1
            stats.by_channel[channel] += 1
            task = asyncio.create_task(one(client, channel, path, body, headers))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    summary = stats.summary()
    summary["elapsed_s"] = round(time.monotonic() - start, 3)
    out(stats.line(time.monotonic() - start))
    return summary


def wait_ready(gateway: str, timeout_s: float, poll_s: float = 1.0) -> bool:
    """Wait until the gateway and every upstream report ``ready`` (models loaded): traffic sent
    earlier only measures start-up. Returns False on timeout (the caller sends anyway)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            body = httpx.get(f"{gateway.rstrip('/')}/health", timeout=5).json()
            ups = body.get("upstreams", {})
            if (
                body.get("status") == "ready"
                and ups
                and all(u.get("status") == "ready" for u in ups.values())
            ):
                return True
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def main(args: Any) -> int:
    try:
        mix = parse_mix(args.mix)
        if getattr(args, "wait_ready", 0) > 0:
            ready = wait_ready(args.gateway, args.wait_ready)
            state = "ready" if ready else "not ready after the wait; sending anyway"
            print(f"[traffic] gateway {args.gateway}: {state}", flush=True)
        summary = asyncio.run(
            run_traffic(
                args.gateway,
                args.rate,
                args.duration,
                mix,
                seed=args.seed,
                users=args.users,
                max_inflight=args.max_inflight,
                progress_every=args.progress_every,
            )
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"traffic: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
