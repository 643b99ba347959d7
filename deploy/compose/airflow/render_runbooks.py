"""Render the runbooks for docker-compose.yaml: a copy of runbooks/ with an override merged into targets.yaml.

    python render_runbooks.py SOURCE_DIR OVERRIDE_YAML OUT_DIR

``runbooks/targets.yaml`` names the testbed by 127.0.0.1 and reads its logs from local files; in the
compose stack each service has its own hostname and the logs are in Elasticsearch. Rather than keep a
second copy of targets.yaml (model checksums, rollback, phase-2 settings ...) that would drift, the
override (``targets.override.yaml`` beside this file) names only what differs, per target name:

- mappings merge key by key, recursively;
- a mapping whose discriminator (``source`` for logs, ``method`` for rollback) differs from the base
  replaces it whole (``logs: {source: elasticsearch, ...}`` drops the files source's ``paths``);
- anything else (scalars, lists) replaces the base value.

An override for a target that runbooks/targets.yaml does not have is an error. ``${VAR:-default}``
strings are kept as they are: the runbook loader expands them when it reads the rendered files.
airflow-init runs this, then ``triage24 runbooks validate --dir OUT_DIR``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

DISCRIMINATORS = ("source", "method")
HEADER = (
    "# GENERATED for docker-compose.yaml by deploy/compose/airflow/render_runbooks.py from\n"
    "# runbooks/targets.yaml and deploy/compose/airflow/targets.override.yaml. Do not edit: edit those.\n"
)


def merge(base: Any, override: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    for key in DISCRIMINATORS:
        if key in override and override.get(key) != base.get(key):
            return override
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base[key], value) if key in base else value
    return out


def render_targets(targets: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``targets`` as in targets.yaml; ``override`` as ``{"targets": {NAME: {...}}}``."""
    wanted = dict((override or {}).get("targets") or {})
    out = dict(targets)
    rendered = []
    for target in targets.get("targets") or []:
        name = target.get("name")
        rendered.append(merge(target, wanted.pop(name)) if name in wanted else target)
    if wanted:
        raise ValueError(
            f"override names targets that runbooks/targets.yaml lacks: {', '.join(sorted(wanted))}"
        )
    out["targets"] = rendered
    return out


def render(source: Path, override_file: Path, out: Path) -> Path:
    """Copy ``source`` (the runbooks directory) to ``out`` with the override merged into targets.yaml."""
    targets = yaml.safe_load((source / "targets.yaml").read_text(encoding="utf-8"))
    override = yaml.safe_load(override_file.read_text(encoding="utf-8")) or {}
    text = HEADER + yaml.safe_dump(render_targets(targets, override), sort_keys=False, allow_unicode=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built next to the destination and swapped in, so a reader never sees half a directory.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it 0700
        shutil.copytree(source, staging, dirs_exist_ok=True)
        (staging / "targets.yaml").write_text(text, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "targets.yaml"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    path = render(Path(argv[0]), Path(argv[1]), Path(argv[2]))
    print(f"rendered {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
