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
    import soxr

    x = (rng.standard_normal(rate * 2) * 0.1).astype(np.float32)
    want = soxr.resample(x, rate, 16000, quality="HQ")
    rs, out, i = StreamResampler(rate), [], 0
    while i < len(x):  # uneven blocks, as a sound card delivers them
        n = int(rng.integers(1, 2500))
        out.append(rs.process(x[i:i + n]))
        i += n
    out.append(rs.flush())
    got = np.concatenate(out)
    assert len(got) == len(want)
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_streaming_resampler_keeps_speech_band_and_removes_aliases(rate):
    t = np.arange(rate * 2) / rate
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)  # kept: well inside 0-8 kHz
    alias = np.sin(2 * np.pi * 11000 * t).astype(np.float32)  # above 8 kHz: must not fold back to 5 kHz
    rs = StreamResampler(rate)
    y = np.concatenate([rs.process(tone[i:i + 1323]) for i in range(0, len(tone), 1323)] + [rs.flush()])
    ref = np.sin(2 * np.pi * 1000 * np.arange(len(y)) / 16000)
    mid = slice(1000, -1000)
    assert np.corrcoef(y[mid], ref[mid])[0, 1] > 0.999
    rs = StreamResampler(rate)
    z = np.concatenate([rs.process(alias[i:i + 1323]) for i in range(0, len(alias), 1323)] + [rs.flush()])
    assert np.sqrt(np.mean(z[mid] ** 2)) < 0.01


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
    with pytest.raises(AudioError, match="is a directory"):
        open_source("file", path=tmp_path)


def test_nan_samples_are_one_clear_error_naming_file_and_time(tmp_path):
    x = (np.sin(np.arange(16000 * 3) / 10) * 0.3).astype(np.float32)
    x[int(16000 * 2.5)] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: NaN/Inf samples at 2\.50 s"):
        FileSource(path)
    x[int(16000 * 2.5)] = np.inf
    sf.write(str(path), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN/Inf"):
        load_audio(path)


def test_truncated_wav_warns_with_the_real_duration(tmp_path):
    x = (np.sin(np.arange(int(16000 * 8.2)) / 10) * 0.3).astype(np.float32)
    full = tmp_path / "full.wav"
    sf.write(str(full), x, 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:44 + 6 * 16000 * 2])  # header still says 8.2 s
    src = FileSource(cut)
    assert len(src.warnings) == 1 and "cut.wav is truncated" in src.warnings[0]
    assert "8.2 s" in src.warnings[0] and "6.0 s" in src.warnings[0]
    assert FileSource(full).warnings == []
    with pytest.warns(UserWarning, match="truncated"):
        assert len(load_audio(cut)) == 6 * 16000


def test_file_source_reads_in_blocks_with_flat_memory(tmp_path):
    """A long file is never loaded whole: what the reader allocates stays a few blocks, not the file."""
    import tracemalloc

    rate, minutes = 44100, 4
    path = tmp_path / "long.wav"
    with sf.SoundFile(str(path), "w", rate, 2, subtype="PCM_16") as f:
        chunk = (np.random.default_rng(0).standard_normal((rate * 10, 2)) * 0.05).astype(np.float32)
        for _ in range(minutes * 6):
            f.write(chunk)
    whole_mb = minutes * 60 * rate * 2 * 4 / 2**20  # the file as float32: what loading it whole costs
    tracemalloc.start()
    try:
        src = FileSource(path)
        src.start()
        n = 0
        for fr in src.frames():
            n += len(fr.samples)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(n - minutes * 60 * 16000) < 16000
    assert peak / 2**20 < 12, f"reader peak {peak / 2**20:.1f} MB for a {whole_mb:.0f} MB file"


def test_status_counters_carry_driver_overflows_and_dropped_blocks():
    from types import SimpleNamespace

    from stream.messages import MessageFactory, validate
    from stream.pipeline import Pipeline, Stats

    src = SimpleNamespace(dropped_frames=7, dropped_blocks=3, overflows=2, queue_depth=lambda: 0)
    stream = SimpleNamespace(stats=Stats(), source=src)
    fake = SimpleNamespace(streams=[stream], work=None, publisher=SimpleNamespace(sent=1, failures=0))
    counters = Pipeline.counters(fake, stream)
    assert counters["input_overflows"] == 2 and counters["dropped_blocks"] == 3
    msg = MessageFactory("s").status(kind="heartbeat", source="mic", audio_time=1.0, uptime_s=1.0,
                                     counters=counters, rtf=None, rss_mb=None, endpoint="tcp://127.0.0.1:5556",
                                     curve=False)
    validate("status", msg)


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


def test_truncated_flac_keeps_what_decodes_and_warns(tmp_path):
    x = (np.sin(np.arange(16000 * 4) / 10) * 0.3).astype(np.float32)
    full = tmp_path / "full.flac"
    sf.write(str(full), x, 16000)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    src = FileSource(cut)
    src.start()
    n = sum(len(f.samples) for f in src.frames())
    assert 16000 * 1 < n < 16000 * 4, "the decodable first part is played"
    assert len(src.warnings) == 1 and "cut.flac is damaged or truncated at" in src.warnings[0]
    assert "header says 4.0 s" in src.warnings[0]
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="is empty"):
        FileSource(empty)
