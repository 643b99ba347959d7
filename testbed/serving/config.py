"""Settings of the testbed service and its route, module and model tables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import faults as F

ADMIN_TOKEN_ENV = "TRIAGE24_TESTBED_ADMIN_TOKEN"  # noqa: S105 - the variable name, not a secret
MODULES = F.MODULES
CHANNELS = F.CHANNELS
STATUSES = ("ready", "degraded", "error")

#: route -> (channel, module)
ROUTES: dict[str, tuple[str, str]] = {
    "/v1/embeddings/text": ("text", "embedding"),
    "/v1/embeddings/rag": ("text", "embedding"),
    "/v1/chat": ("text", "llm"),
    "/v1/embeddings/image": ("image", "embedding"),
    "/v1/audio/transcriptions": ("audio", "audio_processor"),
    "/v1/router": ("router", "multimodal_router"),
}

#: model key -> (display name, modules that need it)
MODEL_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "clip": ("clip-shapes", ("embedding",)),
    "minilm": ("all-MiniLM-L6-v2", ("embedding", "llm")),
    "whisper": ("whisper-base", ("audio_processor",)),
}
#: model_not_loaded's channel -> the model it breaks
MODEL_FOR_CHANNEL = {"image": "clip", "audio": "whisper", "text": "minilm"}


@dataclass
class ServiceSettings:
    version: str = "stable"
    log_file: Path | None = None
    log_stdout: bool = True
    admin_token: str | None = None  # None: the admin API answers 503
    audio_timeout_s: float = 10.0  # ffmpeg decode timeout
    model_concurrency: int = 1  # concurrent inference calls per model
    max_batch: int = 64
    max_tenants: int = 20
    slow_ms: dict[str, float] = field(
        default_factory=lambda: {"text": 1000.0, "image": 1000.0, "audio": 8000.0, "router": 8000.0}
    )
    max_upload_bytes: int = 10 * 1024 * 1024
    device: str = "cpu"
    log_admin: bool = False  # write admin actions (fault changes) to the log

    @classmethod
    def from_env(cls, **overrides: Any) -> ServiceSettings:
        s = cls(**overrides)
        if "admin_token" not in overrides:
            s.admin_token = os.environ.get(ADMIN_TOKEN_ENV) or None
        if "audio_timeout_s" not in overrides and os.environ.get("TRIAGE24_TESTBED_AUDIO_TIMEOUT_S"):
            s.audio_timeout_s = float(os.environ["TRIAGE24_TESTBED_AUDIO_TIMEOUT_S"])
        if "model_concurrency" not in overrides and os.environ.get("TRIAGE24_TESTBED_MODEL_CONCURRENCY"):
            s.model_concurrency = max(1, int(os.environ["TRIAGE24_TESTBED_MODEL_CONCURRENCY"]))
        if "log_admin" not in overrides:
            s.log_admin = os.environ.get("TRIAGE24_TESTBED_LOG_ADMIN", "") in {"1", "true", "yes"}
        return s


def default_log_file(name: str) -> Path:
    # parents[2]: the repository root (testbed/serving/config.py)
    home = Path(os.environ.get("TRIAGE24_HOME") or Path(__file__).resolve().parents[2] / ".triage24")
    return home / "logs" / f"testbed-{name}.jsonl"
