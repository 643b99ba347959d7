"""The audio_processor module: ffmpeg decoding, Whisper transcription, intent, and its route."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Request

from testbed import faults as F
from testbed.intent import CentroidIntentClassifier, IntentResult, KeywordIntentClassifier
from testbed.logs import fields, run_in_context
from testbed.serving.config import MODEL_KEYS, ServiceSettings
from testbed.serving.payloads import ServiceError, decode_b64, json_body

if TYPE_CHECKING:
    from testbed.serving.core import Service


class AudioTimeout(Exception):
    pass


FFMPEG_CMD = [
    "ffmpeg",
    "-hide_banner",
    "-loglevel",
    "error",
    "-threads",
    "1",
    "-i",
    "pipe:0",
    "-f",
    "s16le",
    "-ac",
    "1",
    "-acodec",
    "pcm_s16le",
    "-ar",
    "16000",
    "pipe:1",
]


def decode_audio(data: bytes, timeout_s: float, *, stall: bool = False) -> np.ndarray:
    """Decode any ffmpeg-readable audio to mono float32 at 16 kHz, killing ffmpeg after ``timeout_s``.

    ``stall`` (the ``audio_timeout`` fault) feeds ffmpeg only half the upload and never closes its
    input — a stalled upload stream — so the decoder genuinely hangs until the timeout kills it.
    Raises ``AudioTimeout`` on timeout and ``ServiceError(400)`` on undecodable input.
    """
    if not stall:
        try:
            proc = subprocess.run(FFMPEG_CMD, input=data, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AudioTimeout(f"ffmpeg subprocess timeout after {timeout_s:.1f} s") from exc
        if proc.returncode != 0 or not proc.stdout:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ServiceError(400, f"audio could not be decoded: {err[-1] if err else 'empty output'}")
        return np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0

    p = subprocess.Popen(FFMPEG_CMD, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed() -> None:
        with contextlib.suppress(OSError, ValueError):
            assert p.stdin is not None
            p.stdin.write(data[: max(1, len(data) // 2)])
            p.stdin.flush()

    def drain() -> None:
        with contextlib.suppress(OSError, ValueError):
            assert p.stdout is not None
            while p.stdout.read(65536):
                pass

    threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain, daemon=True)]
    for t in threads:
        t.start()
    try:
        p.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise AudioTimeout(f"ffmpeg subprocess timeout after {timeout_s:.1f} s (pid {p.pid})") from exc
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout, p.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
    raise ServiceError(400, "audio stream ended early")


def _segments(result: dict[str, Any], skew: float) -> list[dict[str, Any]]:
    """Whisper's segments and words, rounded, with their times shifted by the clock skew."""
    segments: list[dict[str, Any]] = []
    for seg in result.get("segments", []):
        words = [
            {
                "word": str(w.get("word", "")).strip(),
                "start": round(float(w["start"]) + skew, 3),
                "end": round(float(w["end"]) + skew, 3),
                "probability": round(float(w.get("probability", 0.0)), 4),
            }
            for w in seg.get("words", []) or []
        ]
        segments.append(
            {
                "id": seg.get("id", len(segments)),
                "start": round(float(seg["start"]) + skew, 3),
                "end": round(float(seg["end"]) + skew, 3),
                "text": str(seg.get("text", "")).strip(),
                "avg_logprob": round(float(seg.get("avg_logprob", 0.0)), 4),
                "no_speech_prob": round(float(seg.get("no_speech_prob", 0.0)), 4),
                "words": words,
            }
        )
    return segments


class Transcriber:
    """Audio to transcript + intent, with audio_timeout and asr_degraded applied."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self._intent: CentroidIntentClassifier | None = None  # built on first use, from MiniLM
        self._keyword_intent = KeywordIntentClassifier()

    async def intent(self, text: str, channel: str) -> IntentResult:
        svc = self.svc
        try:
            if self._intent is None:
                examples = svc.backends.intent_examples()
                self._intent = await svc.call_model(
                    "minilm",
                    channel,
                    "text",
                    lambda: CentroidIntentClassifier(svc.backends.encode_minilm, examples),
                )
            clf = self._intent
            assert clf is not None
            result: IntentResult = await svc.call_model("minilm", channel, "text", clf.classify, text)
            return result
        except ServiceError:
            # intent model unavailable: keyword rules (health shows audio_processor degraded)
            return self._keyword_intent.classify(text)

    async def _decode(self, data: bytes, channel: str) -> np.ndarray:
        """ffmpeg-decoded audio; the audio_timeout fault stalls the decoder until the timeout."""
        svc = self.svc
        timeout = svc.settings.audio_timeout_s
        at = svc.faults.get("audio_timeout")
        stall = at is not None and (channel in at.channels or "audio" in at.channels)
        if stall and at is not None:
            timeout = min(timeout, at.magnitude)
        # whisper must be usable before we spend time decoding
        svc.check_available("whisper")
        async with svc.ffmpeg_sem:
            try:
                audio: np.ndarray = await to_thread.run_sync(
                    run_in_context(lambda: decode_audio(data, timeout, stall=stall))
                )
            except AudioTimeout as exc:
                svc.logger.error(
                    "%s while decoding audio (audio.timeout_sec=%.1f); decoder killed",
                    exc,
                    timeout,
                    extra=fields(module="audio_processor"),
                )
                raise ServiceError(504, f"audio decode timed out: {exc}") from exc
        return audio

    async def transcribe(self, data: bytes, language: str | None, channel: str) -> dict[str, Any]:
        svc = self.svc
        audio = await self._decode(data, channel)
        duration = len(audio) / 16000.0
        if duration > 120:
            raise ServiceError(400, "audio longer than 120 s")
        deg = svc.faults.get("asr_degraded")
        if deg is not None and (channel in deg.channels or "audio" in deg.channels):
            audio = F.add_noise_snr(audio, deg.magnitude)
        result = await svc.call_model("whisper", channel, "audio", svc.backends.transcribe, audio, language)
        segments = _segments(result, svc.skew_s(channel))
        text = str(result.get("text", "")).strip()
        intent = await self.intent(text, channel)
        return {
            "text": text,
            "language": result.get("language"),
            "duration_s": round(duration, 3),
            "segments": segments,
            "intent": intent.as_dict(),
            "model": MODEL_KEYS["whisper"][0],
        }


async def read_upload(request: Request, settings: ServiceSettings) -> tuple[bytes, str | None]:
    """The audio bytes and language of a multipart upload (field ``file``) or a JSON base64 body."""
    ctype = request.headers.get("content-type", "")
    language: str | None = None
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ServiceError(400, "multipart upload needs a 'file' field")
        data = await upload.read()
        lang = form.get("language")
        language = lang if isinstance(lang, str) and lang else None
    else:
        raw = await request.body()
        if len(raw) > settings.max_upload_bytes * 2:
            raise ServiceError(413, "upload too large")
        body = json_body(raw)
        if not isinstance(body, dict) or not isinstance(body.get("audio_b64"), str):
            raise ServiceError(400, 'JSON body needs {"audio_b64": "<base64 audio>", "language"?: "en"}')
        data = decode_b64(body["audio_b64"], "audio_b64")
        language = body.get("language") or None
    if len(data) > settings.max_upload_bytes:
        raise ServiceError(413, "upload too large")
    if not data:
        raise ServiceError(400, "empty audio")
    return data, language


def audio_routes(svc: Service) -> APIRouter:
    """``POST /v1/audio/transcriptions``."""
    routes = APIRouter()

    @routes.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> dict[str, Any]:
        data, language = await read_upload(request, svc.settings)
        return svc.stamp("audio", await svc.audio.transcribe(data, language, "audio"))

    return routes
