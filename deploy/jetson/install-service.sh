#!/usr/bin/env bash
# Install (or remove) the fdrl-stream systemd service on a Jetson: copies run.sh / check.sh / README to
# /usr/local/lib/fdrl-stream, the unit(s) to /etc/systemd/system, writes /etc/default/fdrl-stream,
# creates the data folder for the image's user (uid 1000), then enables and starts the service.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: sudo deploy/jetson/install-service.sh [options]

  --image IMG        image the service runs (default: fdrl-stream:jetson)
  --data DIR         data folder mounted at /data (default: /var/lib/fdrl-stream)
  --endpoint URL     ZeroMQ publisher (default: tcp://127.0.0.1:5556 = this machine only; use
                     tcp://0.0.0.0:5556 only if other machines must subscribe, and firewall it)
  --device MIC       microphone (sounddevice index or name substring; default: system default)
  --perf             also install jetson-perf.service (jetson_clocks at boot, optional power mode)
  --nvpmodel ID      power mode for jetson-perf.service (implies --perf; ids in /etc/nvpmodel.conf)
  --no-start         install and enable, but do not start now
  --uninstall        stop, disable and remove the units and scripts (keeps the data folder)
Existing settings in /etc/default/fdrl-stream are kept unless given again here.
DESTDIR=<dir> installs under <dir> without touching systemd (for packaging and tests).
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DESTDIR=${DESTDIR:-}
LIB=$DESTDIR/usr/local/lib/fdrl-stream
UNITS=$DESTDIR/etc/systemd/system
DEFAULTS=$DESTDIR/etc/default/fdrl-stream
declare -A set_=()
PERF=0 START=1 UNINSTALL=0
while (($#)); do
  case "$1" in
    --image) set_[FDRL_IMAGE]=${2:?--image needs a value}; shift 2 ;;
    --data) set_[FDRL_DATA]=${2:?--data needs a value}; shift 2 ;;
    --endpoint) set_[FDRL_ENDPOINT]=${2:?--endpoint needs a value}; shift 2 ;;
    --device) set_[FDRL_MIC_DEVICE]=${2:?--device needs a value}; shift 2 ;;
    --nvpmodel) set_[FDRL_NVPMODEL]=${2:?--nvpmodel needs a value}; PERF=1; shift 2 ;;
    --perf) PERF=1; shift ;;
    --no-start) START=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install-service.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

SYSTEMD=1
[[ -n "$DESTDIR" ]] && SYSTEMD=0
if ((SYSTEMD)) && [[ $(id -u) -ne 0 ]]; then
  echo "install-service.sh: run it as root (sudo $0 $*)" >&2
  exit 2
fi
sd() { if ((SYSTEMD)); then systemctl "$@"; fi; }

if ((UNINSTALL)); then
  sd disable --now fdrl-stream.service jetson-perf.service 2>/dev/null || true
  rm -f "$UNITS/fdrl-stream.service" "$UNITS/jetson-perf.service"
  rm -rf "$LIB"
  sd daemon-reload
  echo "install-service.sh: removed the service; kept $DEFAULTS and the data folder"
  exit 0
fi

install -d "$LIB" "$UNITS" "$(dirname "$DEFAULTS")"
install -m 0755 "$HERE/run.sh" "$HERE/check.sh" "$LIB/"
install -m 0644 "$HERE/README.md" "$LIB/"
install -m 0644 "$HERE/fdrl-stream.service" "$UNITS/"
((PERF)) && install -m 0644 "$HERE/jetson-perf.service" "$UNITS/"

# /etc/default/fdrl-stream: keep what is there, add defaults for missing keys, override what was given
declare -A conf=([FDRL_IMAGE]=fdrl-stream:jetson [FDRL_DATA]=/var/lib/fdrl-stream
  [FDRL_ENDPOINT]=tcp://127.0.0.1:5556 [FDRL_MIC_DEVICE]="" [FDRL_NVPMODEL]="")
if [[ -f "$DEFAULTS" ]]; then
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^FDRL_[A-Z_]+$ ]] && conf[$key]=$value
  done <"$DEFAULTS"
fi
for key in "${!set_[@]}"; do conf[$key]=${set_[$key]}; done
{
  echo "# fdrl-stream settings, read by fdrl-stream.service (run.sh) and jetson-perf.service."
  echo "# After editing: sudo systemctl restart fdrl-stream. Keys: see deploy/jetson/README.md."
  for key in $(printf '%s\n' "${!conf[@]}" | sort); do
    echo "$key=${conf[$key]}"
  done
} >"$DEFAULTS.tmp"
mv "$DEFAULTS.tmp" "$DEFAULTS"

DATA=$DESTDIR${conf[FDRL_DATA]}
install -d "$DATA" "$DATA/onnx" "$DATA/engines"
if ((SYSTEMD)); then
  chown 1000:1000 "$DATA" "$DATA/onnx" "$DATA/engines"
fi

case "${conf[FDRL_ENDPOINT]}" in
  tcp://127.0.0.1:* | tcp://localhost:* | "tcp://[::1]:"* | ipc://*) ;;
  *) echo "install-service.sh: the publisher will listen on ${conf[FDRL_ENDPOINT]}: firewall the port (README step 8)" >&2 ;;
esac
if [[ ! -f "$DATA/onnx/fdrl.onnx" ]]; then
  echo "install-service.sh: note: no model in $DATA/onnx yet; copy the exported ONNX folder there (README step 4)" >&2
  echo "  unless it is baked into the image" >&2
fi

sd daemon-reload
((PERF)) && sd enable jetson-perf.service
sd enable fdrl-stream.service
if ((START)); then
  ((PERF)) && sd start jetson-perf.service
  sd restart fdrl-stream.service
  ((SYSTEMD)) && echo "install-service.sh: started; follow it with: journalctl -u fdrl-stream -f"
fi
echo "install-service.sh: installed (settings: $DEFAULTS)"
