"""Schema of ``runbooks/regression.yaml``: the golden multimodal regression suite and its schedule.

Each case is one golden input sent to a version and compared with the healthy baseline of the same
case (``runbooks/baselines/<target>/regression.json``) within the tolerances here; a channel fails
when more of its cases fail than ``max_failures``. The scheduled DAG runs the suite against stable and
canary on ``schedule`` and opens an incident through the alert intake when the canary regressed.
"""

from __future__ import annotations

from pydantic import Field

from diagnostics.runbooks.schemas import Strict


class Tolerances(Strict):
    embedding_cosine: float = Field(default=0.02, ge=0, le=2, description="cosine to baseline >= 1 - this")
    chat_score: float = Field(default=0.05, ge=0, le=1, description="|retrieval score - baseline| <= this")
    wer_increase: float = Field(default=0.1, ge=0, le=1, description="WER/CER <= baseline + this")
    similarity: float = Field(default=0.05, ge=0, le=2, description="router image-text similarity drift")
    latency_ratio: float = Field(default=3.0, ge=1, description="latency <= baseline x this + slack")
    latency_slack_ms: float = Field(default=250.0, ge=0)


class Suite(Strict):
    """How many golden inputs of each kind (the first N of the golden set; 0 skips the kind)."""

    chat: int = Field(default=12, ge=0, le=1000)
    text_embeddings: int = Field(default=16, ge=0, le=1000)
    image_embeddings: int = Field(default=16, ge=0, le=1000)
    transcriptions: int = Field(default=3, ge=0, le=1000)
    router_text: int = Field(default=2, ge=0, le=100)
    router_image_text: int = Field(default=2, ge=0, le=100)
    router_audio: int = Field(default=1, ge=0, le=100)


class Schedule(Strict):
    cron: str = Field(default="0 */6 * * *", min_length=9, description="when the regression DAG runs")
    versions: list[str] = Field(default_factory=lambda: ["stable", "canary"], min_length=1)
    drift_watch: bool = Field(default=True, description="also run the phase-2 drift check")
    ready_wait_s: float = Field(
        default=180.0,
        ge=0,
        le=3600,
        description="wait this long for a version still loading its models before its suite runs; "
        "still loading then: insufficient evidence, not a regression",
    )
    incident_grade_severity: str = Field(
        default="warning", pattern=r"^[a-z]+$", description="severity label of the alert a regression opens"
    )


class RegressionFile(Strict):
    version: int = Field(ge=1)
    tolerances: Tolerances = Field(default_factory=Tolerances)
    suite: Suite = Field(default_factory=Suite)
    max_failures: dict[str, int] = Field(
        default_factory=dict, description="channel -> failing cases allowed (default 0)"
    )
    schedule: Schedule = Field(default_factory=Schedule)
