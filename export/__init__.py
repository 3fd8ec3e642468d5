"""export stage: compile FDRL for the edge run-time (`python -m export --help`).

onnx_export   MiniLM + FDRL head -> one ONNX graph (+ weights, tokenizer.json, fdrl.json sidecar)
check         onnx.checker, TensorRT 10.3 op lint (trt_ops), onnxruntime-vs-PyTorch parity
trt_build     TensorRT 10.x engine build (profile, workspace, timing cache, FP16/INT8) + engine sidecar
calib         real features for INT8 calibration
engine_cache  which cached engine fits this device (pure; shared with stream.backends)
ensure_engine container first start: reuse or build the engine, exit 3 when there is none
"""
