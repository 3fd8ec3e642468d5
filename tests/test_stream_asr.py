"""Incremental ASR: real faster-whisper on espeak speech, the shared encoder pass, the hallucination guard."""

import numpy as np
import pytest

from fdrl_core.audio import load_audio
from stream.asr import AsrConfig, Recognizer, check_language, judge, normalize, repeated_ngram

CFG = AsrConfig()


@pytest.mark.parametrize("text,nsp,lp,why", [
    ("", 0.1, -0.2, "no words"),
    (" .", 0.95, -2.6, "no words"),
    ("I see.", 0.7, -1.3, "silence"),
    ("Okay then let's go", 0.95, -0.3, "silence"),
    ("The the the bridge of", 0.1, -1.4, "low confidence"),
    ("Thanks for watching!", 0.05, -0.2, "known hallucination"),
    ("Please subscribe.", 0.3, -0.4, "known hallucination"),
    ("[Music]", 0.2, -0.5, "known hallucination"),
    ("you you you you", 0.1, -0.3, "repetitive"),
    ("I'm going home. I'm going home. I'm going home. I'm going home.", 0.1, -0.2, "repetitive"),
    (" you", 0.6, -0.7, "likely hallucination"),
    ("Thank you.", 0.4, -0.3, "likely hallucination"),
])
def test_guard_rejects_hallucinations(text, nsp, lp, why):
    reliable, reason = judge(text, nsp, lp, CFG)
    assert not reliable
    assert why in reason


@pytest.mark.parametrize("text,nsp,lp", [
    ("I can't believe you broke it again, this is unacceptable.", 0.12, -0.28),
    ("Thank you.", 0.02, -0.2),  # said clearly: a real thank-you is kept
    ("No, no, no!", 0.05, -0.4),
    ("We won the match, everyone is celebrating tonight.", 0.3, -0.5),
])
def test_guard_keeps_real_speech(text, nsp, lp):
    assert judge(text, nsp, lp, CFG) == (True, None)


def test_a_language_the_model_cannot_do_is_an_error_not_silent_english():
    assert check_language("en", multilingual=False) is None
    assert check_language("DE", multilingual=True) == "de"
    with pytest.raises(ValueError, match="English-only"):
        check_language("de", multilingual=False)
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        check_language("xx", multilingual=True)


def test_text_helpers():
    assert normalize("  Thanks  for WATCHING!!") == "thanks for watching"
    assert normalize("I\u2019m here") == "i'm here"
    assert repeated_ngram("a b c a b c a b c a b c".split()) == "a b c"
    assert repeated_ngram("this is a perfectly normal sentence".split()) is None


@pytest.fixture(scope="module")
def recognizer(speech_frontend):
    return Recognizer(AsrConfig(), frontend=speech_frontend)


def test_transcribes_espeak_speech(recognizer, spoken_wav):
    audio = load_audio(spoken_wav)
    hyp = recognizer.transcribe(audio, final=True)
    words = normalize(hyp.text).split()
    assert {"happy", "see", "you", "again"} <= set(words), hyp.text
    assert hyp.reliable and hyp.reason is None
    assert hyp.usable_text == hyp.text
    partial = recognizer.transcribe(audio[: len(audio) // 2], final=False)
    assert "happy" in normalize(partial.text) or "so" in normalize(partial.text)


def test_final_pass_encoder_output_is_fdrls_speech_input(recognizer, speech_frontend, spoken_wav):
    """The frames FDRL gets come from the recogniser's own encoder pass and equal the training features."""
    audio = load_audio(spoken_wav)
    hyp = recognizer.transcribe(audio, final=True)
    want = speech_frontend.frames(audio)
    assert hyp.frames.shape == want.shape and hyp.frames.dtype == np.float32
    np.testing.assert_allclose(hyp.frames, want, atol=1e-4)


def test_silence_and_noise_give_no_text(recognizer, rng):
    silence = np.zeros(2 * 16000, np.float32)
    noise = (rng.standard_normal(2 * 16000) * 0.02).astype(np.float32)
    for audio in (silence, noise):
        hyp = recognizer.transcribe(audio, final=True)
        assert hyp.usable_text is None, (hyp.text, hyp.no_speech_prob, hyp.avg_logprob)
        assert hyp.reason
        assert hyp.frames.shape == (100, 384), "speech-only emotion still gets its frames"
