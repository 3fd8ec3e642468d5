#!/usr/bin/env bash
# Run the fdrl-stream image on a Jetson with the flags it needs: the NVIDIA runtime (GPU), the host
# network (ZeroMQ), the sound devices and the audio group (microphone), and a data volume that holds the
# exported ONNX model (onnx/) and the TensorRT engines built from it on first start (engines/).
# The systemd unit (fdrl-stream.service) calls `run.sh service`, so both start the same container.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/jetson/run.sh [start|service|check|stop|logs] [options] [-- stream.run arguments]

commands:
  start     (default) start in the background; docker restarts it unless you stop it
  service   run in the foreground without a TTY (what fdrl-stream.service runs)
  check     run deploy/jetson/check.sh inside the image with the same devices and volume
  stop      stop and remove the container
  logs      follow the container's log (engine build progress, fallbacks, errors)

options:
  --image IMG      image to run (default: $FDRL_IMAGE or fdrl-stream:jetson)
  --data DIR       host folder mounted at /data: onnx/ (your exported model) and engines/ (cache)
                   (default: $FDRL_DATA or /var/lib/fdrl-stream; must be writable by uid 1000)
  --endpoint URL   ZeroMQ publisher (default: $FDRL_ENDPOINT or tcp://127.0.0.1:5556, this machine only).
                   To let other machines subscribe, say so: --endpoint tcp://0.0.0.0:5556, and
                   firewall the port (README, step 8)
  --device MIC     microphone (sounddevice index or name substring; default: $FDRL_MIC_DEVICE or the
                   system default input)
  --name NAME      container name (default: fdrl-stream)
  --dry-run        print the docker command instead of running it
Passed through to the container when set: FDRL_BACKEND, FDRL_PRECISION, FDRL_ENGINE_ARGS, FDRL_ONNX_DIR,
FDRL_ASR_DEVICE, FDRL_ASR_COMPUTE_TYPE (see entrypoint.sh).
EOF
}

CMD=start
case "${1:-}" in start | service | check | stop | logs) CMD=$1; shift ;; esac
IMAGE=${FDRL_IMAGE:-fdrl-stream:jetson}
DATA=${FDRL_DATA:-/var/lib/fdrl-stream}
ENDPOINT=${FDRL_ENDPOINT:-tcp://127.0.0.1:5556}
MIC=${FDRL_MIC_DEVICE:-}
NAME=fdrl-stream
DRY=0
while (($#)); do
  case "$1" in
    --image) IMAGE=${2:?--image needs a value}; shift 2 ;;
    --data) DATA=${2:?--data needs a value}; shift 2 ;;
    --endpoint) ENDPOINT=${2:?--endpoint needs a value}; shift 2 ;;
    --device) MIC=${2:?--device needs a value}; shift 2 ;;
    --name) NAME=${2:?--name needs a value}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

DOCKER=${DOCKER:-docker}
run() {
  if ((DRY)); then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

case "$CMD" in
  stop) run "$DOCKER" rm -f "$NAME"; exit 0 ;;
  logs) run "$DOCKER" logs -f "$NAME"; exit 0 ;;
esac

if ((!DRY)); then
  if [[ ! -d "$DATA" ]]; then
    echo "run.sh: the data folder $DATA does not exist; create it for the image's user (uid 1000):" >&2
    echo "  sudo install -d -o 1000 -g 1000 $DATA $DATA/onnx $DATA/engines" >&2
    exit 2
  fi
  if [[ "$(stat -c %u "$DATA")" != 1000 ]]; then
    echo "run.sh: warning: $DATA is not owned by uid 1000 (the image's user); if the engine cache cannot be" >&2
    echo "  written: sudo chown -R 1000:1000 $DATA" >&2
  fi
fi

gid() { getent group "$1" | cut -d: -f3; }
# the image's user is in the image's audio group; adding the HOST's audio/video gids (by number) makes
# /dev/snd and the GPU device nodes accessible even when the numbers differ between host and image
audio=$(gid audio || true)
video=$(gid video || true)
args=(--runtime nvidia --network host
  -e "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
  --device /dev/snd --group-add "${audio:-audio}"
  -v "$DATA:/data"
  -e "FDRL_ENDPOINT=$ENDPOINT")
[[ -n "$video" ]] && args+=(--group-add "$video")
[[ -n "$MIC" ]] && args+=(-e "FDRL_MIC_DEVICE=$MIC")
for var in FDRL_BACKEND FDRL_PRECISION FDRL_ENGINE_ARGS FDRL_ONNX_DIR FDRL_ASR_DEVICE FDRL_ASR_COMPUTE_TYPE \
           FDRL_CURVE_SECRET FDRL_CURVE_CLIENTS; do
  [[ -n "${!var:-}" ]] && args+=(-e "$var=${!var}")
done
# L4T version for check.sh, and the host's tegrastats for the status heartbeat (RAM, GPU load, temperature)
[[ -e /etc/nv_tegra_release ]] && args+=(-v /etc/nv_tegra_release:/etc/nv_tegra_release:ro)
[[ -x /usr/bin/tegrastats ]] && args+=(-v /usr/bin/tegrastats:/usr/bin/tegrastats:ro)

case "$ENDPOINT" in
  tcp://127.0.0.1:* | tcp://localhost:* | "tcp://[::1]:"* | ipc://*) ;;
  *) echo "run.sh: publishing on $ENDPOINT: any machine that reaches this port can subscribe; firewall it (README step 8)" >&2 ;;
esac

case "$CMD" in
  start)
    ((DRY)) || "$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
    run "$DOCKER" run -d --restart unless-stopped --name "$NAME" "${args[@]}" "$IMAGE" "$@"
    ((DRY)) || echo "run.sh: started $NAME; follow the first start (engine build) with: $0 logs"
    ;;
  service)
    # foreground, no -t/-i (no TTY under systemd), removed on exit; systemd restarts it on failure
    if ((DRY)); then
      run "$DOCKER" run --rm --name "$NAME" "${args[@]}" "$IMAGE" "$@"
    else
      exec "$DOCKER" run --rm --name "$NAME" "${args[@]}" "$IMAGE" "$@"
    fi
    ;;
  check)
    tty=()
    [[ -t 1 ]] && tty=(-t)
    run "$DOCKER" run --rm "${tty[@]}" "${args[@]}" --entrypoint /opt/fdrl/check.sh "$IMAGE" "$@"
    ;;
esac
