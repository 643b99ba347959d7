"""Phase-2 checks against the real testbed (stable + canary processes, real CLIP and Whisper), one
injected fault per scenario, judged against the committed healthy baselines (runbooks/baselines/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from diagnostics.deep_diagnosis.base import DeepContext, DeepResult
from diagnostics.deep_diagnosis.runner import run_check
from diagnostics.incident.results import Status
from tests.conftest import REPO
from tests.support.testbed_procs import AUTH, Stack

pytestmark = [pytest.mark.integration, pytest.mark.models]


@pytest.fixture(scope="module")
def ctx(testbed_stack: Stack) -> Iterator[DeepContext]:
    from diagnostics.runbooks import load_runbooks

    with pytest.MonkeyPatch.context() as mp:
        for key, value in testbed_stack.environ().items():
            mp.setenv(key, value)
        books = load_runbooks()
        yield DeepContext(books=books, target=books.targets.get("testbed"))


@pytest.fixture
def canary(testbed_stack: Stack) -> Iterator[str]:
    url = testbed_stack.canary.url
    httpx.delete(f"{url}/admin/faults", headers=AUTH, timeout=5).raise_for_status()
    yield url
    httpx.delete(f"{url}/admin/faults", headers=AUTH, timeout=5).raise_for_status()


def inject(url: str, fault: str, **body: Any) -> None:
    resp = httpx.post(f"{url}/admin/faults", json={"fault": fault, **body}, headers=AUTH, timeout=5)
    assert resp.status_code == 200, resp.text


def canary_of(r: DeepResult) -> Any:
    return r.versions["canary"]


def test_healthy_versions_pass_every_check(ctx: DeepContext, canary: str) -> None:
    for name in (
        "clip_consistency",
        "embedding_alignment",
        "alignment_quality",
        "temporal_alignment",
        "drift",
        "asr_check",
        "router_dispatch",
    ):
        r = run_check(name, ctx)
        unbased = ("temporal_alignment", "router_dispatch")  # judged on absolute bounds / declared routes
        assert r.baseline is not None or name in unbased, f"{name}: no committed baseline"
        for version, outcome in r.versions.items():
            assert outcome.status is Status.OK, f"{name}/{version}: {outcome.summary}"
        assert r.findings == []
    clip = run_check("clip_consistency", ctx)
    figures = canary_of(clip).figures
    assert figures["margin"] > 0.8 and figures["recall"]["i2t@1"] == 1.0
    assert figures["reference_image_cosine_min"] > 0.99  # the service's CLIP is the reference's


def test_image_text_misalignment_collapses_margin_and_recall_and_names_the_samples(
    ctx: DeepContext, canary: str
) -> None:
    inject(canary, "image_text_misalignment")
    r = run_check("clip_consistency", ctx)
    assert r.versions["stable"].status is Status.OK
    c = canary_of(r)
    assert c.status is Status.FAILED
    assert c.figures["margin"] < 0.3 and c.figures["recall"]["i2t@1"] < 0.5
    assert c.figures["baseline_margin"] > 0.8
    assert len(c.figures["broken_samples"]) > 32 and "img-000" in c.findings[0].evidence
    # only the images moved from the reference encoder's: a misalignment, the high finding
    assert c.figures["moved_from_reference"]["text"] == 0 and c.findings[0].severity.value == "high"
    quality = canary_of(run_check("alignment_quality", ctx, ("canary",)))
    assert quality.status is Status.FAILED and quality.figures["modality_f1"] < 0.8


def test_embedding_dim_mismatch_is_a_dimension_finding(ctx: DeepContext, canary: str) -> None:
    inject(canary, "embedding_dim_mismatch", magnitude=512)
    c = canary_of(run_check("embedding_alignment", ctx, ("canary",)))
    assert c.status is Status.FAILED
    assert (
        c.figures["image_dim"] == 512 and c.figures["text_dim"] == 128 and c.figures["reference_dim"] == 128
    )
    assert c.findings[0].problem == "embedding_dim_mismatch" and "embedding_dim" in c.findings[0].action


def test_asr_degraded_puts_wer_over_its_bound(ctx: DeepContext, canary: str) -> None:
    inject(canary, "asr_degraded", magnitude=-5)
    r = run_check("asr_check", ctx, ("canary",))
    c = canary_of(r)
    assert c.status is Status.FAILED, c.summary
    assert c.figures["mean_error_rate"] > 0.15 and c.figures["baseline_mean_error_rate"] < 0.15
    assert c.findings[0].problem == "asr_degraded" and c.findings[0].channel == "audio"


def test_embedding_drift_reaches_level_2_and_a_small_drift_at_most_level_1(
    ctx: DeepContext, canary: str
) -> None:
    inject(canary, "embedding_drift", magnitude=0.2)
    time.sleep(1)
    levels = canary_of(run_check("drift", ctx, ("canary",))).figures["levels"]
    assert max(v for v in levels.values() if v is not None) == 2, levels
    # a drift that moved texts and images alike (shift 1.0 of the norm): CLIP consistency fails too,
    # at medium, so drift's finding leads
    inject(canary, "embedding_drift", magnitude=1.0)
    clip = canary_of(run_check("clip_consistency", ctx, ("canary",)))
    moved = clip.figures["moved_from_reference"]
    assert clip.status is Status.FAILED and moved["text"] > 6 and moved["image"] > 6, moved
    assert clip.findings[0].severity.value == "medium", clip.findings[0].evidence
    inject(canary, "embedding_drift", magnitude=0.01)
    small = canary_of(run_check("drift", ctx, ("canary",)))
    assert all(v is None or v <= 1 for v in small.figures["levels"].values()), small.figures["levels"]
    assert small.status in (Status.OK, Status.DEGRADED)


def test_clock_skew_is_a_temporal_finding(ctx: DeepContext, canary: str) -> None:
    inject(canary, "clock_skew", magnitude=2000)
    c = canary_of(run_check("temporal_alignment", ctx, ("canary",)))
    assert c.status is Status.FAILED
    assert 1800 < c.figures["clock_offset_ms"]["median"] < 2200
    assert 1800 < c.figures["word_offset_ms"]["median"] < 2200
    assert c.findings[0].problem == "clock_skew"


def test_a_misrouting_router_fails_router_dispatch_with_the_wrong_routes(
    ctx: DeepContext, canary: str
) -> None:
    # router_degraded answers 200 in time: only the route each response reports gives it away.
    inject(canary, "router_degraded", magnitude=0.3)
    c = canary_of(run_check("router_dispatch", ctx, ("canary",)))
    assert c.status is Status.FAILED, c.summary
    # probes in looks of 40 until the misrouted share's bounds decide: the first look, 99 times in 100
    assert c.figures["sent"] == c.figures["answered"] == c.figures["looks"][-1] in (40, 80)
    assert c.figures["bound"]["verdict"] == "over" and c.figures["bound"]["lower"] > 0.05
    assert c.findings[0].problem == "router_misroute" and c.findings[0].component == "multimodal_router"


def test_an_unreachable_version_is_insufficient_evidence_not_a_verdict(ctx: DeepContext) -> None:
    from diagnostics.runbooks.schemas import Endpoint

    dead = ctx.target.model_copy(
        update={"versions": {**ctx.target.versions, "canary": Endpoint(base_url="http://127.0.0.1:9")}}  # type: ignore[arg-type]
    )
    r = run_check("clip_consistency", DeepContext(books=ctx.books, target=dead))
    assert r.versions["stable"].status is Status.OK
    assert r.versions["canary"].status is Status.INSUFFICIENT_EVIDENCE
    assert (
        "could not be measured" in r.versions["canary"].summary
        and "127.0.0.1:9" in r.versions["canary"].summary
    )


def test_the_cli_runs_a_check_and_writes_the_pod_xcom_file(
    testbed_stack: Stack, canary: str, tmp_path: Path
) -> None:
    env = {**os.environ, **testbed_stack.environ()}
    xcom = tmp_path / "xcom" / "return.json"
    proc = subprocess.run(
        [sys.executable, "-m", "diagnostics", "check", "clip_consistency", "--xcom", str(xcom)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = DeepResult.model_validate(json.loads(xcom.read_text()))
    assert result.check == "clip_consistency" and set(result.versions) == {"stable", "canary"}
    inject(canary, "image_text_misalignment")
    proc = subprocess.run(
        [sys.executable, "-m", "diagnostics", "check", "clip_consistency", "--version", "canary"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "failed" in proc.stdout and "image_text_misalignment" in proc.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "diagnostics", "check", "video_frames"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2 and "unknown check 'video_frames'" in unknown.stderr
