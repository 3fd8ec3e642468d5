"""The two frozen backbones, offline, on a real spoken sentence."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fdrl_core.assets import AssetError, text_model_dir, whisper_model_dir
from fdrl_core.audio import AudioError, load_audio


def test_speech_frontend_gives_384d_frames_trimmed_to_the_utterance(spoken_wav, speech_frontend):
    audio = load_audio(spoken_wav)
    frames = speech_frontend.frames(audio)
    assert frames.shape == (int(np.ceil(len(audio) / 320)), 384)
    assert np.isfinite(frames).all() and frames.std() > 0.1
    # an encoder output computed elsewhere (the recogniser's pass) gives the same frames
    enc = speech_frontend.encode(audio)
    again = speech_frontend.frames(encoder_output=enc, num_samples=len(audio))
    np.testing.assert_array_equal(frames, again)
    batch = speech_frontend.frames_batch([audio, audio[: len(audio) // 2]])
    np.testing.assert_allclose(batch[0], frames, atol=1e-4)
    assert batch[1].shape[0] == int(np.ceil(len(audio) // 2 / 320))


def test_text_frontend_gives_384d_token_states(text_frontend):
    states, mask = text_frontend.states("I am so happy to see you again today")
    assert states.shape[1] == 384 and states.shape[0] == mask.sum() >= 8
    empty, emask = text_frontend.states("   ")
    assert empty.shape == (0, 384) and emask.sum() == 0
    batch, bmask = text_frontend(["hello there", "", "a much longer sentence than the first one"])
    assert batch.shape[0] == 3 and bmask.sum(1).tolist()[1] == 0
    np.testing.assert_allclose(batch[0, : bmask[0].sum()], text_frontend.states("hello there")[0], atol=1e-5)


def test_frontends_work_fully_offline(spoken_wav):
    code = (
        "from fdrl_core.speech_frontend import SpeechFrontend; from fdrl_core.text_frontend import TextFrontend;"
        "from fdrl_core.audio import load_audio;"
        f"f = SpeechFrontend().frames(load_audio({str(spoken_wav)!r})); s, m = TextFrontend().states('hello');"
        "print(f.shape[1], s.shape[1])"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["384", "384"]


def test_model_folders_can_be_named_by_path(tmp_path, monkeypatch):
    assert whisper_model_dir(whisper_model_dir()) == whisper_model_dir()
    monkeypatch.setenv("FDRL_TEXT_MODEL", str(tmp_path))
    with pytest.raises(AssetError, match="missing"):
        text_model_dir()


def test_corrupt_or_missing_audio_gives_a_clear_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(AudioError, match="cannot read"):
        load_audio(bad)
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")
