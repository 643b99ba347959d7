"""The audit key: signs bundles and keys the PII hashes; held in memory only, never printed or stored.

Where it comes from is the caller's business: the CLI reads ``TRIAGE24_AUDIT_KEY``
(:func:`audit_key_from_env`), the DAG reads an Airflow Connection and passes its secret to
:func:`audit_key` (a plain function, so this library stays free of Airflow). Either way the secret
is wrapped at once in :class:`AuditKey`, whose ``repr`` shows only a key id and which refuses to be
pickled, so it cannot leak into a log line, an XCom or a result file by accident.

One key serves two purposes, separated by derivation (HMAC of a purpose label): the bundle
signature and the PII hashing key (:meth:`AuditKey.derive`), so a PII hash can never be replayed
as a signature or the other way round.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import NoReturn

KEY_ENV = "TRIAGE24_AUDIT_KEY"
MIN_KEY_BYTES = 16
_GENERATE = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"


class AuditKeyError(ValueError):
    """No usable audit key; the message says where it was looked for and how to make one."""


class AuditKey:
    """An HMAC-SHA256 key for the audit bundle."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str | bytes, *, source: str = "the audit key") -> None:
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(raw.strip()) < MIN_KEY_BYTES:
            raise AuditKeyError(
                f"{source}: the audit key must be at least {MIN_KEY_BYTES} bytes (got {len(raw.strip())}); "
                + _GENERATE
            )
        self._secret = raw.strip()

    def sign(self, message: bytes) -> str:
        """HMAC-SHA256 of ``message`` under the signing key, hex."""
        return hmac.new(self.derive("bundle-signature"), message, hashlib.sha256).hexdigest()

    def derive(self, purpose: str) -> bytes:
        """A subkey for one purpose (``HMAC(key, "triage24.audit/" + purpose)``)."""
        return hmac.new(self._secret, f"triage24.audit/{purpose}".encode(), hashlib.sha256).digest()

    @property
    def key_id(self) -> str:
        """A short public name of the key (a derived value, not the key): tells a wrong key from a
        tampered bundle, and which key to rotate."""
        return self.derive("key-id").hex()[:16]

    def __repr__(self) -> str:
        return f"AuditKey(id={self.key_id})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("an AuditKey is never serialised (pickle, XCom): pass the secret to each task")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuditKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.key_id)


def audit_key(secret: str | None, *, source: str = "the Airflow Connection of the audit key") -> AuditKey:
    """The DAG side: the key from a secret string the caller looked up (e.g. a Connection's password).

    ``source`` names where it came from in the error (never the value)."""
    if not secret:
        raise AuditKeyError(
            f"{source} holds no audit key: set its password (or secret) to a random string of at least "
            f"{MIN_KEY_BYTES} bytes; " + _GENERATE
        )
    return AuditKey(secret, source=source)


def audit_key_from_env(environ: Mapping[str, str] | None = None) -> AuditKey:
    """The CLI side: the key from ``TRIAGE24_AUDIT_KEY``."""
    env = os.environ if environ is None else environ
    secret = env.get(KEY_ENV)
    if not secret:
        raise AuditKeyError(f"{KEY_ENV} is not set: export the audit key first ({_GENERATE})")
    return AuditKey(secret, source=KEY_ENV)
