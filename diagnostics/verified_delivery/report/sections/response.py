"""Decision and response sections of the report: the stored decisions, the actions and the recovery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diagnostics.verified_delivery.report.load import Artifact, as_dict, as_list, as_num, as_str
from diagnostics.verified_delivery.report.sections.formatting import (
    clip,
    fmt_num,
    fmt_s,
    status_of,
    value_text,
)
from diagnostics.verified_delivery.report.timeline import format_duration


def decision_view(label: str, art: Artifact, *, collapsed: bool = False) -> dict[str, Any]:
    """A stored decision: outcome, rule, reasons, risks and the trace of every rule. ``collapsed``: shown
    folded (the fast-path decision, when the full one follows it and repeats most of it)."""
    view: dict[str, Any] = {
        "label": label,
        "rel": art.rel,
        "state": art.state,
        "note": art.note(),
        "collapsed": collapsed,
        "outcome": "",
        "rule": "",
    }
    if not art.ok:
        return view
    d = art.data
    gate = as_dict(d.get("human_gate"))
    thresholds = as_dict(d.get("thresholds"))
    risk_params = as_dict(thresholds.get("risk"))
    risks = []
    for r in as_list(d.get("risks")):
        rd = as_dict(r)
        canary, stable = as_dict(rd.get("canary")), as_dict(rd.get("stable"))
        risks.append(
            {
                "channel": as_str(rd.get("channel"), "?"),
                "kind": as_str(rd.get("kind"), "?"),
                "risk": fmt_num(rd.get("risk")),
                "threshold": fmt_num(rd.get("threshold")),
                "margin": fmt_num(rd.get("margin")),
                "canary": f"{fmt_num(canary.get('failures'), 4)}/{fmt_num(canary.get('requests'), 4)}",
                "stable": f"{fmt_num(stable.get('failures'), 4)}/{fmt_num(stable.get('requests'), 4)}",
                "verdict": as_str(rd.get("verdict"), "unknown"),
                "reason": clip(as_str(rd.get("reason"))),
            }
        )
    view.update(
        {
            "outcome": as_str(d.get("outcome"), "unknown"),
            "rule": as_str(d.get("rule"), "unknown"),
            "rule_description": as_str(d.get("rule_description")),
            "summary": clip(as_str(d.get("summary"))),
            # decisions stored before gate_breach was named so called it fast_path
            "gate_breach": d.get("gate_breach", d.get("fast_path")) is True,
            "acts_without_human": d.get("acts_without_human") is True,
            "needs_human": d.get("needs_human") is True,
            "human_gate": (
                f"default {as_str(gate.get('choice'), '?')} after {fmt_s(gate.get('timeout_s'))}"
                + (", escalates" if gate.get("escalate") is True else "")
                if gate
                else ""
            ),
            "promote_to": value_text(d.get("promote_to")) if d.get("promote_to") is not None else "",
            "max_risk": fmt_num(d.get("max_risk")),
            "reasons": [clip(as_str(r)) for r in as_list(d.get("reasons"))],
            "trace": [
                {
                    "rule": as_str(as_dict(t).get("rule"), "?"),
                    "outcome": as_str(as_dict(t).get("outcome")),
                    "matched": as_dict(t).get("matched") is True,
                    "reasons": [clip(as_str(x)) for x in as_list(as_dict(t).get("reasons"))],
                }
                for t in as_list(d.get("trace"))
            ],
            "risks": risks,
            "risk_params": [{"name": k, "value": value_text(v)} for k, v in sorted(risk_params.items())],
        }
    )
    if "outcome" not in d:
        view["note"] = f"{art.rel} has no outcome"
    return view


def _state_text(value: Any) -> str:
    d = as_dict(value)
    return ", ".join(f"{k} {value_text(v)}" for k, v in sorted(d.items())) if d else value_text(value)


def action_view(name: str, art: Artifact) -> dict[str, Any]:
    """One response result: a rollback / promotion, the recovery verification, a hold, or another."""
    view: dict[str, Any] = {"name": name, "rel": art.rel, "state": art.state, "note": art.note(), "facts": []}
    if not art.ok:
        return view
    d = art.data
    view["status"] = status_of(d.get("status"))
    view["summary"] = clip(as_str(d.get("summary")))
    facts: list[dict[str, str]] = []

    def fact(label: str, value: str) -> None:
        facts.append({"name": label, "value": value})

    if (
        "outcome" in d and "method" in d
    ):  # a rollback or promotion (diagnostics.response.rollback ActionResult)
        fact("action", as_str(d.get("action"), name))
        fact("outcome", as_str(d.get("outcome")))
        fact("method", as_str(d.get("method")))
        fact("before", _state_text(d.get("before")))
        fact("after", _state_text(d.get("after")))
        fact("changed", value_text(d.get("changed")))
        fact("dry run", value_text(d.get("dry_run")))
        fact("decided by", as_str(as_dict(d.get("details")).get("decided_by"), "n/a"))
        fact("started", as_str(d.get("started_at"), "n/a"))
        fact("finished", as_str(d.get("finished_at"), "n/a"))
        if d.get("error"):
            fact("error", clip(as_str(d.get("error"))))
    elif "recovered" in d:  # the recovery verification
        facts.extend(_recovery_facts(d))
    else:
        for k, v in sorted(as_dict(d.get("details")).items()):
            fact(k, value_text(v))
    view["facts"] = facts
    return view


def _recovery_facts(d: dict[str, Any]) -> list[dict[str, str]]:
    """The recovery verification: the verdict, the samples and, not recovered, each part that stays
    bad with its value now and before the rollback (its cause: capacity, already bad, ...)."""
    good = f"{fmt_num(d.get('samples_recovered'))} good, " if "samples_recovered" in d else ""
    facts = [
        ("recovered", value_text(d.get("recovered"))),
        *([("verdict", as_str(d.get("verdict")))] if d.get("verdict") else []),
        ("time to recover", fmt_s(d.get("time_to_recover_s"))),
        ("confirmed after", fmt_s(d.get("confirmed_after_s"))),
        (
            "samples",
            f"{fmt_num(d.get('samples_total'))} taken, {good}"
            f"{fmt_num(d.get('required_consecutive'))} good in a row needed, "
            f"every {fmt_s(d.get('interval_s'))} (timeout {fmt_s(d.get('timeout_s'))})",
        ),
        ("escalate", value_text(d.get("escalate"))),
    ]
    for bad in (as_dict(b) for b in as_list(d.get("still_bad"))):
        facts.append(
            (
                f"still bad: {as_str(bad.get('part'), '?')}",
                clip(f"{as_str(bad.get('cause'), 'unknown')}: {as_str(bad.get('evidence'))}"),
            )
        )
    samples = [as_dict(s) for s in as_list(d.get("samples"))]
    if samples:
        parts = [as_dict(p) for p in as_list(samples[-1].get("parts"))]
        last = "; ".join(
            f"{as_str(p.get('name'))} {as_str(p.get('state'))}"
            + (f" ({as_str(p.get('detail'))})" if p.get("detail") else "")
            for p in parts
        )
        facts.append(("last sample", clip(last)))
    return [{"name": k, "value": v} for k, v in facts]


def _not_recovered(d: dict[str, Any]) -> str:
    """'not recovered (escalated)', with what stays bad (each with its cause) where the result names it."""
    text = "not recovered" + (" (escalated)" if d.get("escalate") is True else "")
    bad = [as_dict(b) for b in as_list(d.get("still_bad"))]
    if bad:
        text += " — " + clip("; ".join(as_str(b.get("evidence")) for b in bad), 400)
    return text


def response_headline(actions: Sequence[dict[str, Any]], arts: dict[str, Artifact]) -> dict[str, str]:
    """The action taken and the time to recover, for the top of the report."""
    taken = [a for a in actions if a.get("state") == "present" and a["name"] in ("rollback", "promote")]
    held = arts.get("hold")
    if taken:
        d = arts[taken[0]["name"]].data
        action = f"{as_str(d.get('action'), taken[0]['name'])}: {as_str(d.get('outcome'), '?')}"
    elif held is not None and held.ok:
        action = "hold: " + clip(as_str(held.data.get("summary")), 200)
    elif actions:
        action = "none applied"
    else:
        action = "none recorded"
    recovery = arts.get("recovery_verification")
    if recovery is not None and recovery.ok:
        ttr = as_num(recovery.data.get("time_to_recover_s"))
        recovered = recovery.data.get("recovered") is True
        ttr_text = format_duration(ttr) if ttr is not None and recovered else _not_recovered(recovery.data)
    elif recovery is not None and recovery.state == "malformed":
        ttr_text = "unknown: " + recovery.note()
    else:
        ttr_text = "not verified (no recovery_verification.json)"
    return {"action": action, "time_to_recover": ttr_text}
