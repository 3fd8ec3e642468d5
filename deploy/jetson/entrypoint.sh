#!/usr/bin/env bash
# Container entrypoint: make sure a TensorRT engine for THIS device exists (build it on first start, or
# when the shipped ONNX, the GPU or TensorRT changed), then exec the microphone run-time on it. When
# TensorRT is missing or the build fails, say why and run the same model on onnxruntime instead.
#
# Environment (all optional):
#   FDRL_ONNX_DIR       exported ONNX folder (fdrl.onnx + fdrl.onnx.data + fdrl.json + tokenizer.json);
#                       default: /data/onnx if it holds fdrl.onnx, else the copy baked into the image
#   FDRL_ENGINE_CACHE   where engines are cached (default /data/engines; keep it on the volume)
#   FDRL_BACKEND        auto (default) | tensorrt (fail instead of falling back) | onnxruntime (skip TRT)
#   FDRL_PRECISION      fp16 (default) | fp32
#   FDRL_ENGINE_ARGS    extra arguments for `python -m export ensure-engine` (see its --help)
#   FDRL_ENDPOINT       ZeroMQ publisher endpoint (default tcp://127.0.0.1:5556 = this machine only)
#   FDRL_CURVE_SECRET   CURVE server secret key file (python -m stream.keys), e.g. /data/keys/server.key_secret:
#                       subscribers need its public key; without it a non-loopback endpoint is plaintext
#   FDRL_CURVE_CLIENTS  folder of subscriber public keys (*.key) that may connect (with FDRL_CURVE_SECRET)
#   FDRL_MIC_DEVICE     microphone for sounddevice (index or name substring); default: system default
#   FDRL_ASR_DEVICE     auto (default: cuda when CTranslate2 sees a GPU, else cpu) | cuda | cpu
#   FDRL_ASR_COMPUTE_TYPE  CTranslate2 compute type (default int8_float16 on cuda, int8 on cpu)
# Arguments given to the container are appended to the `python -m stream.run` command line.
set -euo pipefail

log() { printf 'fdrl-entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

BAKED_ONNX=${FDRL_BAKED_ONNX:-/opt/fdrl/onnx}
DATA_ONNX=${FDRL_DATA_ONNX:-/data/onnx}
CACHE=${FDRL_ENGINE_CACHE:-/data/engines}
BACKEND=${FDRL_BACKEND:-auto}
PRECISION=${FDRL_PRECISION:-fp16}
ASR_DEVICE=${FDRL_ASR_DEVICE:-auto}
ENDPOINT=${FDRL_ENDPOINT:-tcp://127.0.0.1:5556}

case "$BACKEND" in auto | tensorrt | onnxruntime) ;; *) die "FDRL_BACKEND must be auto, tensorrt or onnxruntime (got '$BACKEND')" ;; esac
case "$PRECISION" in fp16 | fp32) ;; *) die "FDRL_PRECISION must be fp16 or fp32 (got '$PRECISION')" ;; esac
case "$ASR_DEVICE" in auto | cuda | cpu) ;; *) die "FDRL_ASR_DEVICE must be auto, cuda or cpu (got '$ASR_DEVICE')" ;; esac

# --- which ONNX folder ---------------------------------------------------------------------------
if [[ -n "${FDRL_ONNX_DIR:-}" ]]; then
  ONNX_DIR=$FDRL_ONNX_DIR
elif [[ -f "$DATA_ONNX/fdrl.onnx" ]]; then
  ONNX_DIR=$DATA_ONNX
else
  ONNX_DIR=$BAKED_ONNX
fi
if [[ ! -f "$ONNX_DIR/fdrl.onnx" ]]; then
  die "no exported model: '$ONNX_DIR/fdrl.onnx' does not exist. Export one on a dev machine with
  python -m export onnx --model <checkpoint> --out fdrl-onnx
then copy the folder to the data volume as <volume>/onnx (mounted at $DATA_ONNX), or bake it into the
image (deploy/jetson/model/ before docker build). See deploy/jetson/README.md, step 3."
fi
log "model: $ONNX_DIR"

# --- engine: reuse the cached one if it matches, else build (first start: minutes) -----------------
MODEL=$ONNX_DIR
RUN_BACKEND=onnxruntime
if [[ "$BACKEND" != onnxruntime ]]; then
  mkdir -p "$CACHE" || die "cannot create the engine cache $CACHE (is the volume writable by uid $(id -u)?)"
  engine_args=(--onnx "$ONNX_DIR" --cache "$CACHE")
  [[ "$PRECISION" == fp16 ]] && engine_args+=(--fp16)
  if [[ -n "${FDRL_ENGINE_ARGS:-}" ]]; then
    read -r -a extra <<<"$FDRL_ENGINE_ARGS"
    engine_args+=("${extra[@]}")
  fi
  log "checking the TensorRT engine cache in $CACHE (building one takes several minutes on first start)"
  started=$SECONDS
  rc=0
  # stdout = the engine path; stderr (progress, reasons) goes straight to the container log
  engine=$(python -m export ensure-engine "${engine_args[@]}") || rc=$?
  engine=${engine##*$'\n'}  # last line, in case anything else reached stdout
  if [[ $rc -eq 0 && -n "$engine" && -f "$engine" ]]; then
    log "TensorRT engine ready after $((SECONDS - started)) s: $engine"
    MODEL=$engine
    RUN_BACKEND=tensorrt
  else
    if [[ $rc -eq 0 ]]; then
      reason="ensure-engine exited 0 but printed no existing engine file ('$engine')"
    elif [[ $rc -eq 3 ]]; then
      reason="TensorRT is unavailable here or the engine build failed (reason above)"
    else
      reason="ensure-engine failed unexpectedly (exit $rc, messages above)"
    fi
    if [[ "$BACKEND" == tensorrt ]]; then
      log "error: $reason; FDRL_BACKEND=tensorrt forbids the onnxruntime fallback"
      exit 1
    fi
    log "$reason -> falling back to onnxruntime with $ONNX_DIR (slower; run deploy/jetson/check.sh)"
  fi
fi

# --- speech recognition on the GPU (the reason CTranslate2 is built with CUDA in the image) -------------
if [[ "$ASR_DEVICE" == auto ]]; then
  gpus=$(python -c 'import ctranslate2; print(ctranslate2.get_cuda_device_count())' 2>/dev/null || echo 0)
  if [[ "${gpus##*$'\n'}" =~ ^[1-9][0-9]*$ ]]; then
    ASR_DEVICE=cuda
  else
    ASR_DEVICE=cpu
    log "warning: CTranslate2 sees no CUDA device: Whisper runs on the CPU (slow); run check.sh (README: Troubleshooting)"
  fi
fi
if [[ "$ASR_DEVICE" == cuda ]]; then
  COMPUTE=${FDRL_ASR_COMPUTE_TYPE:-int8_float16}
else
  COMPUTE=${FDRL_ASR_COMPUTE_TYPE:-int8}
fi

# --- publish -----------------------------------------------------------------------------------------
security=()
[[ -n "${FDRL_CURVE_SECRET:-}" ]] && security+=(--curve-secret "$FDRL_CURVE_SECRET")
[[ -n "${FDRL_CURVE_CLIENTS:-}" ]] && security+=(--curve-clients "$FDRL_CURVE_CLIENTS")
case "$ENDPOINT" in
  tcp://127.0.0.1:* | tcp://localhost:* | "tcp://[::1]:"* | ipc://* | inproc://*) ;;
  *)
    if ((${#security[@]} == 0)); then
      # stream.run refuses a plaintext non-loopback bind unless told; this deployment asked for it
      log "warning: publishing on $ENDPOINT: every machine that can reach this port can subscribe (firewall it, or set FDRL_CURVE_SECRET)"
      security+=(--insecure-bind-any)
    fi
    ;;
esac

cmd=(python -m stream.run --mic)
[[ -n "${FDRL_MIC_DEVICE:-}" ]] && cmd+=(--device "$FDRL_MIC_DEVICE")
cmd+=(--backend "$RUN_BACKEND" --model "$MODEL" --asr-device "$ASR_DEVICE" --compute-type "$COMPUTE")
cmd+=(--endpoint "$ENDPOINT" "${security[@]}" "$@")
log "starting: ${cmd[*]}"
exec "${cmd[@]}"
