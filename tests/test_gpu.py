"""The CUDA path without a GPU: the Whisper encoder output handed over from the device (a stand-in for a
CUDA StorageView), plus `gpu`-marked tests that run the real thing where CTranslate2 sees a GPU."""

from types import SimpleNamespace

import numpy as np
import pytest

ctranslate2 = pytest.importorskip("ctranslate2")


class CudaStorageStandIn:
    """Behaves like a ctranslate2.StorageView on a CUDA device: shape/dtype/device, no array interface,
    to_device() and to() as in CTranslate2 4.x. Records what it was asked to do."""

    device = "cuda"
    device_index = 0

    def __init__(self, array: np.ndarray, dtype_name: str | None = None, log: list | None = None):
        self._array = array
        self.dtype = SimpleNamespace(name=dtype_name or array.dtype.name)
        self.shape = list(array.shape)
        self.log = log if log is not None else []

    @property
    def __array_interface__(self):  # what CTranslate2 raises for a CUDA storage
        raise AttributeError("Cannot get __array_interface__ when the StorageView is on a CUDA device")

    def to_device(self, device):
        self.log.append(("to_device", device))
        assert device == ctranslate2.Device.cpu
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(self._array))

    def to(self, dtype):
        self.log.append(("to", dtype))
        assert dtype == ctranslate2.DataType.float32
        return CudaStorageStandIn(self._array.astype(np.float32), log=self.log)


def test_plain_asarray_fails_on_a_cuda_encoder_output():
    """The bug this guards against: np.asarray on a CUDA StorageView is a TypeError."""
    with pytest.raises((TypeError, ValueError)):
        np.asarray(CudaStorageStandIn(np.zeros((1, 4, 3), np.float16)), dtype=np.float32)


def test_encoder_output_to_host_moves_cuda_outputs_to_the_cpu():
    from fdrl_core.speech_frontend import encoder_output_to_host

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 1500, 384)).astype(np.float16)
    log: list = []
    out = encoder_output_to_host(CudaStorageStandIn(ref, log=log))
    assert out.dtype == np.float32 and out.shape == (1, 1500, 384)
    np.testing.assert_array_equal(out, ref.astype(np.float32))
    assert log == [("to_device", ctranslate2.Device.cpu)]
    # bfloat16 (compute_type bfloat16) has no numpy type: converted on the device first, then copied
    log.clear()
    out = encoder_output_to_host(CudaStorageStandIn(ref.astype(np.float32), dtype_name="bfloat16", log=log))
    assert [step for step, _ in log] == ["to", "to_device"] and out.dtype == np.float32
    # CPU storages and arrays pass straight through
    cpu = ctranslate2.StorageView.from_array(ref.astype(np.float32))
    np.testing.assert_array_equal(encoder_output_to_host(cpu), ref.astype(np.float32))
    assert encoder_output_to_host(ref).dtype == np.float32


class _FakeWhisper:
    """Just enough of faster_whisper.WhisperModel on a GPU: encode() leaves its output on the device."""

    def __init__(self):
        self.feature_extractor = lambda audio: np.zeros((80, max(1, len(audio) // 160)), np.float32)
        self.feature_extractor.nb_max_frames = 3000
        self.calls = 0

    def encode(self, features):
        self.calls += 1
        rng = np.random.default_rng(self.calls)
        return CudaStorageStandIn(rng.standard_normal((len(features), 1500, 384)).astype(np.float16))


def test_speech_frontend_frames_from_a_gpu_whisper():
    """SpeechFrontend end to end on a GPU-resident encoder output: the probe, frames() and frames_batch()."""
    from fdrl_core.speech_frontend import SpeechFrontend

    fe = SpeechFrontend(whisper=_FakeWhisper(), compute_type="float16")
    assert fe.dim == 384
    frames = fe.frames(np.zeros(16000, np.float32))  # 1 s -> 50 frames
    assert frames.shape == (50, 384) and frames.dtype == np.float32
    enc = fe.encode(np.zeros(8000, np.float32))
    shared = fe.frames(encoder_output=enc, num_samples=8000)  # the recogniser's shared pass
    assert shared.shape == (25, 384)
    batch = fe.frames_batch([np.zeros(3200, np.float32), np.zeros(32000, np.float32)])
    assert [b.shape for b in batch] == [(10, 384), (100, 384)]


def _cuda_devices() -> int:
    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a CUDA driver that fails to load counts as none
        return 0


@pytest.mark.gpu
def test_whisper_on_cuda_gives_frames_and_text(spoken_wav):
    """The real CUDA path: one encoder pass on the GPU (float16), decoded there, frames copied to the host."""
    if _cuda_devices() == 0:
        pytest.skip("CTranslate2 sees no CUDA device (CPU-only wheel or no GPU): the CUDA ASR path needs one")
    from fdrl_core.audio import load_audio
    from stream.asr import AsrConfig, Recognizer

    audio = load_audio(spoken_wav)
    gpu = Recognizer(AsrConfig(device="cuda", compute_type="float16"))
    cpu = Recognizer(AsrConfig(device="cpu", compute_type="int8"))
    hyp_gpu, hyp_cpu = gpu.transcribe(audio), cpu.transcribe(audio)
    assert hyp_gpu.frames.shape == hyp_cpu.frames.shape and hyp_gpu.frames.dtype == np.float32
    assert np.isfinite(hyp_gpu.frames).all()
    a, b = hyp_gpu.frames.ravel(), hyp_cpu.frames.ravel()
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.9  # fp16 GPU vs int8 CPU: same features
    assert "happy" in hyp_gpu.text.lower()
