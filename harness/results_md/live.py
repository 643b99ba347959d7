"""Specs of the benchmarks on the real local stack: ``stack``, ``testbed``, ``intake``, ``phase1``,
``rollback``, ``multimodal``. What each measures in detail is its script's docstring
(``benchmarks/<name>.py``); the text here only says what the tables are."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from harness.results_md.model import (
    Data,
    Figures,
    Section,
    code,
    fig,
    md_table,
    num,
    prose,
    text,
)


def _runs(d: Data) -> list[dict[str, Any]]:
    runs = d.get("runs")
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


# --- stack ---


def _stack_runs(d: Data) -> str:
    n = len(_runs(d))
    cols = ("median of the runs", *(f"run {i + 1}" for i in range(n)))

    def row(label: str, key: str, digits: int, **kw: Any) -> Any:
        return fig(label, key, *(f"runs/{i}/{key}" for i in range(n)), fmt=num(digits), **kw)

    return Figures(
        (
            row("cold start (s)", "cold_start_s", 1, bold=True),
            row("RSS, sum over the stack's processes (MiB)", "rss_mib", 0, goal="goal_rss_mib", bold=True),
            row("PSS, sum over the stack's processes (MiB)", "pss_mib", 0, bold=True),
            fig("processes", "", *(f"runs/{i}/processes" for i in range(n)), fmt=num(0)),
        ),
        columns=cols,
    )(d)


def _median_run(d: Data) -> tuple[int, dict[str, Any]] | None:
    runs = _runs(d)
    for i, r in enumerate(runs):
        if r.get("rss_mib") == d.raw.get("rss_mib"):
            return i, r
    return (0, runs[0]) if runs else None


def _stack_processes(d: Data) -> str:
    found = _median_run(d)
    if found is None:
        return ""
    i, run = found
    per = run.get("per_process_rss_mib") or {}
    rows = [[code(name.split(" ", 1)[-1].strip()), f"{rss:.1f}"] for name, rss in per.items()]
    intro = f"Per process, run {i + 1} (the run with the median RSS), as `per_process_rss_mib` records them:"
    return intro + "\n\n" + md_table(["process (command line, as recorded)", "RSS (MiB)"], rows, right=[1])


def _idle_workers(d: Data) -> str:
    sizes = [
        float(v)
        for r in _runs(d)
        for k, v in (r.get("per_process_rss_mib") or {}).items()
        if "LocalExecutor: <idle>" in k
    ]
    counts = {sum("LocalExecutor: <idle>" in k for k in r.get("per_process_rss_mib") or {}) for r in _runs(d)}
    if not sizes:
        return ""
    each_run = "/".join(str(c) for c in sorted(counts))
    return (
        f"Idle LocalExecutor workers (one per task slot; `TRIAGE24_AIRFLOW_PARALLELISM` sets how many): "
        f"{each_run} per run, {min(sizes):.1f}–{max(sizes):.1f} MiB RSS each (computed from "
        "`per_process_rss_mib`)."
    )


STACK = Section(
    "stack",
    "Local stack: cold start and memory",
    about=(
        "Cold start: an empty state directory → `airflow db migrate` → every component healthy "
        "(Prometheus, Alertmanager, the Airflow api-server, scheduler, dag-processor and triggerer). "
        "Memory is read once a `triage24_selfcheck` run has succeeded, over every process of the stack; "
        "the RSS sum counts the pages the forked Airflow processes share once per process, PSS splits "
        "them and is the better estimate of what the stack takes. With the testbed: {with_testbed:text}.",
    ),
    blocks=(_stack_runs, _idle_workers, _stack_processes),
    also=("stack_with_testbed",),
)


# --- testbed ---


def _testbed_latency(d: Data) -> str:
    latency = d.get("latency")
    if not isinstance(latency, dict):
        return ""
    rows = []
    for channel, routes in latency.items():
        row = [code(channel)]
        for route in ("direct", "via_gateway"):
            r = routes.get(route) or {}
            row += [num(1)(r.get(k)) for k in ("p50_ms", "p95_ms", "mean_ms")]
        rows.append(row)
    headers = [
        "channel",
        *(f"{route} {s} (ms)" for route in ("direct", "via gateway") for s in ("p50", "p95", "mean")),
    ]
    return md_table(headers, rows, right=range(1, 7))


def _testbed_memory(d: Data) -> str:
    memory = d.get("memory")
    if not isinstance(memory, dict):
        return ""
    rows = [[code(p), num(1)(m.get("rss_mib")), num(1)(m.get("pss_mib"))] for p, m in memory.items()]
    pss = sum(float(m.get("pss_mib") or 0) for m in memory.values())
    rows.append(
        [
            "**testbed total** (RSS: `testbed_rss_mib`; PSS: the sum)",
            num(1)(d.get("testbed_rss_mib")),
            f"{pss:.1f}",
        ]
    )
    return md_table(["process", "RSS (MiB)", "PSS (MiB)"], rows, right=[1, 2])


TESTBED = Section(
    "testbed",
    "Testbed: per-request latency per channel, and memory",
    about=(
        "Sequential golden-set requests, {requests_per_channel} per channel, straight to the stable "
        "version (`direct`) and through the gateway pinned to stable (`via_gateway`), while the local "
        "stack's own traffic generator keeps sending. Real inference on the CPU: the testbed's CLIP, "
        "all-MiniLM-L6-v2 and Whisper base. The `router` channel mixes text, image and audio requests: its "
        "tail is the requests that carry audio.",
    ),
    blocks=(_testbed_latency, _testbed_memory),
)


# --- intake ---


def _intake_storms(d: Data) -> str:
    rows = []
    every = d.get("storm_one_alert_per_delivery_all")
    for i, s in enumerate(every if isinstance(every, list) else []):
        rows.append([f"one alert per delivery, storm {i + 1}", *_storm_cells(s)])
    for key, label in (
        ("storm_one_alert_per_delivery", "one alert per delivery, the median storm"),
        ("storm_10_alerts_per_delivery", "batched (`alerts_per_delivery` alerts each)"),
    ):
        s = d.get(key)
        if isinstance(s, dict):
            rows.append([f"{label}: {s.get('sent', '–')} deliveries", *_storm_cells(s)])
    headers = ["storm", "alerts/s", "p50 ms", "p99 ms", "max ms", "lost", "duplicate runs", "runs"]
    return md_table(headers, rows, right=range(1, 8))


def _storm_cells(s: dict[str, Any]) -> list[str]:
    return [
        num(1)(s.get("alerts_per_s")),
        num(2)(s.get("p50_ms")),
        num(2)(s.get("p99_ms")),
        num(2)(s.get("max_ms")),
        text(s.get("lost")),
        text(s.get("duplicate_runs")),
        text(s.get("runs")),
    ]


def _intake_margin(d: Data) -> str:
    goal, value = d.get("goal/alerts_per_s"), d.get("alerts_per_s")
    every = d.get("storm_one_alert_per_delivery_all")
    if not isinstance(goal, int | float) or not isinstance(value, int | float) or not isinstance(every, list):
        return ""
    rates = [float(s["alerts_per_s"]) for s in every if isinstance(s, dict) and "alerts_per_s" in s]
    below = [r for r in rates if r < goal]
    return (
        f"The single-alert storm's median is {value / goal:.2f}× the goal; "
        + (
            f"{len(below)} of its {len(rates)} storms {'was' if len(below) == 1 else 'were'} below it "
            f"(slowest {min(rates):.1f} alerts/s)."
            if below
            else f"every one of its {len(rates)} storms met it."
        )
        + " (Computed from the storms above.)"
    )


def _alert_to_run(d: Data) -> str:
    samples = d.get("alert_to_run/samples_s")
    if not isinstance(samples, list) or not samples:
        return ""
    return d.fill(
        "Alertmanager fired → incident run created (an alert POSTed to Alertmanager's API, the run "
        f"looked for on Airflow's REST API), {len(samples)} samples: median "
        "**{alert_to_run/median_s:n2} s** "
        f"({min(samples):.2f}–{max(samples):.2f} s); the intake's own share (delivery received → run "
        "created) has a median of {alert_to_run/intake_create_median_ms:n1} ms. Recorded note: "
        "{alert_to_run/note}."
    )


def _intake_load(d: Data) -> str:
    parts = []
    for key, label in (
        ("storm_one_alert_per_delivery", "single-alert storm"),
        ("storm_10_alerts_per_delivery", "batched storm"),
    ):
        la = d.get(f"{key}/load_avg_before")
        if isinstance(la, list):
            parts.append(f"{label} {' / '.join(f'{x:g}' for x in la)}")
    return (
        ("load average (1/5/15 min) before the " + "; ".join(parts)) if parts else "not recorded in the file"
    )


INTAKE = Section(
    "intake",
    "Alert intake: storm throughput, latency, alert → run",
    about=(
        "Webhook deliveries POSTed on loopback to the intake of the real stack in a temporary home "
        "(the Airflow api-server with the plugin, Alertmanager, Prometheus) by a minimal asyncio client "
        "over keep-alive connections. Every delivery is journaled (a fsynced SQLite commit) before it is "
        "answered. The single-alert storm is the worst case; Alertmanager itself batches a group's "
        "alerts (the batched storm).",
    ),
    blocks=(
        Figures(
            (
                fig(
                    "alerts/s, one new alert per delivery (the median storm)",
                    "alerts_per_s",
                    goal="goal/alerts_per_s",
                    op="≥",
                    bold=True,
                ),
                fig("p50 per delivery (ms)", "p50_ms", fmt=num(2)),
                fig("p99 per delivery (ms)", "p99_ms", fmt=num(2), goal="goal/p99_ms"),
                fig("lost deliveries", "lost", fmt=num(0), goal="goal/lost", op="="),
                fig("duplicate runs", "duplicate_runs", fmt=num(0), goal="goal/duplicate_runs", op="="),
                fig("alerts/s, batched deliveries", "alerts_per_s_batched", fmt=num(0, sep=True)),
                fig(
                    "Alertmanager fired → incident run created, median (s)",
                    "alert_to_run_median_s",
                    fmt=num(2),
                ),
            )
        ),
        _intake_margin,
        _intake_storms,
        _alert_to_run,
    ),
    load=_intake_load,
)


# --- phase 1 ---


def _phase1_runs(d: Data) -> str:
    rows = []
    for r in _runs(d):
        checks = r.get("checks") or {}
        bad = ", ".join(f"{c}: {s}" for c, s in checks.items() if s != "ok") or "–"
        rows.append(
            [
                code(r.get("run_id")),
                code(r.get("first_check")),
                num(2)(r.get("first_evidence_s")),
                num(2)(r.get("phase1_complete_s")),
                text(r.get("phase_status")),
                bad,
            ]
        )
    headers = [
        "run",
        "first check",
        "first evidence (s)",
        "phase 1 complete (s)",
        "phase status",
        "checks not ok",
    ]
    return md_table(headers, rows, right=[2, 3])


def _phase1_counts(d: Data) -> str:
    runs = _runs(d)
    if not runs:
        return ""
    status = Counter(str(r.get("phase_status")) for r in runs)
    first = Counter(str(r.get("first_check")) for r in runs)
    return (
        f"Of the {len(runs)} runs: "
        + ", ".join(f"{n} ended `{s}`" for s, n in status.most_common())
        + "; the first result was "
        + ", ".join(f"`{c}` in {n}" for c, n in first.most_common())
        + ". A `degraded` phase on a healthy testbed is a real finding of the benchmark's own stack "
        "(a check's status per run is in the table)."
    )


PHASE1 = Section(
    "phase1",
    "Phase 1: alert POST → first evidence stored",
    about=(
        "Sequential incidents against the whole local stack in a temporary home on free ports (Airflow "
        "with the plugin, Prometheus, Alertmanager, the testbed with real models and steady traffic). "
        "Each is one Alertmanager-shaped webhook delivery for a new alert group of the `testbed` target, "
        "POSTed to the intake; the clock runs from the POST until the first check result exists under "
        "`<artifacts>/<run id>/golden_window/` (first evidence), and until the phase summary exists "
        "(phase 1 complete). A warm-up incident runs first and is not counted.",
    ),
    blocks=(
        Figures(
            (
                fig(
                    "alert POST → first evidence stored, median (s)",
                    "first_evidence_median_s",
                    fmt=num(2),
                    range="first_evidence_range_s",
                    goal="goal/first_evidence_median_s",
                    bold=True,
                ),
                fig(
                    "alert POST → phase 1 complete, median (s)",
                    "phase1_complete_median_s",
                    fmt=num(2),
                    range="phase1_complete_range_s",
                    bold=True,
                ),
            )
        ),
        _phase1_counts,
        _phase1_runs,
    ),
)


# --- rollback ---


def _rollback_runs(d: Data) -> str:
    rows = []
    for r in _runs(d):
        weight = r.get("weight")
        rows.append(
            [
                code(r.get("run_id")),
                code(r.get("rule")),
                " → ".join(f"{w:g}" for w in weight) if isinstance(weight, list) else "–",
                num(2)(r.get("rollback_applied_s")),
                num(2)(r.get("recovery_verified_s")),
                num(2)(r.get("time_to_recover_s")),
                text(r.get("recovered")),
            ]
        )
    headers = [
        "run",
        "rule",
        "canary weight",
        "rollback applied (s)",
        "recovery verified (s)",
        "time to recover (s)",
        "recovered",
    ]
    return md_table(headers, rows, right=[3, 4, 5])


def _rollback_rules(d: Data) -> str:
    runs = _runs(d)
    if not runs:
        return ""
    rules = Counter(str(r.get("rule")) for r in runs)
    waits = [float(r.get("time_to_recover_s") or 0) for r in runs]
    return (
        "Decided by: "
        + ", ".join(f"`{rule}` in {n} of {len(runs)}" for rule, n in rules.most_common())
        + ". "
        f"`time_to_recover_s` (how long verification waited for the stable version to be back under its "
        f"gates): median {statistics.median(waits):.2f} s, longest {max(waits):.1f} s."
    )


ROLLBACK = Section(
    "rollback",
    "Rollback on the real stack: alert POST → rollback applied → recovery verified",
    about=(
        "The whole local stack in a temporary home on free ports (Airflow with the LocalExecutor, "
        "Prometheus, Alertmanager, the testbed with real models and traffic). Each run breaks the canary's "
        "image model (`model_not_loaded`), sends the canary a share of the traffic at the gateway, and "
        "POSTs one webhook delivery for a new alert group to the intake; the rollback is checked against "
        "the gateway itself. The benchmark silences the stack's own testbed alerts in Alertmanager "
        "(Prometheus' `ModelNotLoaded` rule would otherwise open a second, real incident that rolls the "
        "canary back first). Recorded condition: {note}.",
    ),
    blocks=(
        Figures(
            (
                fig(
                    "alert POST → rollback applied (`response/rollback.json`: canary weight `0`), median (s)",
                    "rollback_applied_median_s",
                    fmt=num(2),
                    range="rollback_applied_range_s",
                    goal="goal/rollback_applied_median_s",
                    bold=True,
                ),
                fig(
                    "alert POST → recovery verified, median (s)",
                    "recovery_verified_median_s",
                    fmt=num(2),
                    range="recovery_verified_range_s",
                    bold=True,
                ),
            )
        ),
        _rollback_rules,
        _rollback_runs,
    ),
)


# --- multimodal ---

MULTIMODAL = Section(
    "multimodal",
    "Phase 2 multimodal: CLIP golden suite and Whisper real-time factor",
    about=(
        "The phase-2 checks' reference models on device `{device}`. CLIP: the reference `{clip_model}` "
        "encodes the {clip_pairs} golden image–caption pairs and the suite's figures (margin, "
        "`Recall@1`/`@5` both ways) are computed, warm (median of the runs) and cold (model load "
        "included). Whisper: the reference (greedy, word timestamps) transcribes the {whisper_clips} "
        "golden clips fresh; the real-time factor is seconds per second of audio, above one is slower than "
        "real time.",
    ),
    blocks=(
        Figures(
            (
                fig(
                    "CLIP golden suite, warm, median (s)",
                    "clip_suite_median_s",
                    fmt=num(3),
                    range="clip_suite_range_s",
                    bold=True,
                ),
                fig("CLIP golden suite, warm (`clip_suite_s`, s)", "clip_suite_s", fmt=num(4)),
                fig("CLIP golden suite, cold: model load included (s)", "clip_suite_cold_s", fmt=num(2)),
                fig("CLIP golden margin", "clip_margin", fmt=num(4)),
                fig(
                    "`clip_consistency` of one version over HTTP: service embeddings + reference + "
                    "figures (s)",
                    "clip_check_with_service_s",
                    fmt=num(2),
                ),
                fig("Whisper base load (s)", "whisper_load_s", fmt=num(2)),
                fig(
                    "Whisper real-time factor per clip, median over {whisper_clips} clips",
                    "whisper_rtf",
                    fmt=num(2),
                    range="whisper_rtf_range",
                    bold=True,
                ),
                fig(
                    "Whisper real-time factor over all {whisper_audio_s:n1} s of audio",
                    "whisper_total_rtf",
                    fmt=num(2),
                ),
            )
        ),
        prose(
            "Phase 2's `asr_check` caches the reference transcripts on disk "
            "(`<model_dir>/reference-cache/`), so only a machine's first incident pays the reference "
            "transcription; the service's own transcriptions (the thing under test) are measured each time."
        ),
    ),
)

SPECS = (STACK, TESTBED, INTAKE, PHASE1, ROLLBACK, MULTIMODAL)
__all__ = ["SPECS"]
