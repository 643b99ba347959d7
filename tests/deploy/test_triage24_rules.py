"""The alert rules on Triage24 itself (deploy/prometheus/rules/triage24.yml): valid for the real promtool,
raising the right alerts on synthetic series (tests/deploy/triage24_rules_test.yml), on metrics the
intake really exports, labelled for the operators and routed to them, never to the intake."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from diagnostics.intake.payload import validate
from diagnostics.intake.service import IntakeService
from diagnostics.telemetry import Telemetry, TelemetrySources
from harness.stack.components import render_configs
from tests.conftest import REPO, stack_settings
from tests.diagnostics.intake.conftest import backend, body, clock, real_payload, service, settings  # noqa: F401

RULES = REPO / "deploy" / "prometheus" / "rules" / "triage24.yml"
HERE = Path(__file__).parent
PROMTOOL, AMTOOL = shutil.which("promtool"), shutil.which("amtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool missing: apt-get install prometheus-alertmanager"
)


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


@needs_promtool
def test_the_rules_fire_on_synthetic_series() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "triage24_rules_test.yml"], capture_output=True, text=True, cwd=HERE
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", (HERE / "triage24_rules_test.yml").read_text()))
    assert tested == {r["alert"] for r in rules()}, "every rule has a unit test"


def test_every_alert_is_for_the_operators_not_an_incident_of_a_watched_service() -> None:
    anchors = {
        "#" + re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", (REPO / "deploy" / "README.md").read_text(), flags=re.MULTILINE)
    }
    for rule in rules():
        assert rule["alert"].startswith("Triage24"), rule["alert"]
        assert rule["labels"]["component"] == "triage24"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert "target" not in rule["labels"], "a target label would make it look like a service incident"
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "deploy/README.md" and f"#{anchor}" in anchors, rule["annotations"]["runbook"]


def test_the_rules_use_only_metrics_the_intake_exports(service: IntakeService, tmp_path: Path) -> None:  # noqa: F811
    service.reconcile()  # the reconciler's timestamps exist once it ran
    raw = real_payload()
    service.handle(validate(raw), body(raw))
    telemetry = Telemetry(
        TelemetrySources(
            journal=service.journal.path, artifacts=tmp_path, phase2_failures=lambda: {"clip_consistency": 0}
        )
    )
    exported = {
        s.name for f in text_string_to_metric_families(telemetry.render().decode()) for s in f.samples
    }
    used = {m for r in rules() for m in re.findall(r"\btriage24_[a-z0-9_]+", r["expr"])}
    assert used and used <= exported, sorted(used - exported)


@needs_amtool
def test_alertmanager_routes_triage24_alerts_to_the_operators_and_service_alerts_to_the_intake(
    tmp_path: Path,
) -> None:
    assert AMTOOL is not None
    config = render_configs(stack_settings(tmp_path))["alertmanager"]

    def receiver(*labels: str) -> str:
        done = subprocess.run(
            [AMTOOL, "config", "routes", "test", f"--config.file={config}", *labels],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    for rule in rules():
        labels = [f"{k}={v}" for k, v in rule["labels"].items()]
        assert receiver(f"alertname={rule['alert']}", *labels) == "triage24-operators"
    assert (
        receiver("alertname=ModelNotLoaded", "target=testbed", "version=canary", "severity=critical")
        == "triage24"
    )
