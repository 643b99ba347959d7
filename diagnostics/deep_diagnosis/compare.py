"""Is the canary worse than stable, by a phase-2 check's own measure? From a stored result.

A finding both versions share (an upstream change, a shared dependency, a data shift) is no evidence
against the canary. Where both versions fail a check, only a difference beyond the check's own noise
or tolerance makes the canary the worse one; each comparison returns ``(canary_worse, measure)``:

- ``router_dispatch``: misrouted probes, canary vs stable, Fisher's exact one-sided p below
  ``1 - confidence``;
- ``clip_consistency``: the canary's image-text margin below stable's by more than
  ``max_margin_drop`` (the fall the check tolerates against its baseline), or more broken pairs
  (Fisher, p < 0.05);
- ``asr_check``: the canary's mean WER/CER above stable's by more than ``max_mean_increase``, or more
  failing clips (Fisher, p < 0.05);
- ``alignment_quality``: a metric out of its band on the canary and in it on stable;
- ``embedding_alignment``: the canary's dimensions differ from stable's and stable's agree;
- ``temporal_alignment``: the canary's clock or word offset further off than stable's by more than the
  check's tolerance;
- ``drift``: a channel's level on the canary above stable's.

``canary_worse`` is None when the result does not hold both versions' figures (a crash, an
unmeasured version): the decision then has no comparison, and a failing canary is not shown worse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diagnostics.stats.bounds import share_greater_p

Figures = dict[str, Any]
Comparison = tuple[bool | None, str]
ALPHA = 0.05  # where the check states no confidence of its own


def _num(figures: Figures, key: str) -> float | None:
    value = figures.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _router(c: Figures, s: Figures, th: Figures) -> Comparison:
    kc, nc = int(_num(c, "misrouted") or 0), int(_num(c, "answered") or 0)
    ks, ns = int(_num(s, "misrouted") or 0), int(_num(s, "answered") or 0)
    alpha = 1 - float(th.get("confidence", 1 - ALPHA))
    p = share_greater_p(kc, nc, ks, ns)
    return p < alpha, (
        f"misrouted: canary {kc}/{nc}, stable {ks}/{ns}; Fisher one-sided p = {p:.3g} "
        f"({'<' if p < alpha else '>='} {alpha:g})"
    )


def _clip(c: Figures, s: Figures, th: Figures) -> Comparison:
    mc, ms = _num(c, "margin"), _num(s, "margin")
    nc, ns = int(_num(c, "samples") or 0), int(_num(s, "samples") or 0)
    bc, bs = len(c.get("broken_samples") or []), len(s.get("broken_samples") or [])
    p = share_greater_p(bc, nc, bs, ns)
    drop = float(th.get("max_margin_drop", 0.2))
    fell = mc is not None and ms is not None and ms - mc > drop
    margins = (
        f"margin canary {mc:.3f}, stable {ms:.3f} (tolerated fall {drop:g})"
        if mc is not None and ms is not None
        else "margin not measured on both"
    )
    return (
        fell or p < ALPHA,
        f"{margins}; broken pairs canary {bc}/{nc}, stable {bs}/{ns}, Fisher p = {p:.3g}",
    )


def _asr(c: Figures, s: Figures, th: Figures) -> Comparison:
    ec, es = _num(c, "mean_error_rate"), _num(s, "mean_error_rate")
    nc, ns = int(_num(c, "clips") or 0), int(_num(s, "clips") or 0)
    fc, fs = len(c.get("failing_clips") or []), len(s.get("failing_clips") or [])
    p = share_greater_p(fc, nc, fs, ns)
    rise = float(th.get("max_mean_increase", 0.1))
    rose = ec is not None and es is not None and ec - es > rise
    means = (
        f"mean WER/CER canary {ec:.3f}, stable {es:.3f} (tolerated rise {rise:g})"
        if ec is not None and es is not None
        else "mean WER/CER not measured on both"
    )
    return rose or p < ALPHA, f"{means}; failing clips canary {fc}/{nc}, stable {fs}/{ns}, Fisher p = {p:.3g}"


def _quality(c: Figures, s: Figures, th: Figures) -> Comparison:
    worse: list[str] = []
    shown: list[str] = []
    for name in ("modality_f1", "cross_modal_bleu", "visual_textual_cer"):
        vc, vs, band = _num(c, name), _num(s, name), c.get(f"{name}_band")
        if vc is None or vs is None or not isinstance(band, list) or len(band) != 2:
            continue
        low, high = float(band[0]), float(band[1])
        shown.append(f"{name} canary {vc:.3f}, stable {vs:.3f} [{low:g}, {high:g}]")
        if not low <= vc <= high and low <= vs <= high:
            worse.append(name)
    if not shown:
        return None, "no metric measured on both"
    head = (
        f"out of band on the canary only: {', '.join(worse)}"
        if worse
        else "none out of band on the canary only"
    )
    return bool(worse), f"{head}; " + "; ".join(shown)


def _dims(c: Figures, s: Figures, th: Figures) -> Comparison:
    dc = (c.get("image_dim"), c.get("text_dim"))
    ds = (s.get("image_dim"), s.get("text_dim"))
    if None in dc or None in ds:
        return None, "dimensions not measured on both"
    ref = s.get("reference_dim")
    stable_agrees = ds[0] == ds[1] and (ref is None or ds[0] == ref)
    worse = dc != ds and stable_agrees
    return worse, f"image/text dimensions canary {dc[0]}/{dc[1]}, stable {ds[0]}/{ds[1]}" + (
        f", reference {ref}" if ref is not None else ""
    )


def _median(figures: Figures, key: str) -> float | None:
    dist = figures.get(key)
    return _num(dist, "median") if isinstance(dist, dict) else None


def _timing(c: Figures, s: Figures, th: Figures) -> Comparison:
    worse = False
    shown: list[str] = []
    for key, tol_key, default in (
        ("clock_offset_ms", "max_clock_offset_ms", 500.0),
        ("word_offset_ms", "max_word_offset_ms", 300.0),
    ):
        mc, ms = _median(c, key), _median(s, key)
        if mc is None or ms is None:
            continue
        tol = float(th.get(tol_key, default))
        worse = worse or abs(mc) - abs(ms) > tol
        shown.append(f"{key} median canary {mc:+.0f}, stable {ms:+.0f} (tolerance {tol:g})")
    if not shown:
        return None, "no offset measured on both"
    return worse, "; ".join(shown)


def _drift(c: Figures, s: Figures, th: Figures) -> Comparison:
    lc, ls = c.get("levels") or {}, s.get("levels") or {}
    both = sorted(ch for ch in lc if lc.get(ch) is not None and ls.get(ch) is not None)
    if not both:
        return None, "no channel's drift measured on both"
    worse = [ch for ch in both if int(lc[ch]) > int(ls[ch])]
    return bool(worse), "drift level canary vs stable: " + ", ".join(
        f"{ch} {lc[ch]} vs {ls[ch]}" for ch in both
    )


COMPARISONS: dict[str, Callable[[Figures, Figures, Figures], Comparison]] = {
    "router_dispatch": _router,
    "clip_consistency": _clip,
    "asr_check": _asr,
    "alignment_quality": _quality,
    "embedding_alignment": _dims,
    "temporal_alignment": _timing,
    "drift": _drift,
}


def compare_versions(name: str, result: dict[str, Any]) -> Comparison:
    """``(canary_worse, measure)`` of a stored phase-2 result (rules in the module docstring)."""
    versions = result.get("versions") or {}
    canary, stable = versions.get("canary") or {}, versions.get("stable") or {}
    compare = COMPARISONS.get(name)
    if compare is None:
        return None, f"{name}: no measure to compare the versions by"
    if not canary.get("figures") or not stable.get("figures"):
        return None, "not measured on both versions"
    return compare(canary["figures"], stable["figures"], result.get("thresholds") or {})
