"""VAD segmenter on real (synthesised) speech: the bundled demo, and espeak speech with silences."""

import json

import numpy as np
import pytest
import soundfile as sf

from stream.sources import DEMO_DIR
from stream.vad import Segmenter, SpeechDiscard, SpeechEnd, SpeechGrow, SpeechPause, SpeechStart, VadConfig

SR = 16000


def run_segmenter(x: np.ndarray, cfg: VadConfig | None = None, grow_every_ms=700):
    seg = Segmenter(cfg or VadConfig(), grow_every_ms=grow_every_ms)
    events = []
    for i in range(0, len(x) - seg.fs + 1, seg.fs):
        events += seg.push(x[i:i + seg.fs], i)
    return events + seg.flush()


@pytest.fixture(scope="module")
def demo():
    x, sr = sf.read(str(DEMO_DIR / "demo.wav"), dtype="int16")
    assert sr == SR
    return x, json.loads((DEMO_DIR / "demo.json").read_text())["utterances"]


def test_demo_is_cut_into_its_utterances_with_onsets_kept(demo):
    x, truth = demo
    ends = [e for e in run_segmenter(x) if isinstance(e, SpeechEnd)]
    assert len(ends) == len(truth)
    for e, t in zip(ends, truth):
        start, end = e.utt.start / SR, e.end / SR
        assert start <= t["start"] - 0.1, "pre-roll must keep the first syllable (and a little before it)"
        assert end >= t["end"] - 0.15, "the utterance must not lose its last word"
        assert e.reason == "silence"
        assert len(e.audio) == e.end - e.utt.start
    assert [e.utt.id for e in ends] == list(range(len(truth))), "ids are gap-free even after noise blips"
    for a, b in zip(ends, ends[1:]):
        assert a.end <= b.utt.start


def test_event_order_and_partials_cues(demo):
    x, truth = demo
    x = x[: int((truth[0]["end"] + 1.0) * SR)]
    events = run_segmenter(x)
    # the blip at the very start (webrtcvad adapting to the noise floor) is opened and then discarded
    discarded = [e.utt for e in events if isinstance(e, SpeechDiscard)]
    events = [e for e in events if not any(e.utt is u for u in discarded)]
    kinds = [type(e) for e in events]
    assert kinds[0] is SpeechStart and kinds[-1] is SpeechEnd
    assert SpeechPause in kinds and kinds.index(SpeechPause) < kinds.index(SpeechEnd)
    grows = [e for e in events if isinstance(e, SpeechGrow)]
    assert len(grows) >= 2, "a 3 s sentence gives several partial cues at 0.7 s of speech each"
    assert [g.revision for g in grows] == list(range(1, len(grows) + 1))
    assert all(len(a.audio) < len(b.audio) for a, b in zip(grows, grows[1:])), "the buffer grows"
    end = events[-1]
    assert end.revision == grows[-1].revision + 1
    pause = next(e for e in events if isinstance(e, SpeechPause))
    assert pause.end == end.end and np.array_equal(pause.audio, end.audio), \
        "the pause fixes the audio of the final pass when speech does not resume"


def test_short_noise_burst_is_not_an_utterance(demo):
    x, truth = demo
    t0 = int(truth[2]["start"] * SR) + SR // 2
    burst = x[t0:t0 + int(0.12 * SR)]
    quiet = x[: int(0.5 * SR)]  # the demo's lead-in: room noise only
    signal = np.concatenate([quiet, quiet, burst, quiet, quiet])
    events = run_segmenter(signal, VadConfig(min_speech_ms=250))
    assert not [e for e in events if isinstance(e, SpeechEnd)]


def test_long_speech_is_split_at_max_length(demo):
    x, truth = demo
    speech = np.concatenate([x[int(t["start"] * SR):int(t["end"] * SR)] for t in truth[:4]])  # ~13 s, no gaps
    cfg = VadConfig(max_utterance_s=4.0, split_search_ms=1000)
    ends = [e for e in run_segmenter(np.concatenate([x[:SR], speech, x[:SR]]), cfg) if isinstance(e, SpeechEnd)]
    assert len(ends) >= 3
    assert all(e.end - e.utt.start <= 4.0 * SR + cfg.frame_samples for e in ends)
    forced = [e for e in ends if e.reason == "max_length"]
    assert forced, "long speech is force-split"
    for a, b in zip(ends, ends[1:]):
        if a.reason == "max_length":
            assert b.utt.start == a.end, "a forced split loses no audio"


def test_espeak_sentences_with_silences(spoken_wav):
    from fdrl_core.audio import load_audio, to_int16

    s = to_int16(load_audio(spoken_wav))
    gap = np.zeros(int(1.2 * SR), np.int16)
    x = np.concatenate([gap, s, gap, s, gap, s, gap])
    ends = [e for e in run_segmenter(x, grow_every_ms=None) if isinstance(e, SpeechEnd)]
    assert len(ends) == 3


def test_config_is_checked():
    with pytest.raises(ValueError, match="frame"):
        VadConfig(frame_ms=25).validate()
    with pytest.raises(ValueError, match="tail"):
        VadConfig(tail_ms=900, hangover_ms=600).validate()
    with pytest.raises(ValueError, match="30 s|Whisper"):
        VadConfig(max_utterance_s=45).validate()
    seg = Segmenter(VadConfig(frame_ms=20))
    with pytest.raises(ValueError, match="20 ms"):
        seg.push(np.zeros(480, np.int16), 0)


def test_end_of_speech_is_where_the_voice_stops_not_after_webrtcvads_overhang(demo):
    x, truth = demo
    # where each utterance's voice really stops: its last sample above 1 % of full scale
    stops = []
    for t in truth:
        a, b = int(t["start"] * SR), int(t["end"] * SR) + SR // 2
        stops.append((a + np.nonzero(np.abs(x[a:b].astype(np.int32)) > 328)[0][-1]) / SR)

    def lag(cfg):
        ends = [e for e in run_segmenter(x, cfg, grow_every_ms=None) if isinstance(e, SpeechEnd)]
        assert len(ends) == len(truth)
        return float(np.median([e.utt.last_voiced_end / SR - s for e, s in zip(ends, stops)]))

    assert abs(lag(VadConfig())) <= 0.045, "the end of speech is the voice's end, to a frame"
    assert lag(VadConfig(end_gate_db=0)) >= 0.06, "without the energy gate webrtcvad's overhang is counted"
    # the gate follows the background: on a noisy line the end is still found (and not cut early)
    rng = np.random.default_rng(0)
    noisy = np.clip(x + rng.normal(0, 30, len(x)), -32768, 32767).astype(np.int16)
    ends = [e for e in run_segmenter(noisy, grow_every_ms=None) if isinstance(e, SpeechEnd)]
    assert len(ends) == len(truth)
    assert all(e.end / SR >= s for e, s in zip(ends, stops)), "the kept tail covers the last sound"


@pytest.mark.parametrize("snr_db", [10, 6])
def test_the_end_gate_never_splits_speech_in_a_noisy_room(demo, snr_db):
    x, truth = demo
    xs = x.astype(np.float64)
    speech = np.concatenate([xs[int(t["start"] * SR):int(t["end"] * SR)] for t in truth])
    sigma = np.sqrt(np.mean(speech ** 2) / 10 ** (snr_db / 10))
    noisy = np.clip(xs + np.random.default_rng(1).normal(0, sigma, len(xs)), -32768, 32767).astype(np.int16)
    gated = [e for e in run_segmenter(noisy, grow_every_ms=None) if isinstance(e, SpeechEnd)]
    plain = [e for e in run_segmenter(noisy, VadConfig(end_gate_db=0), grow_every_ms=None) if isinstance(e, SpeechEnd)]
    assert len(gated) == len(plain) == len(truth), "speech as quiet as the room is still speech"
