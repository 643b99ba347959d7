"""Phase-2 check ``router_dispatch``: does the multimodal router send each request where it belongs?

A router that dispatches a share of its requests to the wrong module still answers 200 within its
latency: no error, latency or embedding check sees it (the testbed's ``router_degraded`` fault). This
check sends golden router requests of each input kind (text only, image + text; audio only and
audio + text when ``audio_probes`` > 0, Whisper being costly on a CPU) and compares the route each
response reports with the route the runbook declares for its inputs (``thresholds.yaml``
``deep.router_dispatch.routes``; the default is the Dify-style plan: text → llm, an image → embedding,
audio first through the audio processor).

- **misrouted share** over the answered probes, per version: above ``max_misrouted_share`` the version
  ``failed`` (a high finding on ``multimodal_router`` with the routes seen); a single stray route on
  a small probe set is within it;
- a response without a route, or an error, counts as unanswered; no answered probe is
  ``insufficient_evidence``, never a pass.
"""

from __future__ import annotations

import base64
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.checks.registry import CheckSpec, register
from diagnostics.deep_diagnosis.base import DeepContext, VersionOutcome, finding
from diagnostics.deep_diagnosis.service import ServiceError
from diagnostics.incident.results import Finding, Status

CHECK = "router_dispatch"
DEFAULT_ROUTES: dict[str, list[str]] = {
    "text": ["llm"],
    "image+text": ["embedding"],
    "audio": ["audio_processor"],
    "audio+text": ["audio_processor", "llm"],
}


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probes: int = Field(default=24, ge=1, le=500, description="text and image+text requests, alternating")
    audio_probes: int = Field(default=0, ge=0, le=50, description="audio and audio+text requests")
    max_misrouted_share: float = Field(default=0.05, ge=0, lt=1)
    routes: dict[str, list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_ROUTES),
        description="input kind ('text', 'image+text', 'audio', 'audio+text') -> the route it must take",
    )


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sent: int = 0
    answered: int = 0
    misrouted: int = 0
    routes: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="input kind -> route taken ('llm', 'audio_processor>llm') -> count"
    )
    errors: list[str] = Field(default_factory=list)

    @property
    def share(self) -> float | None:
        return self.misrouted / self.answered if self.answered else None


def _payloads(ctx: DeepContext, th: Thresholds) -> list[tuple[str, dict[str, str]]]:
    golden = ctx.golden()
    texts = [t.text for t in golden.texts] or [i.caption for i in golden.images]
    out: list[tuple[str, dict[str, str]]] = []
    for i in range(th.probes):
        if i % 2 and golden.images:
            img = golden.images[(i // 2) % len(golden.images)]
            image = base64.b64encode(img.file.read_bytes()).decode()
            out.append(("image+text", {"text": img.caption, "image_b64": image}))
        else:
            out.append(("text", {"text": texts[(i // 2) % len(texts)]}))
    for i, clip in enumerate((golden.audio * th.audio_probes)[: th.audio_probes]):
        audio = {
            "audio_b64": base64.b64encode(clip.file.read_bytes()).decode(),
            "language": str(clip.language),
        }
        if i % 2:
            out.append(("audio+text", {**audio, "text": "summarise the request"}))
        else:
            out.append(("audio", audio))
    return out


def measure(ctx: DeepContext, version: str, th: Thresholds) -> Measurement:
    m = Measurement()
    seen: dict[str, Counter[str]] = {}
    probes = _payloads(ctx, th)
    with ctx.client(version) as client:
        for n, (kind, payload) in enumerate(probes, 1):
            m.sent += 1
            try:
                call = client.router(payload)
            except ServiceError as exc:
                if exc.kind == "unreachable":
                    raise
                m.errors.append(f"{kind}: {str(exc)[:160]}")
                continue
            route = call.body.get("route")
            if not isinstance(route, list) or not route:
                m.errors.append(f"{kind}: the response names no route")
                continue
            m.answered += 1
            taken = ">".join(str(r) for r in route)
            seen.setdefault(kind, Counter())[taken] += 1
            expected = th.routes.get(kind)
            if expected is not None and [str(r) for r in route] != expected:
                m.misrouted += 1
            if n % 8 == 0 or n == len(probes):
                ctx.progress(f"{version}: router probes", n, len(probes))
    m.routes = {k: dict(c.most_common()) for k, c in seen.items()}
    return m


def judge(
    ctx: DeepContext, version: str, m: Measurement, base: Measurement | None, th: Thresholds
) -> VersionOutcome:
    figures = {**m.model_dump(), "misrouted_share": m.share}
    share = m.share
    if share is None:
        why = "; ".join(m.errors[:3]) or "no probe sent"
        return VersionOutcome(
            version=version,
            status=Status.INSUFFICIENT_EVIDENCE,
            summary=f"no router probe answered with a route ({m.sent} sent): {why}",
            figures=figures,
        )
    wrong = {
        kind: {r: n for r, n in taken.items() if r != ">".join(th.routes.get(kind, [r]))}
        for kind, taken in m.routes.items()
    }
    wrong = {k: v for k, v in wrong.items() if v}
    detail = "; ".join(
        f"{kind} -> {', '.join(f'{r} x{n}' for r, n in taken.items())} (expected {'>'.join(th.routes[kind])})"
        for kind, taken in wrong.items()
    )
    summary = f"{m.misrouted} of {m.answered} router probes misrouted ({share:.0%})"
    if m.errors:
        summary += f"; {len(m.errors)} unanswered"
    findings: list[Finding] = []
    if share > th.max_misrouted_share:
        status = Status.FAILED
        findings.append(
            finding(
                ctx,
                CHECK,
                "router_misroute",
                f"{summary} > {th.max_misrouted_share:.0%}: {detail}",
                version=version,
                title="the multimodal router dispatches requests to the wrong module",
                severity="high",
                component="multimodal_router",
                action="compare this version's router route table and dispatch config with the other "
                "version's; roll the canary back if only it misroutes",
                channel="router",
            )
        )
        summary += f" > {th.max_misrouted_share:.0%}: {detail}"
    else:
        status = Status.OK
        if detail:
            summary += f", within {th.max_misrouted_share:.0%}: {detail}"
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
