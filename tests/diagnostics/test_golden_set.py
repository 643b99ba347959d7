"""Transcript scoring by each language's own rule, and the Traditional -> Simplified fold (OpenCC)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.golden_set import error_rate, load_golden, metric_for, normalise, to_simplified


@pytest.mark.parametrize(
    ("traditional", "simplified"),
    [
        # none of these sentences is in the golden set: the fold is a general converter now
        ("這個軟體的開發", "这个软体的开发"),  # character by character: 軟體 is not rewritten to 软件
        ("我們應該學習語言", "我们应该学习语言"),
        ("請問圖書館幾點關門", "请问图书馆几点关门"),
        ("他看著窗外，很著名", "他看着窗外，很著名"),  # Taiwan 著 (zhe) folded, 著名 kept
        ("頭髮乾淨", "头发干净"),
    ],
)
def test_traditional_is_folded_to_simplified_by_opencc(traditional: str, simplified: str) -> None:
    assert to_simplified(traditional) == simplified


def test_chinese_is_scored_by_cer_on_folded_text() -> None:
    assert normalise("這個軟體的開發，好嗎？", "zh") == "这个软体的开发好吗"
    assert error_rate("这个软体的开发", "這個軟體的開發", "zh") == 0.0
    assert error_rate("我们应该学习语言", "我們應該學習語文", "zh-TW") == pytest.approx(1 / 8)
    assert error_rate("这个产品有货吗？", "這個產品又多麼", "zh") == pytest.approx(3 / 7)  # golden zh-stock
    assert normalise("ｈｅｌｌｏ　世界", "zh") == "hello世界"  # full-width forms NFKC-folded


@pytest.mark.parametrize(
    ("language", "metric"),
    [
        ("en", "wer"),
        ("de", "wer"),
        ("pt-BR", "wer"),
        ("hi", "wer"),
        ("ko", "wer"),
        ("zh", "cer"),
        ("zh-TW", "cer"),
        ("zh_Hant", "cer"),
        ("yue", "cer"),
        ("ja", "cer"),
        ("th", "cer"),
    ],
)
def test_each_language_has_its_own_metric(language: str, metric: str) -> None:
    assert metric_for(language) == metric


def test_space_delimited_languages_are_scored_by_wer_not_chinese_cer() -> None:
    # German was scored as case-sensitive Chinese CER before (6 edits in 14 characters: 0.43);
    # now one word of four: 0.25
    assert error_rate("Wie geht es Ihnen?", "wie geht es dir", "de") == pytest.approx(0.25)
    assert normalise("Wie geht es Ihnen? Straße!", "de") == "wie geht es ihnen strasse"
    # combining marks stay in their words (whisper's basic normaliser would split नमस्ते)
    assert normalise("नमस्ते, दुनिया!", "hi") == "नमस्ते दुनिया"
    assert error_rate("", "", "fr") == 0.0 and error_rate("", "bonjour", "fr") == 1.0


def test_japanese_is_cer_without_chinese_folding() -> None:
    assert normalise("東京に行きました。", "ja") == "東京に行きました"
    assert normalise("學校", "ja") == "學校"  # kanji are not simplified
    assert error_rate("東京に行きます", "東京に行きました", "ja") == pytest.approx(2 / 7)


def _manifest(tmp_path: Path, language: str, metric: str) -> Path:
    entry = {
        "id": "clip",
        "path": "a.wav",
        "text": "x",
        "language": language,
        "intent": "i",
        "voice": "v",
        "espeak_args": [],
        "sample_rate": 16000,
        "duration_s": 1.0,
        "metric": metric,
        "max_error_rate": 0.1,
        "sha256": "0" * 64,
    }
    data = {"version": 1, "generator": "g", "seed": 0, "intents": ["i"], "images": [], "audio": [entry]}
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "texts": []}), encoding="utf-8")
    return tmp_path


def test_a_golden_clip_must_declare_its_languages_metric(tmp_path: Path) -> None:
    assert load_golden(_manifest(tmp_path, "de", "wer")).audio[0].language == "de"
    with pytest.raises(ValueError, match=r"metric 'cer' but 'de' is scored by 'wer'"):
        load_golden(_manifest(tmp_path, "de", "cer"))
    with pytest.raises(ValueError, match="language"):
        load_golden(_manifest(tmp_path, "not a language", "wer"))
