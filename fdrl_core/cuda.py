"""CUDA from Python without torch, in one place: cuda-python's runtime module and its error convention.

Used by the TensorRT backend (device buffers, streams) and by the engine cache (which GPU is this).
cuda-python moved the runtime module in 12.6 (`cuda.bindings.runtime`; `cuda.cudart` was removed in 13);
JetPack 6 has CUDA 12.6, so `cuda-python>=12.2,<13` (the `tensorrt` extra) covers both spellings.
"""

from __future__ import annotations

INSTALL_HINT = "pip install 'cuda-python>=12.2,<13' (JetPack 6 has CUDA 12.6; 13.x targets CUDA 13 drivers)"


class CudaError(RuntimeError):
    """A CUDA runtime call that returned an error code; the message names the call and the code."""


def cuda_runtime():
    """cuda-python's CUDA runtime module; ImportError (with how to install it) when absent."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python 12.x
        except ImportError as e:
            raise ImportError(f"cuda-python is not installed ({e}): {INSTALL_HINT}") from None
    return cudart


def check(result, what: str = "CUDA call"):
    """cuda-python returns (error, *values): raise CudaError on an error, else the value(s)
    (None for none, the value for one, a tuple for several)."""
    err, *rest = result
    if int(err) != 0:
        raise CudaError(f"{what} failed: {err}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)
