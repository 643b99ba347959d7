"""Schema of ``runbooks/pii.yaml``: what the audit bundle does with each kind of personal data.

The bundle keeps evidence for people who were not on call (auditors, a post-mortem months later),
so it must carry no readable personal data; but "the same caller in three log lines" is often the
evidence. Each kind of PII that :mod:`diagnostics.pii` finds is therefore either

- ``mask``: replaced by the typed placeholder of :func:`diagnostics.pii.mask_pii` (``[email]``), or
- ``hash``: replaced by a keyed, salted, truncated HMAC-SHA256 of the normalised value
  (``[email:3f9a1c2b]``), so equal values stay linkable inside (and across) bundles signed with the
  same key without being readable; see :mod:`diagnostics.verified_delivery.audit.masking` for the
  construction.

Every kind must be listed: a policy that forgets a kind would otherwise silently pick a default for
data that is, by definition, sensitive.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator

from diagnostics.pii import PII_KINDS
from diagnostics.runbooks.schemas import Strict


class PiiKind(StrEnum):
    """The kinds :func:`diagnostics.pii.mask_pii_with` reports (``cn_mobile``: a Chinese mobile
    number without a country code; ``phone``: an international number with ``+``)."""

    PHONE = "phone"
    CN_MOBILE = "cn_mobile"
    ID_CARD = "id_card"
    EMAIL = "email"
    CARD = "card"
    IP = "ip"


if {k.value for k in PiiKind} != set(PII_KINDS):  # the schema and the masker must agree on the kinds
    raise ImportError(f"PiiKind must name exactly diagnostics.pii.PII_KINDS {PII_KINDS}")


class PiiAction(StrEnum):
    MASK = "mask"
    HASH = "hash"


class HashSettings(Strict):
    """How ``hash`` replacements are made; changing ``salt`` makes new bundles unlinkable to old ones."""

    salt: str = Field(
        min_length=8,
        description="mixed into the per-deployment hashing key (not a secret: the key is); rotate it "
        "to start a new linkage era",
    )
    length: int = Field(default=8, ge=8, le=64, description="hex characters of the HMAC kept")


KeepKey = Annotated[str, Field(min_length=1, max_length=128)]


class PiiPolicy(Strict):
    version: int = Field(ge=1)
    kinds: dict[PiiKind, PiiAction] = Field(description="every kind of PII -> mask or hash")
    hash: HashSettings
    keep_keys: list[KeepKey] = Field(
        default_factory=list,
        description="JSON keys whose values are structure (checksums, ids, timestamps) and are kept as "
        "they are, in addition to diagnostics.pii.DEFAULT_KEEP_KEYS",
    )

    @field_validator("kinds")
    @classmethod
    def _every_kind(cls, kinds: dict[PiiKind, PiiAction]) -> dict[PiiKind, PiiAction]:
        missing = [k.value for k in PiiKind if k not in kinds]
        if missing:
            raise ValueError(f"every kind needs an action (mask or hash); missing: {', '.join(missing)}")
        return kinds

    def action(self, kind: str) -> PiiAction:
        return self.kinds[PiiKind(kind)]

    @property
    def hashes(self) -> bool:
        """Whether any kind is hashed (then a key is needed to apply the policy)."""
        return PiiAction.HASH in self.kinds.values()
