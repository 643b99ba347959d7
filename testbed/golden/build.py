"""Build the golden set in ``testbed/golden/data/`` (deterministic).

    python -m testbed.golden.build            # (re)generate images, audio, manifest.json
    python -m testbed.golden.build --check    # transcribe the audio with whisper base, print WER/CER,
                                              # write data/whisper-base-check.json

Contents:

- ``images/``: 64 captioned shape images from the CLIP domain (``testbed.clip.shapes``, stream
  ``"golden"``, seed :data:`GOLDEN_SEED`), balanced over the 24 colour x shape classes;
- ``audio/``: scripted customer queries spoken by espeak-ng (English voice ``en``, Mandarin
  ``cmn-latn-pinyin``; see :data:`ESPEAK_ARGS`), 16 kHz mono 16-bit WAV (resampled by ffmpeg with
  ``-bitexact``);
- text queries with intents (in the manifest only);
- ``manifest.json``: relative paths, captions/attributes, expected text, language, intent, the
  tolerated WER (English) / CER (Chinese) for whisper base, and SHA-256 of every file (images also
  get a hash of the decoded RGB pixels, which does not depend on the PNG encoder).

Needs the ``espeak-ng`` and ``ffmpeg`` binaries (Debian packages) for the audio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

from testbed.clip import shapes
from testbed.golden import INTENTS

DATA_DIR = Path(__file__).resolve().parent / "data"
GOLDEN_SEED = 2024
N_IMAGES = 64
SAMPLE_RATE = 16_000
MANIFEST_VERSION = 1
# espeak-ng settings per language (chosen by transcribing with whisper base, see the report in
# --check): English with the default "en" voice at 150 wpm gave exact transcripts for every query
# (en-us missed "an item", "subscription", "did not"); Mandarin needs the "cmn-latn-pinyin" voice
# (the "cmn" voice reads its pinyin as English words with tone digits), slower, with a 40 ms word gap.
ESPEAK_ARGS: dict[str, tuple[str, ...]] = {
    "en": ("-v", "en", "-s", "150"),
    "zh": ("-v", "cmn-latn-pinyin", "-s", "120", "-g", "4"),
}

# (id, language, text, intent, tolerated error rate). English: exact (normalised WER 0).
# Mandarin: whisper base recognises espeak-ng Mandarin poorly; only the clips whose transcripts keep
# the sentence's structure are kept, each with its measured CER plus a margin (see --check).
SPEECH: tuple[tuple[str, str, str, str, float], ...] = (
    ("en-stock", "en", "is this product in stock?", "stock_inquiry", 0.0),
    ("en-return", "en", "how do I return an item?", "return_request", 0.0),
    ("en-where-order", "en", "where is my order?", "order_status", 0.0),
    ("en-cancel", "en", "I want to cancel my subscription", "cancellation", 0.0),
    ("en-refund", "en", "I would like a refund for this order", "refund_request", 0.0),
    ("en-payment", "en", "my payment did not go through", "payment_issue", 0.0),
    ("en-shipping", "en", "how long does shipping take?", "shipping_question", 0.0),
    ("en-human", "en", "I want to talk to a person", "human_agent", 0.0),
    ("zh-stock", "zh", "这个产品有货吗？", "stock_inquiry", 0.5),
    ("zh-where-order", "zh", "我的订单在哪里？", "order_status", 0.5),
    ("zh-human", "zh", "我要找人工客服。", "human_agent", 0.3),
)

TEXTS: tuple[tuple[str, str, str, str], ...] = (
    ("txt-stock-1", "en", "Do you still have the blue running shoes in size 42?", "stock_inquiry"),
    ("txt-stock-2", "en", "When will the red backpack be back in stock?", "stock_inquiry"),
    ("txt-return-1", "en", "The jacket doesn't fit, how can I send it back?", "return_request"),
    ("txt-order-1", "en", "My order was supposed to arrive yesterday. Where is it?", "order_status"),
    ("txt-order-2", "en", "Can you give me the tracking number for order 55123?", "order_status"),
    ("txt-cancel-1", "en", "Please cancel my monthly subscription.", "cancellation"),
    ("txt-refund-1", "en", "I returned the item two weeks ago and still have no refund.", "refund_request"),
    ("txt-payment-1", "en", "My card was charged twice for the same order.", "payment_issue"),
    ("txt-shipping-1", "en", "Do you ship to Canada, and how much does it cost?", "shipping_question"),
    ("txt-human-1", "en", "This bot is useless, let me speak to a real person.", "human_agent"),
    ("txt-zh-order-1", "zh", "我的包裹什么时候到？", "order_status"),
    ("txt-zh-refund-1", "zh", "我什么时候能收到退款？", "refund_request"),
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_entries() -> list[tuple[dict[str, Any], shapes.Sample]]:
    """The image part of the manifest, computed in memory (also used to check regeneration)."""
    out = []
    for i, sample in enumerate(shapes.balanced_samples(N_IMAGES, GOLDEN_SEED, stream="golden")):
        rgb = sample.image.convert("RGB")
        entry = {
            "id": f"img-{i:03d}",
            "path": f"images/img-{i:03d}.png",
            "caption": sample.caption,
            "label": sample.spec.label,
            "attributes": sample.spec.as_dict(),
            "width": rgb.width,
            "height": rgb.height,
            "pixels_sha256": sha256_bytes(rgb.tobytes()),
        }
        out.append((entry, sample))
    return out


def synthesize(text: str, espeak_args: list[str] | tuple[str, ...], dest: Path) -> None:
    """espeak-ng -> 22.05 kHz WAV -> ffmpeg -> 16 kHz mono s16 WAV (bit-exact, no metadata)."""
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} not found (apt-get install {tool})")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            ["espeak-ng", *espeak_args, "-w", str(raw), "--", text],
            check=True,
            capture_output=True,
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(raw),
                "-ac",
                "1",
                "-ar",
                str(SAMPLE_RATE),
                "-c:a",
                "pcm_s16le",
                "-map_metadata",
                "-1",
                "-fflags",
                "+bitexact",
                "-flags:a",
                "+bitexact",
                str(dest),
            ],
            check=True,
            capture_output=True,
        )


def wav_duration(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def build(data_dir: Path = DATA_DIR) -> dict[str, Any]:
    data_dir.mkdir(parents=True, exist_ok=True)
    for sub, pattern in (("images", "*.png"), ("audio", "*.wav")):  # drop files of older builds
        for stale in (data_dir / sub).glob(pattern):
            stale.unlink()
    images = []
    for entry, sample in image_entries():
        p = data_dir / entry["path"]
        p.parent.mkdir(parents=True, exist_ok=True)
        sample.image.convert("RGB").save(p, format="PNG", optimize=False)
        images.append({**entry, "sha256": sha256_bytes(p.read_bytes())})
    audio = []
    for clip_id, lang, text, intent, tol in SPEECH:
        args = list(ESPEAK_ARGS[lang])
        p = data_dir / "audio" / f"{clip_id}.wav"
        synthesize(text, args, p)
        audio.append(
            {
                "id": clip_id,
                "path": f"audio/{clip_id}.wav",
                "text": text,
                "language": lang,
                "intent": intent,
                "voice": f"espeak-ng:{args[1]}",
                "espeak_args": args,
                "sample_rate": SAMPLE_RATE,
                "duration_s": round(wav_duration(p), 3),
                "metric": "wer" if lang == "en" else "cer",
                "max_error_rate": tol,
                "sha256": sha256_bytes(p.read_bytes()),
            }
        )
    texts = [{"id": i, "text": t, "language": lang, "intent": intent} for i, lang, t, intent in TEXTS]
    manifest = {
        "version": MANIFEST_VERSION,
        "generator": "python -m testbed.golden.build",
        "seed": GOLDEN_SEED,
        "intents": list(INTENTS),
        "images": images,
        "audio": audio,
        "texts": texts,
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def check(data_dir: Path = DATA_DIR) -> list[dict[str, Any]]:
    """Transcribe every golden clip with the prepared whisper base; WER (en) / CER (zh)."""
    import time

    import torch

    from testbed import golden
    from testbed.models import load_whisper

    torch.set_num_threads(2)
    gs = golden.load_golden(data_dir)
    model = load_whisper()
    rows = []
    for clip in gs.audio:
        t0 = time.perf_counter()
        result = model.transcribe(str(clip.file), language=clip.language, fp16=False, temperature=0.0)
        forced_s = time.perf_counter() - t0
        auto = model.transcribe(str(clip.file), fp16=False, temperature=0.0)
        rate = golden.error_rate(clip.text, result["text"], clip.language)
        rows.append(
            {
                "id": clip.id,
                "language": clip.language,
                "expected": clip.text,
                "transcript": result["text"].strip(),
                "metric": clip.metric,
                "error_rate": round(rate, 4),
                "max_error_rate": clip.max_error_rate,
                "ok": rate <= clip.max_error_rate + 1e-9,
                "transcribe_s": round(forced_s, 2),
                "auto_language": auto["language"],
                "auto_transcript": auto["text"].strip(),
                "auto_error_rate": round(golden.error_rate(clip.text, auto["text"], clip.language), 4),
            }
        )
        r = rows[-1]
        print(
            f"{r['id']:16s} {r['metric']}={r['error_rate']:.3f} (≤{r['max_error_rate']}) "
            f"{r['transcribe_s']:.2f}s  {r['transcript']!r}  "
            f"auto[{r['auto_language']}]: {r['auto_transcript']!r}"
        )
    (data_dir / "whisper-base-check.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="build the testbed golden set")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--check", action="store_true", help="transcribe with whisper base and report WER/CER")
    args = ap.parse_args(argv)
    if args.check:
        rows = check(args.data_dir)
        return 0 if all(r["ok"] for r in rows) else 1
    m = build(args.data_dir)
    print(
        f"golden set: {len(m['images'])} images, {len(m['audio'])} clips, {len(m['texts'])} texts "
        f"-> {args.data_dir / 'manifest.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
