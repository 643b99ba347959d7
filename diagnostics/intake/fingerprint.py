"""Alertmanager's alert fingerprint, for senders that leave it out.

Alertmanager added ``fingerprint`` to the webhook payload in 0.19; older releases and several
bridges send v4 payloads without it. The fingerprint is a pure function of the alert's labels
(Prometheus' ``model.LabelSet.Fingerprint``, which Alertmanager and Grafana-managed alerting
print), so computing it here gives the value a newer Alertmanager would have sent: deduplication
works, and keeps working across an upgrade of the sender.

The algorithm (prometheus/common ``model/signature.go``, ``labelSetToFingerprint``): FNV-1a 64 over
the label pairs sorted by name, each name and each value followed by the separator byte 0xff;
an empty label set hashes to the FNV offset basis. Alertmanager prints it as 16 hex digits.
"""

from __future__ import annotations

from collections.abc import Mapping

FNV64_OFFSET = 14695981039346656037
FNV64_PRIME = 1099511628211
SEPARATOR = 0xFF
_MASK = (1 << 64) - 1


def label_set_fingerprint(labels: Mapping[str, str]) -> int:
    """The 64-bit fingerprint of a label set, as Prometheus computes it."""
    h = FNV64_OFFSET
    # Go sorts the names by their bytes; for valid Unicode, sorting by code point is the same order.
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8"):
                h = ((h ^ byte) * FNV64_PRIME) & _MASK
            h = ((h ^ SEPARATOR) * FNV64_PRIME) & _MASK
    return h


def alert_fingerprint(labels: Mapping[str, str]) -> str:
    """The fingerprint Alertmanager sends for an alert with these labels (``%016x``)."""
    return f"{label_set_fingerprint(labels):016x}"
