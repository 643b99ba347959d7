"""The local stack's secrets: created once, kept in an untracked 0600 file, never printed or logged."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from dotenv import dotenv_values

# name -> generator. JWT secret: 64 random bytes url-safe-encoded (86 chars), above Airflow's 64-byte minimum.
_GENERATED: dict[str, Callable[[], str]] = {
    "TRIAGE24_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
    "AIRFLOW__API_AUTH__JWT_SECRET": lambda: secrets.token_urlsafe(64),
    "AIRFLOW__API__SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "TRIAGE24_WEBHOOK_TOKEN": lambda: secrets.token_urlsafe(32),
    # Prometheus reads Triage24's own metrics with it (a token that cannot post alerts).
    "TRIAGE24_METRICS_TOKEN": lambda: secrets.token_urlsafe(32),
    "TRIAGE24_TESTBED_ADMIN_TOKEN": lambda: secrets.token_urlsafe(32),
    "TRIAGE24_AUDIT_KEY": lambda: secrets.token_urlsafe(32),
}

SECRET_NAMES = frozenset(_GENERATED)


def ensure_secrets(path: Path) -> dict[str, str]:
    """Read the secrets file, adding any missing entry; existing values are never changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    current: dict[str, str] = {}
    if path.exists():
        current = {k: v for k, v in dotenv_values(path).items() if v is not None}
    missing = {name: gen() for name, gen in _GENERATED.items() if not current.get(name)}
    if missing:
        current.update(missing)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# Triage24 local stack secrets. Untracked; keep it that way.\n")
            for name, value in current.items():
                fh.write(f"{name}={value}\n")
        os.replace(tmp, path)
    os.chmod(path, 0o600)
    return current
