"""What the local stack runs: each component's command, port, health probe and log file."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from diagnostics.config import Settings
from diagnostics.envsubst import expand


@dataclass(frozen=True)
class Health:
    """How to tell the component is healthy: GET ``url`` answers 200 and, when ``field`` is given,
    the JSON value at that path equals ``expect``. No url: healthy while the process runs."""

    url: str | None
    field: tuple[str, ...] = ()
    expect: str = ""


def _airflow_health(url: str, component: str) -> Health:
    # One monitor endpoint reports the metadata DB and each component's heartbeat.
    return Health(url, field=(component, "status"), expect="healthy")


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    health: Health
    log_file: Path
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    group: str = "core"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "argv": self.argv, "log_file": str(self.log_file), "env": self.env}


def binary(name: str, *alternatives: str) -> str:
    for candidate in (name, *alternatives):
        found = shutil.which(candidate)
        if found:
            return found
    raise FileNotFoundError(
        f"'{name}' is not installed; run the setup script (scripts/setup.sh) or "
        f"apt-get install {'prometheus-alertmanager' if 'alertmanager' in name else name}"
    )


# Phase 2 on the local stack runs beside the testbed on the same cores (production: its own pods).
LOCAL_DEEP_NICE = 15


def airflow_env(settings: Settings, secrets: Mapping[str, str]) -> dict[str, str]:
    """Environment for every Airflow process of the local stack (and for `airflow` CLI calls)."""
    home = settings.airflow_home
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.repo_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.repo_root / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json"),
        "AIRFLOW__API__BASE_URL": settings.airflow_url,
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow_url}/execution/",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.log_dir / "airflow"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets["AIRFLOW__API_AUTH__JWT_SECRET"],
        "AIRFLOW__API__SECRET_KEY": secrets["AIRFLOW__API__SECRET_KEY"],
        # The alert intake (plugins/) authenticates Alertmanager with it; the reconciler DAG sends it.
        "TRIAGE24_WEBHOOK_TOKEN": secrets["TRIAGE24_WEBHOOK_TOKEN"],
        # The intake's /metrics accepts it (Prometheus' job "triage24"); the webhook token does not.
        "TRIAGE24_METRICS_TOKEN": secrets["TRIAGE24_METRICS_TOKEN"],
        # The rollback task sets the testbed gateway's canary weight with it (targets.yaml names it).
        "TRIAGE24_TESTBED_ADMIN_TOKEN": secrets["TRIAGE24_TESTBED_ADMIN_TOKEN"],
        # The audit bundle of phase 3 is signed with it (a Connection triage24_audit takes precedence).
        "TRIAGE24_AUDIT_KEY": secrets["TRIAGE24_AUDIT_KEY"],
        # Phase 2's reference CLIP/Whisper share these cores with the testbed they diagnose: at full
        # priority they pushed a healthy stable's text p99.99 to 350 ms and audio p99 to 28 s (SLA pages).
        "TRIAGE24_DEEP_NICE": str(settings.deep_nice or LOCAL_DEEP_NICE),
        # Settings the DAG tasks read (diagnostics.config.Settings) so they see the same stack.
        **settings.port_environ(),
    }
    return env


def write_airflow_files(settings: Settings, secrets: Mapping[str, str]) -> None:
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({"admin": secrets["TRIAGE24_ADMIN_PASSWORD"]}), encoding="utf-8")
    passwords.chmod(0o600)
    # Alertmanager's webhook bearer token (alertmanager.yml: http_config.authorization.credentials_file)
    # and Prometheus' token for Triage24's metrics (prometheus.yml: job triage24, authorization.
    # credentials_file), so neither token is in the repo or a rendered config.
    _write_secret(settings.home / "alertmanager" / "webhook_token", secrets["TRIAGE24_WEBHOOK_TOKEN"])
    _write_secret(metrics_token_file(settings), secrets["TRIAGE24_METRICS_TOKEN"])


def metrics_token_file(settings: Settings) -> Path:
    """Where Prometheus reads the token of its ``triage24`` job (``deploy/prometheus/prometheus.yml``)."""
    return settings.home / "prometheus" / "metrics_token"


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value)
    path.chmod(0o600)


def render_configs(settings: Settings) -> dict[str, Path]:
    """Render deploy/{prometheus,alertmanager} templates into the state dir with this stack's ports."""
    values = {
        **settings.port_environ(),
        "TRIAGE24_RULES_DIR": str(settings.repo_root / "deploy" / "prometheus" / "rules"),
    }
    out: dict[str, Path] = {}
    for name in ("prometheus", "alertmanager"):
        src = settings.repo_root / "deploy" / name / f"{name}.yml"
        dst = settings.home / name / f"{name}.yml"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(expand(src.read_text(encoding="utf-8"), values), encoding="utf-8")
        out[name] = dst
    return out


def components(settings: Settings, secrets: Mapping[str, str]) -> list[Component]:
    logs = settings.log_dir
    host = settings.host
    configs = {name: settings.home / name / f"{name}.yml" for name in ("prometheus", "alertmanager")}
    airflow = str(Path(sys.executable).with_name("airflow"))
    aenv = airflow_env(settings, secrets)
    monitor = f"{settings.airflow_url}/api/v2/monitor/health"
    return [
        Component(
            name="prometheus",
            argv=[
                binary("prometheus"),
                f"--config.file={configs['prometheus']}",
                f"--storage.tsdb.path={settings.home / 'prometheus' / 'data'}",
                f"--web.listen-address={host}:{settings.prometheus_port}",
                "--web.enable-lifecycle",
                # Local stack: re-send firing alerts quickly so Alertmanager groups them within seconds.
                "--rules.alert.resend-delay=2s",
                "--storage.tsdb.retention.time=2d",
            ],
            health=Health(f"http://{host}:{settings.prometheus_port}/-/ready"),
            log_file=logs / "prometheus.log",
            port=settings.prometheus_port,
        ),
        Component(
            name="alertmanager",
            argv=[
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={configs['alertmanager']}",
                f"--storage.path={settings.home / 'alertmanager' / 'data'}",
                f"--web.listen-address={host}:{settings.alertmanager_port}",
                "--cluster.listen-address=",
            ],
            health=Health(f"http://{host}:{settings.alertmanager_port}/-/ready"),
            log_file=logs / "alertmanager.log",
            port=settings.alertmanager_port,
        ),
        Component(
            name="airflow-api-server",
            argv=[airflow, "api-server", "--host", host, "--port", str(settings.airflow_port)],
            health=_airflow_health(monitor, "metadatabase"),
            log_file=logs / "airflow-api-server.log",
            port=settings.airflow_port,
            env=aenv,
        ),
        *(
            Component(
                name=f"airflow-{command}",
                argv=[airflow, command],
                health=_airflow_health(monitor, command.replace("-", "_")),
                log_file=logs / f"airflow-{command}.log",
                env=aenv,
            )
            for command in ("scheduler", "dag-processor", "triggerer")
        ),
        *testbed_components(settings, secrets),
    ]


def testbed_components(settings: Settings, secrets: Mapping[str, str]) -> list[Component]:
    """The reference multimodal service: stable and canary, the gray-release gateway, steady traffic."""
    py = sys.executable
    logs = settings.log_dir
    host = settings.host
    env = {
        "TRIAGE24_TESTBED_ADMIN_TOKEN": secrets["TRIAGE24_TESTBED_ADMIN_TOKEN"],
        "HF_HUB_OFFLINE": "1",
        **settings.port_environ(),
    }
    versions = {"stable": settings.testbed_stable_port, "canary": settings.testbed_canary_port}
    out = [
        Component(
            name=f"testbed-{version}",
            argv=[
                py,
                "-m",
                "testbed",
                "serve",
                "--version",
                version,
                "--host",
                host,
                "--port",
                str(port),
                "--log-file",
                str(logs / f"testbed-{version}.jsonl"),
            ],
            # Ready only once its models are loaded (it answers "degraded" while loading).
            health=Health(f"http://{host}:{port}/v1/health", field=("status",), expect="ready"),
            log_file=logs / f"testbed-{version}.out",
            port=port,
            env=env,
            group="testbed",
        )
        for version, port in versions.items()
    ]
    out.append(
        Component(
            name="testbed-gateway",
            argv=[
                py,
                "-m",
                "testbed",
                "gateway",
                "--host",
                host,
                "--port",
                str(settings.testbed_gateway_port),
                "--stable",
                f"http://{host}:{versions['stable']}",
                "--canary",
                f"http://{host}:{versions['canary']}",
                "--log-file",
                str(logs / "testbed-gateway.jsonl"),
            ],
            # The gateway's own state; its upstreams' state is the service's business.
            health=Health(f"{settings.testbed_gateway_url}/health", field=("gateway",), expect="ready"),
            log_file=logs / "testbed-gateway.out",
            port=settings.testbed_gateway_port,
            env=env,
            group="testbed",
        )
    )
    out.append(
        Component(
            name="testbed-traffic",
            argv=[
                py,
                "-m",
                "testbed",
                "traffic",
                "--gateway",
                settings.testbed_gateway_url,
                "--rate",
                str(settings.traffic_rate),
                "--duration",
                "86400",  # the generator is bounded by design: a day, the longest it allows
                "--wait-ready",  # the services load their models first (~25 s)
                str(settings.start_timeout_s),
            ],
            health=Health(None),
            log_file=logs / "testbed-traffic.log",
            env=env,
            group="testbed",
        )
    )
    return out
