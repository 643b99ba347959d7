"""Local settings: paths and ports of the embedded stack, from TRIAGE24_* environment variables.

In Airflow, connections come from Airflow Connections; these settings are what the CLI and the
local stack use. Every field can be overridden with ``TRIAGE24_<FIELD>`` (e.g. TRIAGE24_AIRFLOW_PORT).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from dotenv import dotenv_values
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE24_", extra="ignore")

    repo_root: Path = REPO_ROOT
    home: Path = Field(default=REPO_ROOT / ".triage24", description="state: secrets, pids, logs, data")
    model_dir: Path = Field(
        default=Path.home() / ".cache" / "triage24" / "models",
        description="prepared model files (kept outside the repo)",
    )
    runbooks_dir: Path = REPO_ROOT / "runbooks"
    artifact_root: Path | None = None

    host: str = "127.0.0.1"
    airflow_port: int = Field(default=8080, ge=1, le=65535)
    prometheus_port: int = Field(default=9090, ge=1, le=65535)
    alertmanager_port: int = Field(default=9093, ge=1, le=65535)
    testbed_gateway_port: int = Field(default=8100, ge=1, le=65535)
    testbed_stable_port: int = Field(default=8101, ge=1, le=65535)
    testbed_canary_port: int = Field(default=8102, ge=1, le=65535)
    traffic_rate: float = Field(default=2.0, gt=0, le=50, description="testbed traffic, requests/s")
    airflow_parallelism: int = Field(default=4, ge=1, le=64)
    start_timeout_s: float = Field(default=180.0, gt=0)
    deep_nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="CPU niceness of a phase-2 task's process: > 0 where it shares the machine with the "
        "service it diagnoses (the local stack sets 15), so its reference models do not starve the service",
    )

    @cached_property
    def artifacts(self) -> Path:
        return self.artifact_root or self.home / "artifacts"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.env"

    def secret(self, name: str) -> str | None:
        """A secret from the environment, else from the local stack's secrets file (read only: the
        harness creates that file, the library never does). None when neither has it."""
        if os.environ.get(name):
            return os.environ[name]
        if self.secrets_file.exists():
            return dotenv_values(self.secrets_file).get(name) or None
        return None

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def testbed_gateway_url(self) -> str:
        return f"http://{self.host}:{self.testbed_gateway_port}"

    def port_environ(self) -> dict[str, str]:
        """The settings other processes need to see the same stack (runbooks read these too)."""
        return {
            "TRIAGE24_HOME": str(self.home),
            "TRIAGE24_HOST": self.host,
            **{
                f"TRIAGE24_{name.upper()}": str(getattr(self, name))
                for name in (
                    "airflow_port",
                    "prometheus_port",
                    "alertmanager_port",
                    "testbed_gateway_port",
                    "testbed_stable_port",
                    "testbed_canary_port",
                )
            },
        }
