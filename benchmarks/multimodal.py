"""Phase-2 multimodal benchmark: the CLIP golden suite's wall time and Whisper's real-time factor.

    .venv/bin/python benchmarks/multimodal.py [--runs 5] [--service http://127.0.0.1:8101]

- **clip_suite_s**: the reference CLIP (targets.yaml ``reference.clip``, on ``cuda`` when torch sees a
  GPU, else the CPU) encodes the 64 golden images and their 64 captions and the suite's figures
  (margin, Recall@1/@5 both ways) are computed — median of ``--runs`` warm runs; the first, cold run
  (model load included) is reported separately. With ``--service``, the whole ``clip_consistency``
  measurement of that version (HTTP embeddings + reference + figures) is timed too.
- **whisper_rtf**: reference Whisper (targets.yaml ``reference.whisper``, greedy, word timestamps)
  seconds per second of audio over the golden clips, transcribed fresh (the on-disk transcript cache is
  bypassed); median over clips of per-clip RTF, plus the total.

Writes ``benchmarks/results/multimodal.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.phase1 import machine, median_range
from diagnostics.deep_diagnosis.base import DeepContext
from diagnostics.deep_diagnosis.clip_consistency import consistency_figures
from diagnostics.runbooks import load_runbooks

RESULTS = Path(__file__).resolve().parent / "results" / "multimodal.json"


def clip_suite(ctx: DeepContext) -> dict[str, Any]:
    golden = ctx.golden()
    enc = ctx.encoders()
    images = [i.file.read_bytes() for i in golden.images]
    captions = [i.caption for i in golden.images]

    def once() -> tuple[float, dict[str, Any]]:
        t = time.perf_counter()
        img, txt = enc.encode_images(images), enc.encode_texts(captions)
        figures = consistency_figures(img, txt, captions)
        return time.perf_counter() - t, figures

    cold, figures = once()
    return {"cold_s": cold, "figures": figures, "pairs": len(images), "device": enc.device, "once": once}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--target", default="testbed")
    ap.add_argument("--service", help="also time the clip_consistency measurement of this version URL")
    args = ap.parse_args()

    books = load_runbooks()
    target = books.targets.get(args.target)
    ctx = DeepContext(books=books, target=target)
    suite = clip_suite(ctx)
    warm = [suite["once"]()[0] for _ in range(args.runs)]
    out: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(),
        "device": suite["device"],
        "clip_model": target.reference.clip.model if target.reference.clip else None,
        "clip_pairs": suite["pairs"],
        "clip_suite_s": round(statistics.median(warm), 4),
        "clip_suite_cold_s": round(suite["cold_s"], 3),
        **median_range("clip_suite", warm),
        "clip_margin": round(float(suite["figures"]["margin"]), 4),
    }
    print(f"CLIP golden suite ({suite['pairs']} pairs, {suite['device']}): {out['clip_suite_s']} s warm, "
          f"{out['clip_suite_cold_s']} s cold")  # fmt: skip

    if args.service:
        from diagnostics.deep_diagnosis import clip_consistency
        from diagnostics.runbooks.schemas import Endpoint

        one = target.model_copy(
            update={"versions": {**target.versions, "stable": Endpoint(base_url=args.service)}}
        )  # type: ignore[arg-type]
        sctx = DeepContext(books=books, target=one, _encoders=ctx.encoders())
        th = clip_consistency.Thresholds()
        times = []
        for _ in range(args.runs):
            sctx._memo.clear()
            t = time.perf_counter()
            clip_consistency.measure(sctx, "stable", th)
            times.append(time.perf_counter() - t)
        out["clip_check_with_service_s"] = round(statistics.median(times), 4)
        print(f"clip_consistency measurement via {args.service}: {out['clip_check_with_service_s']} s")

    enc = ctx.encoders()
    t = time.perf_counter()
    enc.whisper()
    out["whisper_load_s"] = round(time.perf_counter() - t, 3)
    rtfs, total_audio, total_s = [], 0.0, 0.0
    for clip in ctx.golden().audio:
        tr = enc.transcribe(clip.file, clip.language, use_cache=False)
        rtfs.append(tr.seconds / clip.duration_s)
        total_audio += clip.duration_s
        total_s += tr.seconds
        print(f"  {clip.id}: {tr.seconds:.2f} s for {clip.duration_s:.2f} s of audio -> {tr.text!r}")
    out.update(
        {
            "whisper_clips": len(rtfs),
            "whisper_rtf": round(statistics.median(rtfs), 4),
            "whisper_rtf_range": [round(min(rtfs), 4), round(max(rtfs), 4)],
            "whisper_total_rtf": round(total_s / total_audio, 4),
            "whisper_audio_s": round(total_audio, 2),
        }
    )
    print(f"Whisper RTF median {out['whisper_rtf']} (total {out['whisper_total_rtf']}) on {enc.device}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
