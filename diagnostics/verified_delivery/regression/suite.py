"""The golden multimodal regression suite: text, image, audio and router cases against one version.

Cases come from the target's golden set (``runbooks/regression.yaml`` ``suite:`` says how many of
each kind): chat replies (matched question and retrieval score), CLIP text and image embeddings
(cosine to the baseline vector), transcriptions (WER/CER), router requests (route, similarity,
transcript). Each case is compared with the **same case** in the stored healthy baseline within the
tolerances of ``regression.yaml``: pass/fail per case and per channel. A case whose request fails
(5xx, timeout) fails; a version that cannot be reached at all is ``insufficient_evidence``, and so
is one still loading its models when ``ready_wait_s`` runs out (a version starting up is not a
regression: the scheduled run at a stack's start found Whisper loading and opened an incident).
Latency over ``latency_ratio`` × baseline + slack degrades a channel, it does not fail it (a shared
CPU is noisy). Every run is appended to a history (``<artifacts>/regression/history.jsonl``).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from diagnostics.deep_diagnosis.service import Call, ServiceClient, ServiceError
from diagnostics.golden_set import GoldenSet, error_rate
from diagnostics.incident.results import CheckResult, Status
from diagnostics.runbooks import Runbooks
from diagnostics.runbooks.regression import RegressionFile, Tolerances
from diagnostics.runbooks.schemas import Target

log = logging.getLogger("triage24.regression")

CHECK = "regression_suite"
Kind = Literal["chat", "text_embedding", "image_embedding", "transcription", "router"]


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    channel: str
    kind: Kind
    text: str | None = None
    image: str | None = None  # path of a golden image
    audio: str | None = None  # path of a golden clip
    language: str | None = None
    expected_text: str | None = None


class Observation(BaseModel):
    """What one case returned (the baseline stores these for a healthy version)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    ok: bool
    latency_ms: float | None = None
    error: str | None = None
    matched_question: str | None = None
    score: float | None = None
    vector: list[float] | None = None
    error_rate: float | None = None
    transcript: str | None = None
    route: list[str] | None = None
    similarity: float | None = None


class CaseResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case: str
    channel: str
    version: str
    status: Status
    metric: str
    value: float | str | None = None
    baseline: float | str | None = None
    tolerance: float | None = None
    detail: str = ""


class RegressionResult(CheckResult):
    check: str = CHECK
    target: str
    version: str
    trigger: str = Field(description="the incident id, 'schedule' or 'manual'")
    cases: list[CaseResult] = Field(default_factory=list)
    channels: dict[str, Status] = Field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    seconds: float = 0.0

    def brief(self) -> dict[str, Any]:
        failing = [c.case for c in self.cases if c.status is Status.FAILED]
        return {
            "check": self.check,
            "version": self.version,
            "status": self.status.value,
            "summary": self.summary,
            "channels": {k: v.value for k, v in self.channels.items()},
            "failing": failing[:20],
        }


def build_cases(golden: GoldenSet, cfg: RegressionFile) -> list[Case]:
    """The suite's cases, in a stable order (ids are the baseline's keys)."""
    s = cfg.suite
    cases: list[Case] = []
    cases += [
        Case(id=f"chat:{t.id}", channel="text", kind="chat", text=t.text) for t in golden.texts[: s.chat]
    ]
    cases += [
        Case(id=f"text_embedding:{i.id}", channel="text", kind="text_embedding", text=i.caption)
        for i in golden.images[: s.text_embeddings]
    ]
    cases += [
        Case(id=f"image_embedding:{i.id}", channel="image", kind="image_embedding", image=str(i.file))
        for i in golden.images[: s.image_embeddings]
    ]
    cases += [
        Case(
            id=f"transcription:{a.id}",
            channel="audio",
            kind="transcription",
            audio=str(a.file),
            language=a.language,
            expected_text=a.text,
        )
        for a in golden.audio[: s.transcriptions]
    ]
    cases += [
        Case(id=f"router_text:{t.id}", channel="router", kind="router", text=t.text)
        for t in golden.texts[: s.router_text]
    ]
    cases += [
        Case(
            id=f"router_image_text:{i.id}", channel="router", kind="router", text=i.caption, image=str(i.file)
        )
        for i in golden.images[: s.router_image_text]
    ]
    cases += [
        Case(
            id=f"router_audio:{a.id}",
            channel="router",
            kind="router",
            audio=str(a.file),
            language=a.language,
            expected_text=a.text,
        )
        for a in golden.audio[: s.router_audio]
    ]
    return cases


def _b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def observe(client: ServiceClient, case: Case) -> Observation:
    """Send one case; a failed request is an observation (``ok: false``) — only an unreachable
    service raises (ServiceError of kind ``unreachable``)."""
    try:
        call: Call
        if case.kind == "chat":
            call = client.chat(case.text or "")
            b = call.body
            return Observation(
                id=case.id,
                ok=True,
                latency_ms=call.latency_ms,
                matched_question=b.get("matched_question"),
                score=float(b.get("score") or 0.0),
            )
        if case.kind in ("text_embedding", "image_embedding"):
            emb = (
                client.embed_texts([case.text or ""])
                if case.kind == "text_embedding"
                else client.embed_images([Path(case.image or "").read_bytes()])
            )
            latency = sum(c.latency_ms for c in emb.calls)
            return Observation(
                id=case.id, ok=True, latency_ms=latency, vector=[round(float(x), 6) for x in emb.vectors[0]]
            )
        if case.kind == "transcription":
            call = client.transcribe(Path(case.audio or ""), case.language)
            text = str(call.body["text"]).strip()
            wer = error_rate(case.expected_text or "", text, case.language or "en")
            return Observation(
                id=case.id, ok=True, latency_ms=call.latency_ms, transcript=text, error_rate=round(wer, 4)
            )
        payload: dict[str, Any] = {}
        if case.text:
            payload["text"] = case.text
        if case.image:
            payload["image_b64"] = _b64(case.image)
        if case.audio:
            payload["audio_b64"] = _b64(case.audio)
            payload["language"] = case.language
        call = client.router(payload)
        results = call.body.get("results") or {}
        obs = Observation(
            id=case.id, ok=True, latency_ms=call.latency_ms, route=list(call.body.get("route") or [])
        )
        if isinstance(results.get("similarity"), int | float):
            obs.similarity = float(results["similarity"])
        if isinstance(results.get("transcript"), str) and case.expected_text:
            obs.transcript = results["transcript"]
            obs.error_rate = round(error_rate(case.expected_text, obs.transcript, case.language or "en"), 4)
        return obs
    except ServiceError as exc:
        if exc.kind == "unreachable":
            raise
        return Observation(id=case.id, ok=False, error=str(exc)[:300])


def _cos(a: list[float], b: list[float]) -> float | None:
    if len(a) != len(b):
        return None
    va, vb = np.asarray(a), np.asarray(b)
    denom = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb / denom) if denom else None


class _Rows:
    """Builds the result rows of one case on one version."""

    def __init__(self, case: Case, version: str) -> None:
        self.case = case
        self.version = version

    def __call__(
        self,
        status: Status,
        metric: str,
        value: Any = None,
        baseline: Any = None,
        tolerance: float | None = None,
        detail: str = "",
    ) -> CaseResult:
        return CaseResult(
            case=self.case.id,
            channel=self.case.channel,
            version=self.version,
            status=status,
            metric=metric,
            value=value,
            baseline=baseline,
            tolerance=tolerance,
            detail=detail,
        )


def _verdict(ok: bool) -> Status:
    return Status.OK if ok else Status.FAILED


def _judge_chat(row: _Rows, obs: Observation, base: Observation, tol: Tolerances) -> CaseResult:
    """Text: the same question matched, with a retrieval score within tolerance."""
    same = obs.matched_question == base.matched_question
    drift = abs((obs.score or 0) - (base.score or 0))
    return row(
        _verdict(same and drift <= tol.chat_score),
        "chat_score",
        round(obs.score or 0, 4),
        round(base.score or 0, 4),
        tol.chat_score,
        "" if same else f"matched {obs.matched_question!r}, baseline {base.matched_question!r}",
    )


def _judge_embedding(row: _Rows, obs: Observation, base: Observation, tol: Tolerances) -> CaseResult:
    """Text or image embedding: same dimension, cosine to the baseline vector within tolerance."""
    cos = _cos(obs.vector or [], base.vector or [])
    if cos is None:
        return row(
            Status.FAILED,
            "dimension",
            len(obs.vector or []),
            len(base.vector or []),
            detail="embedding dimension changed",
        )
    return row(
        _verdict(cos >= 1 - tol.embedding_cosine),
        "cosine_to_baseline",
        round(cos, 4),
        1.0,
        tol.embedding_cosine,
    )


def _judge_wer(row: _Rows, obs: Observation, base_rate: float | None, tol: Tolerances) -> CaseResult:
    """Audio: WER/CER no more than the baseline's plus the allowed increase."""
    return row(
        _verdict((obs.error_rate or 0) <= (base_rate or 0) + tol.wer_increase),
        "wer",
        obs.error_rate,
        base_rate,
        tol.wer_increase,
        obs.transcript or "",
    )


def _judge_router(row: _Rows, obs: Observation, base: Observation, tol: Tolerances) -> CaseResult:
    """Router: the same route, then what the baseline measured on it (similarity or WER)."""
    if obs.route != base.route:
        return row(
            Status.FAILED,
            "route",
            ">".join(obs.route or []),
            ">".join(base.route or []),
            detail="router dispatched elsewhere",
        )
    if base.similarity is not None:
        sim = obs.similarity
        ok = sim is not None and abs(sim - base.similarity) <= tol.similarity
        return row(_verdict(ok), "similarity", sim, round(base.similarity, 4), tol.similarity)
    if base.error_rate is not None:
        return _judge_wer(row, obs, base.error_rate, tol)
    return row(Status.OK, "route", ">".join(obs.route or []), ">".join(base.route or []))


def _judge_latency(row: _Rows, obs: Observation, base: Observation, tol: Tolerances) -> CaseResult | None:
    """Slower than the baseline's bound degrades, never fails (a shared CPU is noisy)."""
    if obs.latency_ms is None or base.latency_ms is None:
        return None
    bound = base.latency_ms * tol.latency_ratio + tol.latency_slack_ms
    slow = obs.latency_ms > bound
    return row(
        Status.DEGRADED if slow else Status.OK,
        "latency_ms",
        round(obs.latency_ms, 1),
        round(base.latency_ms, 1),
        round(bound, 1),
        f"over {bound:.0f} ms" if slow else "",
    )


def judge_case(
    case: Case, version: str, obs: Observation, base: Observation | None, cfg: RegressionFile
) -> list[CaseResult]:
    """The case's verdict(s): its function against the baseline, then its latency."""
    tol = cfg.tolerances
    row = _Rows(case, version)
    if not obs.ok:
        return [row(Status.FAILED, "request", "error", "ok", detail=obs.error or "request failed")]
    if base is None or not base.ok:
        return [row(Status.INSUFFICIENT_EVIDENCE, "baseline", detail="no healthy baseline for this case")]
    if case.kind == "chat":
        out = [_judge_chat(row, obs, base, tol)]
    elif case.kind in ("text_embedding", "image_embedding"):
        out = [_judge_embedding(row, obs, base, tol)]
    elif case.kind == "transcription":
        out = [_judge_wer(row, obs, base.error_rate, tol)]
    else:
        out = [_judge_router(row, obs, base, tol)]
    latency = _judge_latency(row, obs, base, tol)
    return out if latency is None else [*out, latency]


def baseline_path(books: Runbooks, target: Target) -> Path:
    from diagnostics.deep_diagnosis.base import baseline_dir

    return baseline_dir(books, target) / "regression.json"


def load_baseline(books: Runbooks, target: Target) -> tuple[dict[str, Observation], dict[str, Any] | None]:
    path = baseline_path(books, target)
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cases = {k: Observation.model_validate(v) for k, v in data["cases"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("regression baseline %s unusable: %s", path, str(exc)[:200])
        return {}, {"path": str(path), "error": str(exc)[:200]}
    return cases, {"path": str(path), "version": data.get("version"), "recorded_at": data.get("recorded_at")}


def observe_all(
    target: Target, version: str, cases: list[Case], progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Observation]:
    out: dict[str, Observation] = {}
    with ServiceClient(target, version) as client:
        for i, case in enumerate(cases, 1):
            out[case.id] = observe(client, case)
            if progress is not None:
                progress(f"{version}: regression cases", i, len(cases))
    return out


def record_baseline(books: Runbooks, target: Target, golden: GoldenSet, version: str = "stable") -> Path:
    """Store a healthy version's observations as the baseline (explicit: a person runs this)."""
    from diagnostics.incident.store import write_json

    cases = build_cases(golden, books.regression)
    obs = observe_all(target, version, cases)
    bad = [k for k, o in obs.items() if not o.ok]
    if bad:
        raise ValueError(
            f"{version} is not healthy: {len(bad)} cases failed ({', '.join(bad[:5])}); baseline not recorded"
        )
    return write_json(
        baseline_path(books, target),
        {
            "target": target.name,
            "version": version,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cases": {k: o.model_dump(mode="json", exclude_none=True) for k, o in obs.items()},
        },
    )


def wait_for_models(
    target: Target,
    version: str,
    timeout_s: float,
    *,
    poll_s: float = 2.0,
    client: httpx.Client | None = None,
) -> list[str]:
    """Wait, at most ``timeout_s``, while ``version``'s health reports models still ``loading``; return
    the ones still loading then (empty: go ahead). A health endpoint that does not answer, or reports
    no models, is not waited for: the suite's own requests find out what is wrong."""
    from diagnostics.golden_window.health import fetch_health

    if version not in target.versions:
        raise ValueError(f"target {target.name} has no version {version!r} (runbooks/targets.yaml)")
    endpoint = target.versions[version]
    deadline = time.monotonic() + timeout_s
    http = client or httpx.Client(timeout=5.0)
    try:
        while True:
            ep = fetch_health(version, endpoint, http)
            loading = [str(m.get("name") or m.get("key")) for m in ep.models if m.get("status") == "loading"]
            left = deadline - time.monotonic()
            if not loading or left <= 0:
                return loading
            log.info("%s: waiting for %s to load (%.0f s left)", version, ", ".join(loading), left)
            time.sleep(min(poll_s, left))
    finally:
        if client is None:
            http.close()


def run_suite(
    books: Runbooks,
    target: Target,
    golden: GoldenSet,
    version: str,
    *,
    trigger: str,
    history: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    ready_wait_s: float = 0.0,
) -> RegressionResult:
    """Run the suite on ``version``; pass/fail per case and per channel; append to ``history``.
    ``ready_wait_s`` > 0: first wait that long for models still loading (see ``wait_for_models``)."""
    started = time.perf_counter()
    cfg = books.regression
    cases = build_cases(golden, cfg)
    baseline, meta = load_baseline(books, target)

    def not_judged(summary: str) -> RegressionResult:
        return RegressionResult(
            status=Status.INSUFFICIENT_EVIDENCE,
            summary=summary,
            target=target.name,
            version=version,
            trigger=trigger,
            baseline=meta,
            seconds=round(time.perf_counter() - started, 3),
        )

    loading = wait_for_models(target, version, ready_wait_s) if ready_wait_s > 0 else []
    if loading:
        result = not_judged(
            f"{version}: still loading {', '.join(loading)} after {ready_wait_s:g} s; the suite did not "
            "run (a version starting up is not a regression; the next run judges it)"
        )
        if history is not None:
            append_history(history, result)
        return result
    try:
        observed = observe_all(target, version, cases, progress)
    except ServiceError as exc:
        return not_judged(f"{version} unreachable: {exc}")
    rows = [r for c in cases for r in judge_case(c, version, observed[c.id], baseline.get(c.id), cfg)]
    channels: dict[str, Status] = {}
    for channel in dict.fromkeys(c.channel for c in cases):
        mine = [r for r in rows if r.channel == channel]
        failing = sum(1 for r in mine if r.status is Status.FAILED)
        if failing > cfg.max_failures.get(channel, 0):
            channels[channel] = Status.FAILED
        elif any(r.status is Status.DEGRADED for r in mine):
            channels[channel] = Status.DEGRADED
        elif mine and all(r.status is Status.INSUFFICIENT_EVIDENCE for r in mine):
            channels[channel] = Status.INSUFFICIENT_EVIDENCE
        else:
            channels[channel] = Status.OK
    from diagnostics.deep_diagnosis.base import worst

    status = worst(list(channels.values())) if channels else Status.INSUFFICIENT_EVIDENCE
    failed = [r for r in rows if r.status is Status.FAILED]
    summary = f"{version}: {len(cases)} cases, {len(failed)} failing; " + ", ".join(
        f"{c} {s.value}" for c, s in channels.items()
    )
    if failed:
        summary += "; e.g. " + "; ".join(
            f"{r.case} {r.metric} {r.value} (baseline {r.baseline})" for r in failed[:3]
        )
    if meta is None:
        summary += " (no stored baseline: record one with `triage24 regression record`)"
    result = RegressionResult(
        status=status,
        summary=summary,
        target=target.name,
        version=version,
        trigger=trigger,
        cases=rows,
        channels=channels,
        baseline=meta,
        seconds=round(time.perf_counter() - started, 3),
    )
    if history is not None:
        append_history(history, result)
    return result


def append_history(path: Path, result: RegressionResult) -> None:
    """One line per run (append-only): when, which version, what triggered it, channel verdicts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": result.target,
        "version": result.version,
        "trigger": result.trigger,
        "status": result.status.value,
        "channels": {k: v.value for k, v in result.channels.items()},
        "failing": [c.case for c in result.cases if c.status is Status.FAILED],
        "seconds": result.seconds,
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")
