"""The audit bundle: PII-masked evidence, a decision snapshot, a manifest and a signed hash chain.

Entry points (the DAG and the CLI call these; no Airflow here):

- :func:`seal_incident` (``incident_id, key``): bundle an incident and append it to the chain;
- :func:`build_bundle`: the bundle alone, into a folder of the caller's choosing;
- :func:`verify_bundle` / :func:`verify_chain`: every modified, missing or added file, bad digest,
  bad signature and chain break, as typed results;
- :func:`audit_key` (DAG: the secret of a Connection) / :func:`audit_key_from_env` (CLI:
  ``TRIAGE24_AUDIT_KEY``): the key, wrapped so it is never printed or stored;
- :func:`apply_pii_policy` / :class:`PiiMasker`: ``runbooks/pii.yaml`` applied to text and JSON.
"""

from diagnostics.verified_delivery.audit.bundle import AuditError, BundleInfo, build_bundle, decision_snapshot
from diagnostics.verified_delivery.audit.canonical import canonical_json
from diagnostics.verified_delivery.audit.chain import ChainEntry, seal_incident
from diagnostics.verified_delivery.audit.keys import (
    KEY_ENV,
    AuditKey,
    AuditKeyError,
    audit_key,
    audit_key_from_env,
)
from diagnostics.verified_delivery.audit.masking import PiiMasker, apply_pii_policy, load_pii_policy
from diagnostics.verified_delivery.audit.verify import (
    AuditProblem,
    BundleVerification,
    ChainVerification,
    ProblemKind,
    verify_bundle,
    verify_chain,
)

__all__ = [
    "KEY_ENV",
    "AuditError",
    "AuditKey",
    "AuditKeyError",
    "AuditProblem",
    "BundleInfo",
    "BundleVerification",
    "ChainEntry",
    "ChainVerification",
    "PiiMasker",
    "ProblemKind",
    "apply_pii_policy",
    "audit_key",
    "audit_key_from_env",
    "build_bundle",
    "canonical_json",
    "decision_snapshot",
    "load_pii_policy",
    "seal_incident",
    "verify_bundle",
    "verify_chain",
]
