"""Audio sources: block-wise resampling, file replay (any rate/channels), overflow accounting."""

import time

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from fdrl_core.audio import AudioError, load_audio
from stream.sources import FileSource, SourceError, StreamResampler, open_source


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000])
def test_block_resampling_equals_one_shot(rate, rng):
    x = (rng.standard_normal(rate * 2) * 0.1).astype(np.float32)
    g = np.gcd(rate, 16000)
    want = resample_poly(x, 16000 // g, rate // g)
    rs, out, i = StreamResampler(rate), [], 0
    while i < len(x):  # uneven blocks, as a sound card delivers them
        n = int(rng.integers(1, 2500))
        out.append(rs.process(x[i:i + n]))
        i += n
    out.append(rs.flush())
    got = np.concatenate(out)
    assert len(got) == len(want)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert len(rs.buf) < rs.down + rs.half + 2500, "history stays bounded (it does not grow with the signal)"


def test_file_source_converts_rate_and_channels(tmp_path, spoken_wav):
    mono16 = load_audio(spoken_wav)
    stereo = np.stack([resample_poly(mono16, 441, 160)] * 2, axis=1).astype(np.float32)
    path = tmp_path / "stereo44k.flac"
    sf.write(str(path), stereo, 44100)
    src = FileSource(path, frame_ms=20, loop=2)
    src.start()
    frames = list(src.frames())
    assert all(len(f.samples) == 320 and f.samples.dtype == np.int16 for f in frames)
    assert [f.start for f in frames] == [i * 320 for i in range(len(frames))], "one continuous audio clock"
    n = len(load_audio(path))
    assert abs(len(frames) * 320 - 2 * n) < 2 * 320, "looped twice"
    assert src.dropped_frames == 0, "a file played as fast as possible loses nothing"


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "notaudio.wav"
    bad.write_text("this is not a wav file")
    with pytest.raises(AudioError, match="cannot read"):
        open_source("file", path=bad)
    with pytest.raises(AudioError, match="not found"):
        open_source("file", path=tmp_path / "missing.wav")


def test_live_source_drops_and_counts_instead_of_blocking(spoken_wav):
    # paced replay behaves like a microphone: with nobody consuming, the bounded queue overflows and the
    # producer keeps going, counting what it had to drop
    src = FileSource(spoken_wav, realtime=True, frame_ms=30, queue_seconds=0.12)
    src.start()
    deadline = time.monotonic() + 10
    while src.dropped_frames == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    src.stop()
    kept = list(src.frames())
    assert src.dropped_frames > 0
    assert 0 < len(kept) <= 5, "only what fitted in the queue is delivered"


def test_mic_without_a_device_is_one_clear_error(monkeypatch):
    sd = pytest.importorskip("sounddevice")
    from stream import sources

    def no_device(*a, **k):
        raise sd.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sd, "query_devices", no_device)
    with pytest.raises(SourceError, match="no microphone"):
        sources.MicSource()
