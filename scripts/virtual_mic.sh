#!/usr/bin/env bash
# A virtual microphone (PulseAudio null sink + remapped monitor source) for machines without a sound card,
# so the real `--mic` path (sounddevice -> PortAudio -> ALSA -> pulse) can be tested. Recipe and pitfalls:
# ../shared/notes/VIRTUAL_MIC.md (tested: a 16 kHz signal played with paplay is recorded bit-exact).
#
#   eval "$(scripts/virtual_mic.sh start [DIR])"   # starts the daemon, prints the environment to use
#   paplay speech.wav                               # what you play is what the microphone hears
#   scripts/virtual_mic.sh stop [DIR]
#
# Needs: pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins (scripts/setup.sh installs them).
set -euo pipefail

cmd=${1:-}
D=${2:-${VIRTUAL_MIC_DIR:-/tmp/fdrl-virtual-mic}}

die() { echo "virtual_mic.sh: $*" >&2; exit 1; }

use_env() {
    export HOME=$D XDG_RUNTIME_DIR=$D/run PULSE_SERVER=unix:$D/run/pulse/native
}

print_env() {
    echo "export HOME='$D' XDG_RUNTIME_DIR='$D/run' PULSE_SERVER='unix:$D/run/pulse/native' PULSE_SOURCE=vmic"
}

start() {
    for tool in pulseaudio pactl parec paplay; do
        command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install pulseaudio pulseaudio-utils)"
    done
    mkdir -p "$D"
    D=$(cd "$D" && pwd)
    use_env
    if pactl info >/dev/null 2>&1; then  # already running here
        print_env
        return 0
    fi
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
    cat > "$D/pa.pa" <<'PA'
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=vsink format=s16le rate=16000 channels=1
load-module module-remap-source master=vsink.monitor source_name=vmic
set-default-sink vsink
set-default-source vmic
PA
    pulseaudio --daemonize=yes --system=false --exit-idle-time=-1 -n -F "$D/pa.pa" \
        --log-target="file:$D/pa.log" 2>/dev/null || die "pulseaudio did not start (see $D/pa.log)"
    for _ in $(seq 100); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
    pactl info >/dev/null 2>&1 || die "pulseaudio did not come up within 10 s (see $D/pa.log)"
    # REQUIRED: without a reader on the monitor the idle null sink renders 2 s ahead and late recorders
    # get their first audio up to 2 s late (VIRTUAL_MIC.md, pitfall 1)
    parec -d vsink.monitor --latency-msec=10 --raw >/dev/null 2>&1 &
    echo $! > "$D/keepalive.pid"
    for _ in $(seq 100); do
        lat=$(pactl list sinks | sed -n 's/.*Latency: \([0-9]*\) usec.*/\1/p' | head -n1)
        [ -n "$lat" ] && [ "$lat" -lt 100000 ] && break
        sleep 0.1
    done
    print_env
}

stop() {
    [ -d "$D" ] || return 0
    D=$(cd "$D" && pwd)
    use_env
    if [ -f "$D/keepalive.pid" ]; then
        kill "$(cat "$D/keepalive.pid")" 2>/dev/null || true
        rm -f "$D/keepalive.pid"
    fi
    pulseaudio --kill 2>/dev/null || true
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    env) D=$(cd "$D" 2>/dev/null && pwd || echo "$D"); print_env ;;
    *) echo "usage: $0 start|stop|env [DIR]   (DIR default: /tmp/fdrl-virtual-mic)" >&2; exit 2 ;;
esac
