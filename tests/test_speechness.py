"""Knowing when it does not know: the speech-likeness check, the uncertain verdict, temperature scaling and
ECE (fdrl_core.speechness / uncertainty / calibration), and the uncertain fields of the emotion message."""

import numpy as np
import pytest

from fdrl_core.calibration import ece, fit_temperature, reliability, softmax
from fdrl_core.speechness import measure
from fdrl_core.uncertainty import UncertaintyConfig, decide

SR = 16000


def _signals():
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    spec = np.fft.rfft(rng.standard_normal(3 * SR))
    f = np.fft.rfftfreq(3 * SR, 1 / SR)
    f[0] = 1
    pink = np.fft.irfft(spec / np.sqrt(f), 3 * SR)
    melody = np.zeros_like(t)
    for i, fr in enumerate([262, 294, 330, 349, 392, 440, 494, 523] * 2):  # notes with gaps (staccato)
        a = int(i * 0.18 * SR)
        tt = np.arange(int(0.12 * SR)) / SR
        env = np.minimum(1, tt / 0.01) * np.exp(-tt * 4)
        melody[a:a + len(tt)] += sum(0.2 / h * np.sin(2 * np.pi * fr * h * tt) for h in range(1, 6)) * env
    return {
        "white noise": rng.standard_normal(3 * SR) * 0.1,
        "pink noise": pink / np.abs(pink).max() * 0.3,
        "sine 440 Hz": 0.3 * np.sin(2 * np.pi * 440 * t),
        "square 220 Hz": 0.3 * np.sign(np.sin(2 * np.pi * 220 * t)),
        "chord": sum(0.1 * np.sin(2 * np.pi * fr * t) for fr in (261.6, 329.6, 392.0)),
        "melody": melody,
        "silence": np.zeros(3 * SR),
    }


@pytest.mark.parametrize("name", list(_signals()))
def test_noise_tones_and_music_are_not_speech(name):
    sp = measure(_signals()[name].astype(np.float32))
    assert not sp.speech_like and sp.reason, (name, sp)
    verdict = decide(0.99, _signals()[name].astype(np.float32))  # even a confident model is overruled
    assert verdict.uncertain and verdict.reason.startswith("not speech"), verdict


def test_synthetic_speech_of_every_engine_is_speech(spoken_wav):
    from fdrl_core.audio import load_audio

    sp = measure(load_audio(spoken_wav))
    assert sp.speech_like, sp
    assert not decide(0.9, load_audio(spoken_wav)).uncertain


def test_low_confidence_and_no_speech_probability_make_an_outcome_uncertain():
    assert decide(0.3).uncertain and "low confidence" in decide(0.3).reason
    assert not decide(0.8).uncertain
    assert decide(0.9, no_speech_prob=0.95).uncertain
    assert not decide(0.3, cfg=UncertaintyConfig(min_confidence=0.25)).uncertain


def test_temperature_scaling_fixes_overconfidence_without_changing_decisions():
    rng = np.random.default_rng(0)
    n, c = 2000, 4
    y = rng.integers(0, c, n)
    # true class gets a modest edge, logits are then blown up 5x: an over-confident model
    logits = rng.standard_normal((n, c))
    logits[np.arange(n), y] += 1.0
    logits *= 5
    t = fit_temperature(logits, y)
    assert 3.0 < t < 8.0, t
    before, after = ece(softmax(logits), y), ece(softmax(logits, t), y)
    assert after < 0.05 < before, (before, after)
    assert np.array_equal(softmax(logits).argmax(1), softmax(logits, t).argmax(1))
    rel = reliability(softmax(logits, t), y)
    assert rel.count.sum() == n and abs(rel.ece - after) < 1e-12


def test_emotion_message_carries_the_uncertain_outcome():
    from stream.messages import MessageFactory, format_line, validate

    f = MessageFactory("s1")
    common = dict(utterance_id=0, start=0.0, end=1.0, partial=False, revision=0, transcript="", text_used=False,
                  text_dropped="no words recognised", label="sad", scores={"neutral": 0.1, "happy": 0.1,
                                                                            "angry": 0.1, "sad": 0.7},
                  confidence=0.7, modalities=("speech",), asr_ms=1.0, emotion_ms=1.0, eos_to_publish_ms=2.0,
                  model="torch:demo")
    msg = f.emotion(**common, uncertain=True, uncertain_reason="not speech: noise-like")
    validate("emotion", msg)
    assert msg["uncertain"] and msg["label"] == "sad" and msg["scores"]["sad"] == 0.7
    assert "UNCERTAIN" in format_line("emotion", msg) and "noise-like" in format_line("emotion", msg)
    sure = f.emotion(**common)
    validate("emotion", sure)
    assert sure["uncertain"] is False and sure["uncertain_reason"] is None
    assert "SAD 0.70" in format_line("emotion", sure)
