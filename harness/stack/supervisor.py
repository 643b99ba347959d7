"""The local stack's process-group leader.

``triage24 stack up`` starts this module in a new session; it starts every component as its child,
so the whole stack is one process group. Each child gets ``TRIAGE24_STACK_ID`` in its environment,
inherited by everything it forks, so ``stack down`` can find stragglers that left the group.
SIGTERM stops the children (SIGTERM, then SIGKILL after a grace period) and then the leader.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GRACE_S = 25.0


def clean_environ() -> dict[str, str]:
    """The caller's environment without its Airflow settings: the stack's own config must win
    (a caller such as a test session may carry AIRFLOW__* values of its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}


def main(spec_path: str) -> int:
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    run_dir = Path(spec["run_dir"])
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    children: dict[str, subprocess.Popen[bytes]] = {}
    for comp in spec["components"]:
        log = Path(comp["log_file"])
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**clean_environ(), **comp["env"], "TRIAGE24_STACK_ID": spec["stack_id"]}
        with log.open("ab") as fh:
            children[comp["name"]] = subprocess.Popen(
                comp["argv"],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=spec["cwd"],
            )
        (run_dir / f"{comp['name']}.pid").write_text(str(children[comp["name"]].pid), encoding="utf-8")
        (run_dir / f"{comp['name']}.exit").unlink(missing_ok=True)

    while not stopping:
        for name, proc in children.items():
            code = proc.poll()
            exit_file = run_dir / f"{name}.exit"
            if code is not None and not exit_file.exists():
                exit_file.write_text(str(code), encoding="utf-8")
        if children and all(p.poll() is not None for p in children.values()):
            break
        time.sleep(0.5)

    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(p.poll() is None for p in children.values()):
        time.sleep(0.2)
    # Whatever is left in the group (children that ignored SIGTERM, their forks) gets SIGKILL.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for proc in children.values():
        if proc.poll() is None:
            proc.kill()
    os.killpg(os.getpgid(0), signal.SIGTERM)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
