"""Apply the PII policy of ``runbooks/pii.yaml`` to text and JSON values.

:func:`diagnostics.pii.mask_pii_with` finds the PII (the same finder as ``mask_pii``); this module
decides what replaces it, per kind:

- ``mask``: the typed placeholder, ``[email]``, ``[phone]`` (a ``cn_mobile`` is a ``[phone]`` too);
- ``hash``: ``[<placeholder>:<h>]`` with ``h`` the first ``hash.length`` hex characters of
  ``HMAC-SHA256(k, placeholder + "\\0" + normalised value)``, where the hashing key
  ``k = HMAC-SHA256(audit key derivation "pii-hash", salt)`` (see :meth:`AuditKey.derive`).
  Keyed, so nobody without the key can test a guess (a phone number has few enough values to
  enumerate; a plain hash would be readable); salted, so rotating the salt starts a new linkage era;
  truncated, so the token says "the same value as there" and nothing more. Values are normalised
  first (e-mail lower-cased, phone and card numbers reduced to digits, ID check letter upper-cased)
  so the same value written two ways links.

JSON values are walked like :func:`diagnostics.pii.mask_record` (the same keep keys, the same
``[redacted]`` for secret-looking keys, numbers that look like PII masked), with one difference:
object keys are masked too, because a bundle must carry no PII in any byte, and evidence does key
dicts by caller (``{"alice@example.com": 3}``). Keys that collide after masking get a ``#2``, ``#3``
suffix instead of overwriting each other.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diagnostics.pii import DEFAULT_KEEP_KEYS, PLACEHOLDER, SECRET_KEYS, mask_pii_with
from diagnostics.runbooks.loader import load_yaml_model
from diagnostics.runbooks.pii import PiiAction, PiiPolicy
from diagnostics.verified_delivery.audit.keys import AuditKey, AuditKeyError

POLICY_FILE = "pii.yaml"


def load_pii_policy(directory: Path | None = None, environ: Mapping[str, str] | None = None) -> PiiPolicy:
    """``runbooks/pii.yaml`` alone (the bundle needs no other runbook); RunbookError names file:line."""
    if directory is None:
        from diagnostics.config import Settings

        directory = Settings().runbooks_dir
    return load_yaml_model(directory / POLICY_FILE, PiiPolicy, environ)


def _normalise(kind: str, value: str) -> str:
    if kind == "email":
        return value.lower()
    if kind in ("phone", "cn_mobile", "card"):
        return "".join(c for c in value if c.isdigit())
    if kind == "id_card":
        return value.upper()
    return value


class PiiMasker:
    """The policy bound to a key: ``text()`` for strings, ``value()`` for JSON-like values."""

    def __init__(self, policy: PiiPolicy, key: AuditKey | None) -> None:
        if policy.hashes and key is None:
            hashed = ", ".join(k.value for k, a in policy.kinds.items() if a is PiiAction.HASH)
            raise AuditKeyError(
                f"pii.yaml hashes {hashed}: hashing needs the audit key; pass one, or set those kinds to mask"
            )
        self.policy = policy
        self._hash_key = (
            hmac.new(key.derive("pii-hash"), policy.hash.salt.encode("utf-8"), hashlib.sha256).digest()
            if key is not None
            else b""
        )
        self.keep_keys = DEFAULT_KEEP_KEYS | frozenset(policy.keep_keys)

    def token(self, kind: str, value: str) -> str:
        """What replaces one PII value of ``kind`` (a kind of :data:`diagnostics.pii.PII_KINDS`)."""
        label = PLACEHOLDER[kind]
        if self.policy.action(kind) is PiiAction.MASK:
            return f"[{label}]"
        message = f"{label}\0{_normalise(kind, value)}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._hash_key, message, hashlib.sha256).hexdigest()
        return f"[{label}:{digest[: self.policy.hash.length]}]"

    def text(self, text: str) -> str:
        return mask_pii_with(text, self.token)

    def value(self, value: Any) -> Any:
        """A masked copy of a JSON-like value; the input is not modified."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            text = str(value)
            masked = self.text(text)
            return value if masked == text else masked  # a phone or card stored as a JSON number
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = str(k)
                if key.lower() in SECRET_KEYS:
                    item: Any = "[redacted]"
                elif key in self.keep_keys:
                    item = v
                else:
                    item = self.value(v)
                name = self.text(key)
                if name in out:
                    n = 2
                    while f"{name}#{n}" in out:
                        n += 1
                    name = f"{name}#{n}"
                out[name] = item
            return out
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def apply_pii_policy(value: Any, policy: PiiPolicy, key: AuditKey | None) -> Any:
    """``value`` (a string or a JSON-like value) masked per ``policy``; one-shot form of PiiMasker."""
    return PiiMasker(policy, key).value(value)
