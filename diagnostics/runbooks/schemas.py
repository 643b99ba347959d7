"""Schemas of the runbook files in ``runbooks/``: the data the DAG obeys and humans read.

Every model forbids unknown fields so a typo fails loudly instead of silently using a default.
"""

from __future__ import annotations

import itertools
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Component(StrEnum):
    """Modules of a Dify-style multimodal service, plus what sits around them."""

    LLM = "llm"
    EMBEDDING = "embedding"
    MULTIMODAL_ROUTER = "multimodal_router"
    AUDIO_PROCESSOR = "audio_processor"
    GATEWAY = "gateway"
    INFRASTRUCTURE = "infrastructure"


class Channel(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    ROUTER = "router"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


# --- sop.yaml -------------------------------------------------------------------------------------


class Window(Strict):
    start_h: float = Field(ge=0, le=24)
    end_h: float = Field(gt=0, le=24)

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end_h <= self.start_h:
            raise ValueError(f"end_h ({self.end_h}) must be after start_h ({self.start_h})")
        return self


class Phase(Strict):
    id: Identifier
    title: str = Field(min_length=1)
    window: Window | None = Field(default=None, description="hours after the alert; none for instant steps")
    deadline_h: float | None = Field(default=None, gt=0, le=24, description="measured from the alert")
    checks: list[Identifier] = Field(default_factory=list)
    doc: str | None = Field(default=None, description="Markdown runbook shown as the TaskGroup's docs")

    @model_validator(mode="after")
    def _deadline_covers_window(self) -> Phase:
        if self.window and self.deadline_h is not None and self.deadline_h < self.window.end_h:
            raise ValueError(
                f"deadline_h ({self.deadline_h}) is before the end of the window ({self.window.end_h} h)"
            )
        return self


class Sop(Strict):
    version: int = Field(ge=1)
    phases: list[Phase] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Sop:
        ids = [p.id for p in self.phases]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"phase ids must be unique; repeated: {', '.join(dupes)}")
        checks = [c for p in self.phases for c in p.checks]
        dupes = sorted({c for c in checks if checks.count(c) > 1})
        if dupes:
            raise ValueError(f"a check runs in one phase only; repeated: {', '.join(dupes)}")
        windows = [p.window for p in self.phases if p.window]
        for before, after in itertools.pairwise(windows):
            if after.start_h < before.end_h:
                raise ValueError(
                    f"phase windows overlap or are out of order: {before.start_h}-{before.end_h} h "
                    f"then {after.start_h}-{after.end_h} h"
                )
        return self

    def phase(self, phase_id: str) -> Phase:
        for p in self.phases:
            if p.id == phase_id:
                return p
        raise KeyError(f"no phase {phase_id!r}; phases: {', '.join(p.id for p in self.phases)}")


# --- priority_matrix.yaml -------------------------------------------------------------------------


class Problem(Strict):
    id: Identifier
    title: str = Field(min_length=1)
    severity: Severity
    first_component: Component
    keywords: list[str] = Field(min_length=1, description="case-insensitive regular expressions")
    action: str = Field(min_length=1, description="the fix, as an on-call engineer would apply it")
    runbook: str | None = Field(default=None, description="Markdown runbook in runbooks/, by file name")

    @field_validator("keywords")
    @classmethod
    def _compile(cls, keywords: list[str]) -> list[str]:
        for kw in keywords:
            try:
                re.compile(kw)
            except re.error as exc:
                raise ValueError(f"keyword {kw!r} is not a valid regular expression: {exc}") from None
        return keywords


class PriorityMatrix(Strict):
    version: int = Field(ge=1)
    problems: list[Problem] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> PriorityMatrix:
        ids = [p.id for p in self.problems]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"problem ids must be unique; repeated: {', '.join(dupes)}")
        return self

    def get(self, problem_id: str) -> Problem | None:
        return next((p for p in self.problems if p.id == problem_id), None)


# --- thresholds.yaml ------------------------------------------------------------------------------


class LatencySla(Strict):
    quantile: float = Field(gt=0.5, lt=1, description="e.g. 0.9999 for P99.99")
    latency_ms: float = Field(gt=0)


class ChannelSla(Strict):
    latency: LatencySla
    error_rate: float = Field(ge=0, le=1, description="share of requests that may fail")


class CanaryGates(Strict):
    """Hard gates: a breach backed by ``min_requests`` samples is the fast path to rollback."""

    p99_latency_ms: float = Field(gt=0)
    rate_5xx: float = Field(ge=0, le=1)
    error_rate: float = Field(ge=0, le=1)
    sustained_s: float = Field(gt=0, description="how long a breach must last")
    min_requests: int = Field(ge=1, description="fewer requests than this is insufficient evidence")
    channel_p99_latency_ms: dict[Channel, float] = Field(
        default_factory=dict, description="per-channel p99 gate where a channel is slower by nature"
    )

    def p99_gate_ms(self, channel: Channel) -> float:
        return self.channel_p99_latency_ms.get(channel, self.p99_latency_ms)


class AsrDynamic(Strict):
    """ASR threshold = mu + sigma_multiplier * sigma * (1 + load_coefficient * load_ratio)."""

    sigma_multiplier: float = Field(gt=0)
    load_coefficient: float = Field(ge=0)


class ApiDynamic(Strict):
    """API threshold = max(floor_ms, P99.99_base * exp(qps_coefficient * qps))."""

    floor_ms: float = Field(gt=0)
    qps_coefficient: float = Field(ge=0)


class DynamicThresholds(Strict):
    asr: AsrDynamic
    api: ApiDynamic


class DriftProjection(Strict):
    """How embeddings are reduced before the per-feature tests; fitted on the reference only."""

    kind: Literal["none", "pca", "random"] = Field(
        default="none", description="none: every dimension; pca / random: a stable k-dim projection"
    )
    components: int = Field(default=32, ge=1, le=4096, description="k, for pca and random")
    seed: int = Field(default=0, ge=0, description="seed of the random Gaussian projection")


class DriftThresholds(Strict):
    """Drift (phase 2): two-sample KS and Wasserstein per feature, current window vs a reference.

    Level 1 (record, widen the window): one statistic over its bound. Level 2 (a decision input):
    both over their bounds and the composite ``0.6·(1 - p_adjusted) + 0.4·min(W/σ_ref, 1)`` above
    ``composite``. ``ks_p_value`` bounds the *corrected* p-value, so it is the false-discovery rate
    (bh) or the family-wise error rate (bonferroni) at which KS declares drift.
    """

    ks_p_value: float = Field(default=0.01, gt=0, lt=1, description="KS is over when corrected p < this")
    wasserstein: float = Field(
        default=0.1, gt=0, description="W is over when W / reference std > this (Evidently's 'normed' W)"
    )
    composite: float = Field(default=0.7, gt=0, lt=1, description="level 2 needs the composite above this")
    min_samples: int = Field(
        default=50, ge=2, description="fewer values in either window: insufficient evidence, no verdict"
    )
    correction: Literal["bh", "bonferroni"] = Field(
        default="bh", description="multiple-testing correction over the features of one set"
    )
    projection: DriftProjection = Field(default_factory=DriftProjection)


class HealthConfirmation(Strict):
    """How phase 1 confirms that a health endpoint is down before it calls it unreachable (a critical
    finding that rolls a canary back with no human): the GET is retried, then a second signal must
    agree (Prometheus ``up`` for that version, the gateway's upstream errors to it)."""

    tries: int = Field(default=3, ge=1, le=10, description="GETs in all, the first included")
    window_s: float = Field(
        default=6.0, gt=0, le=60, description="no retry starts later than this after the first GET began"
    )
    backoff_s: float = Field(default=0.5, ge=0, le=10, description="pause before the second try; doubles")
    signal_window_s: float = Field(
        default=60.0, gt=0, le=3600, description="the gateway's upstream errors are counted over this"
    )


class TargetOverride(Strict):
    """Per-target values, e.g. a CPU-only testbed cannot meet GPU latency targets."""

    sla: dict[Channel, ChannelSla] = Field(default_factory=dict)
    canary_gates: CanaryGates | None = None


class Thresholds(Strict):
    version: int = Field(ge=1)
    sla: dict[Channel, ChannelSla]
    canary_gates: CanaryGates
    dynamic: DynamicThresholds
    drift: DriftThresholds = Field(default_factory=DriftThresholds)
    health_confirmation: HealthConfirmation = Field(default_factory=HealthConfirmation)
    deep: dict[Identifier, dict[str, object]] = Field(
        default_factory=dict,
        description="phase-2 check name -> its thresholds; each check's own model validates them "
        "(its defaults apply where a field is absent)",
    )
    target_overrides: dict[Identifier, TargetOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_channel(self) -> Thresholds:
        missing = [c.value for c in Channel if c not in self.sla]
        if missing:
            raise ValueError(f"sla must cover every channel; missing: {', '.join(missing)}")
        return self

    def sla_for(self, target: str, channel: Channel) -> ChannelSla:
        override = self.target_overrides.get(target)
        return (override.sla.get(channel) if override else None) or self.sla[channel]

    def gates_for(self, target: str) -> CanaryGates:
        override = self.target_overrides.get(target)
        return (override.canary_gates if override else None) or self.canary_gates


# --- targets.yaml ---------------------------------------------------------------------------------


class Endpoint(Strict):
    base_url: HttpUrl
    health_path: str = Field(default="/v1/health", pattern=r"^/")


class FileLogs(Strict):
    source: Literal["files"]
    paths: list[str] = Field(min_length=1, description="JSON-lines files or globs")


class ElasticsearchLogs(Strict):
    source: Literal["elasticsearch"]
    index: str = Field(min_length=1)
    connection_id: str = Field(default="triage24_elasticsearch", description="Airflow Connection id")


class ExpectedModel(Strict):
    module: Component
    name: str = Field(min_length=1)
    sha256: Sha256 | None = Field(default=None, description="none until the weights are pinned")


class RollbackPolicy(Strict):
    """What every rollback method shares: the human gate and the rate limit on changes.

    ``sensitive`` marks a target whose change needs a human's approval even where the decision is
    automatic (a compliance breaker). The rate limit caps how often Triage24 may change one target
    (rollbacks and promotions together), so a flapping signal cannot make it thrash a service.
    """

    sensitive: bool = Field(default=False, description="a human must approve every change of this target")
    max_changes: int = Field(default=3, ge=1, le=100, description="changes allowed per target per window")
    per_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400, description="the rate-limit window")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="per request to the control API")


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]


class GatewayRollback(RollbackPolicy):
    method: Literal["gateway_weight"]
    admin_token_env: EnvName = Field(description="environment variable holding the gateway admin token")


class KubernetesRollback(RollbackPolicy):
    method: Literal["kubernetes_deployment"]
    namespace: str
    deployment: str
    connection_id: str = "kubernetes_default"


class ArgoRollback(RollbackPolicy):
    method: Literal["argo_rollout"]
    namespace: str
    rollout: str
    connection_id: str = "kubernetes_default"


MetricName = Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=200)]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=100)]


class MetricNames(Strict):
    """Names of the Prometheus series the metrics check reads; defaults are the testbed's.

    The histogram must be in seconds with cumulative ``le`` buckets; the counters are per request.
    """

    request_duration_histogram: MetricName = "testbed_request_duration_seconds"
    requests_total: MetricName = "testbed_requests_total"
    errors_total: MetricName = Field(
        default="testbed_request_errors_total", description="requests answered with a code >= 400"
    )
    gpu_memory_bytes: MetricName | None = Field(
        default="testbed_gpu_memory_bytes", description="gauge by device and kind; none if not exported"
    )
    version_label: LabelName = "version"
    channel_label: LabelName = "channel"
    code_label: LabelName = "code"
    gateway_upstream_errors_total: MetricName | None = Field(
        default=None,
        description="the gateway's counter of failed upstream connections and timeouts, by version_label "
        "(read with gateway_prometheus_selector); none: not exported",
    )


class ServiceApi(Strict):
    """Paths of the service's multimodal API that phase 2 and the regression suite call (the Dify-style
    shape the testbed serves: JSON bodies, base64 images and audio, L2-normalised embeddings)."""

    text_embeddings: str = Field(default="/v1/embeddings/text", pattern=r"^/")
    image_embeddings: str = Field(default="/v1/embeddings/image", pattern=r"^/")
    transcriptions: str = Field(default="/v1/audio/transcriptions", pattern=r"^/")
    router: str = Field(default="/v1/router", pattern=r"^/")
    chat: str = Field(default="/v1/chat", pattern=r"^/")
    batch_size: int = Field(default=32, ge=1, le=1024, description="inputs per embedding request")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="per request; a timeout is a finding")


class GoldenSetRef(Strict):
    path: str = Field(
        min_length=1, description="directory holding manifest.json (relative: to the repo root)"
    )


class ClipReference(Strict):
    model: str = Field(min_length=1, description="open_clip model name, e.g. ViT-B-32")
    pretrained: str = Field(min_length=1, description="checkpoint path or open_clip pretrained tag")
    config: str | None = Field(default=None, description="extra open_clip model-config JSON to register")


class WhisperReference(Strict):
    checkpoint: str = Field(min_length=1, description="openai-whisper checkpoint path or model name")


class ReferenceModels(Strict):
    """The reference encoders phase 2 compares the service with (loaded once per worker process)."""

    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when available")
    batch_size: int = Field(default=32, ge=1, le=1024)
    clip: ClipReference | None = None
    whisper: WhisperReference | None = None


class Target(Strict):
    name: Identifier
    description: str = ""
    versions: dict[Literal["stable", "canary"], Endpoint]
    gateway: Endpoint | None = None
    prometheus_selector: dict[str, str] = Field(
        default_factory=dict, description="labels that select this service's series"
    )
    metrics: MetricNames = Field(
        default_factory=MetricNames, description="series names and labels in Prometheus"
    )
    gateway_prometheus_selector: dict[str, str] = Field(
        default_factory=dict,
        description="labels that select the gateway's own series (its up, its upstream errors); "
        "empty: the gateway's up is not read",
    )
    logs: Annotated[FileLogs | ElasticsearchLogs, Field(discriminator="source")]
    models: list[ExpectedModel] = Field(default_factory=list)
    rollback: Annotated[GatewayRollback | KubernetesRollback | ArgoRollback, Field(discriminator="method")]
    api: ServiceApi = Field(default_factory=ServiceApi)
    golden: GoldenSetRef | None = Field(default=None, description="the golden set phase 2 sends through")
    reference: ReferenceModels = Field(default_factory=ReferenceModels)
    baselines: str | None = Field(
        default=None,
        description="directory of the healthy baselines (relative: to runbooks/); default baselines/<name>",
    )

    @model_validator(mode="after")
    def _both_versions(self) -> Target:
        if "stable" not in self.versions:
            raise ValueError("versions must include 'stable' (the rollback destination)")
        return self


class Toleration(Strict):
    key: str
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class KubernetesExecution(Strict):
    """How a phase-2 check runs as a KubernetesPodOperator pod (``python -m diagnostics check ...``)."""

    image: str = Field(min_length=1)
    namespace: str = Field(default="triage24", min_length=1)
    connection_id: str = "kubernetes_default"
    service_account: str | None = None
    gpus: int = Field(default=1, ge=0, le=16, description="nvidia.com/gpu limit (0: a CPU pod)")
    cpu: str = "2"
    memory: str = "8Gi"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict, description="plain settings; secrets come from env_from"
    )
    env_from_secret: str | None = Field(default=None, description="a Secret whose keys become env variables")
    startup_timeout_s: int = Field(default=600, ge=10, le=3600)
    pod_template_file: str | None = Field(
        default=None,
        description="pod template merged under the operator's settings (relative: to the repo / image root), "
        "e.g. deploy/kubernetes/gpu-check-pod-template.yaml with the model-cache volume",
    )


class Phase2Execution(Strict):
    """Where each phase-2 check runs: ``local`` (a task on the worker) or ``kubernetes`` (a GPU pod)."""

    mode: Literal["local", "kubernetes"] = "local"
    checks: dict[Identifier, Literal["local", "kubernetes"]] = Field(
        default_factory=dict, description="per-check override of mode"
    )
    kubernetes: KubernetesExecution | None = None

    @model_validator(mode="after")
    def _pod_config(self) -> Phase2Execution:
        if self.kubernetes is None and (self.mode == "kubernetes" or "kubernetes" in self.checks.values()):
            raise ValueError("kubernetes mode needs a kubernetes: section (image, namespace, gpus, ...)")
        return self

    def mode_of(self, check: str) -> Literal["local", "kubernetes"]:
        return self.checks.get(check, self.mode)


class Targets(Strict):
    version: int = Field(ge=1)
    targets: list[Target] = Field(min_length=1)
    phase2_execution: Phase2Execution = Field(default_factory=Phase2Execution)

    @model_validator(mode="after")
    def _unique(self) -> Targets:
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"target names must be unique; repeated: {', '.join(dupes)}")
        return self

    def get(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"no target {name!r}; targets: {', '.join(t.name for t in self.targets)}")
