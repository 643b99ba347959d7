"""Phase-2 check ``router_dispatch``: does the multimodal router send each request where it belongs?

A router that dispatches a share of its requests to the wrong module still answers 200 within its
latency: no error, latency or embedding check sees it (the testbed's ``router_degraded`` fault). This
check sends golden router requests of each input kind (text only, image + text; audio only and
audio + text when ``audio_probes`` > 0, Whisper being costly on a CPU) and compares the route each
response reports with the route the runbook declares for its inputs (``thresholds.yaml``
``deep.router_dispatch.routes``; the default is the Dify-style plan: text → llm, an image → embedding,
audio first through the audio processor).

The verdict is on the **misrouted share**'s exact bounds (:mod:`diagnostics.stats.bounds`), never on
the share alone: 0 misroutes in 24 probes still allow 11.7 % (95 %), over the 5 % tolerance. Probes
go in looks of ``probes`` (up to ``max_probes``); after each look:

- upper bound under ``max_misrouted_share``: ``ok``;
- lower bound over it: ``failed`` (a high finding on ``multimodal_router`` with the routes seen);
- else the next look; still undecided after ``max_probes``: ``insufficient_evidence``.

Each look tests at ``(1 - confidence) / looks``, so stopping early keeps the stated confidence. The
defaults (40 a look, 120 at most, 95 %) read 0 misroutes in 80 probes as ok (bound 4.96 %) and a
30 % misrouting router as failed in the first look; about 35 ms a probe on the 2-core testbed.
A response without a route, or an error, counts as unanswered: no answered probe is
``insufficient_evidence``, never a pass.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from diagnostics.checks.registry import CheckSpec, register
from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome, finding
from diagnostics.deep_diagnosis.service import ServiceError
from diagnostics.incident.results import Finding, Status
from diagnostics.stats.bounds import ShareBound, ShareVerdict, judge_share, probes_needed

CHECK = "router_dispatch"
DEFAULT_ROUTES: dict[str, list[str]] = {
    "text": ["llm"],
    "image+text": ["embedding"],
    "audio": ["audio_processor"],
    "audio+text": ["audio_processor", "llm"],
}


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probes: int = Field(default=40, ge=1, le=500, description="text and image+text requests per look")
    max_probes: int = Field(default=120, ge=1, le=2000, description="still undecided here: insufficient")
    audio_probes: int = Field(default=0, ge=0, le=50, description="audio and audio+text requests (1st look)")
    max_misrouted_share: float = Field(default=0.05, gt=0, lt=1, description="the tolerance")
    confidence: float = Field(default=0.95, ge=0.5, lt=1, description="of the bounds, over every look")
    routes: dict[str, list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_ROUTES),
        description="input kind ('text', 'image+text', 'audio', 'audio+text') -> the route it must take",
    )

    @property
    def looks(self) -> int:
        return math.ceil(self.max_probes / self.probes)

    def schedule(self) -> list[int]:
        """The text and image+text probes sent by the end of each look."""
        return [min(self.probes * i, self.max_probes) for i in range(1, self.looks + 1)]

    def verdict(self, misrouted: int, answered: int) -> ShareBound:
        return judge_share(misrouted, answered, self.max_misrouted_share, self.confidence, self.looks)

    @model_validator(mode="after")
    def _can_read_ok(self) -> Thresholds:
        # a probe budget that can never bound the share under the tolerance could only ever say
        # "insufficient": a misconfiguration, named here rather than found in an incident
        if self.max_probes < self.probes:
            raise ValueError(f"max_probes {self.max_probes} < probes {self.probes}")
        needed = probes_needed(self.max_misrouted_share, (1 - self.confidence) / self.looks)
        if needed > self.max_probes:
            raise ValueError(
                f"max_probes {self.max_probes} cannot show a misrouted share under "
                f"max_misrouted_share {self.max_misrouted_share:g} at confidence {self.confidence:g}: "
                f"0 misroutes need {needed} probes over {self.looks} looks of {self.probes}; "
                "raise max_probes"
            )
        return self


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sent: int = 0
    answered: int = 0
    misrouted: int = 0
    looks: list[int] = Field(default_factory=list, description="answered probes at the end of each look")
    routes: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="input kind -> route taken ('llm', 'audio_processor>llm') -> count"
    )
    errors: list[str] = Field(default_factory=list)

    @property
    def share(self) -> float | None:
        return self.misrouted / self.answered if self.answered else None


def _payload(ctx: DeepContext, i: int) -> tuple[str, dict[str, str]]:
    """The ``i``-th text or image+text probe (alternating, cycling through the golden set)."""
    golden = ctx.golden()
    texts = [t.text for t in golden.texts] or [img.caption for img in golden.images]
    if i % 2 and golden.images:
        img = golden.images[(i // 2) % len(golden.images)]
        image = base64.b64encode(img.file.read_bytes()).decode()
        return "image+text", {"text": img.caption, "image_b64": image}
    return "text", {"text": texts[(i // 2) % len(texts)]}


def _audio_payloads(ctx: DeepContext, th: Thresholds) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    for i, clip in enumerate((ctx.golden().audio * th.audio_probes)[: th.audio_probes]):
        audio = {
            "audio_b64": base64.b64encode(clip.file.read_bytes()).decode(),
            "language": str(clip.language),
        }
        out.append(("audio+text", {**audio, "text": "summarise the request"}) if i % 2 else ("audio", audio))
    return out


def _probe(client: Any, kind: str, payload: dict[str, str], th: Thresholds, m: Measurement) -> str | None:
    """Send one probe; the route it took ('llm', 'audio_processor>llm'), or None when unanswered."""
    m.sent += 1
    try:
        call = client.router(payload)
    except ServiceError as exc:
        if exc.kind == "unreachable":
            raise
        m.errors.append(f"{kind}: {str(exc)[:160]}")
        return None
    route = call.body.get("route")
    if not isinstance(route, list) or not route:
        m.errors.append(f"{kind}: the response names no route")
        return None
    m.answered += 1
    expected = th.routes.get(kind)
    if expected is not None and [str(r) for r in route] != expected:
        m.misrouted += 1
    return ">".join(str(r) for r in route)


def measure(ctx: DeepContext, version: str, th: Thresholds) -> Measurement:
    """Probe in looks until the misrouted share's bounds decide, or ``max_probes`` are sent."""
    m = Measurement()
    seen: dict[str, Counter[str]] = {}
    done = 0
    with ctx.client(version) as client:
        for look, until in enumerate(th.schedule(), 1):
            batch = [_payload(ctx, i) for i in range(done, until)]
            if look == 1:
                batch += _audio_payloads(ctx, th)
            done = until
            for kind, payload in batch:
                taken = _probe(client, kind, payload, th, m)
                if taken is not None:
                    seen.setdefault(kind, Counter())[taken] += 1
            m.looks.append(m.answered)
            ctx.progress(f"{version}: router probes", done, th.max_probes)
            if m.answered and th.verdict(m.misrouted, m.answered).verdict is not ShareVerdict.UNDECIDED:
                break
    m.routes = {k: dict(c.most_common()) for k, c in seen.items()}
    return m


def _wrong_routes(m: Measurement, th: Thresholds) -> str:
    wrong = {
        kind: {r: n for r, n in taken.items() if r != ">".join(th.routes.get(kind, [r]))}
        for kind, taken in m.routes.items()
    }
    return "; ".join(
        f"{kind} -> {', '.join(f'{r} x{n}' for r, n in taken.items())} (expected {'>'.join(th.routes[kind])})"
        for kind, taken in wrong.items()
        if taken
    )


def judge(
    ctx: DeepContext, version: str, m: Measurement, base: Measurement | None, th: Thresholds
) -> VersionOutcome:
    bound = th.verdict(m.misrouted, m.answered)
    figures = {**m.model_dump(), "misrouted_share": m.share, "bound": bound.model_dump(mode="json")}
    if m.share is None:
        why = "; ".join(m.errors[:3]) or "no probe sent"
        return VersionOutcome(
            version=version,
            status=Status.INSUFFICIENT_EVIDENCE,
            summary=f"no router probe answered with a route ({m.sent} sent): {why}",
            figures=figures,
        )
    detail = _wrong_routes(m, th)
    summary = f"{m.misrouted} of {m.answered} router probes misrouted ({m.share:.1%}; {bound.reading()})"
    if m.errors:
        summary += f"; {len(m.errors)} unanswered"
    findings: list[Finding] = []
    if bound.verdict is ShareVerdict.OVER:
        status = Status.FAILED
        findings.append(
            finding(
                ctx,
                CHECK,
                "router_misroute",
                f"{summary}: {detail}",
                version=version,
                title="the multimodal router dispatches requests to the wrong module",
                severity="high",
                component="multimodal_router",
                action="compare this version's router route table and dispatch config with the other "
                "version's; roll the canary back if only it misroutes",
                channel="router",
            )
        )
    else:
        # undecided after max_probes: too few answered probes to call it either way
        status = Status.OK if bound.verdict is ShareVerdict.UNDER else Status.INSUFFICIENT_EVIDENCE
    if detail:
        summary += f": {detail}"
    return VersionOutcome(version=version, status=status, summary=summary, figures=figures, findings=findings)


SPEC = register(
    CheckSpec(
        name=CHECK,
        modality="router",
        inputs=("service", "golden.images", "golden.texts"),
        thresholds=Thresholds,
        measurement=Measurement,
        measure=measure,
        judge=judge,
        gpu=False,  # HTTP probes only
        doc=__doc__ or "",
    )
)
