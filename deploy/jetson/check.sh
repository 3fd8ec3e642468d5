#!/usr/bin/env bash
# Device check for fdrl-stream on a Jetson: one PASS/WARN/FAIL/SKIP line per item, with what to do about
# a FAIL or WARN. Run it on the host before building the image, and inside the container
# (`deploy/jetson/run.sh check`) to check the software the image brings. Exit status 1 if any FAIL.
# Safe anywhere: on a machine that is not a Jetson the Jetson items FAIL or SKIP with the reason.
set -uo pipefail

usage() {
  cat <<'EOF'
usage: deploy/jetson/check.sh [--python PY] [--cache DIR] [--no-mic]

  --python PY   Python to test TensorRT / CTranslate2 / sounddevice with (default: python3 on PATH;
                inside the image that is the venv with JetPack's TensorRT visible)
  --cache DIR   where TensorRT engines will be cached, for the disk-space check
                (default: $FDRL_ENGINE_CACHE, else /data/engines in the container, else $FDRL_DATA or
                /var/lib/fdrl-stream on the host)
  --no-mic      skip opening microphones (they are only probed, nothing is recorded)
EOF
}

PY=${PYTHON:-python3}
CACHE=${FDRL_ENGINE_CACHE:-}
MIC=1
while (($#)); do
  case "$1" in
    --python) PY=${2:?--python needs a value}; shift 2 ;;
    --cache) CACHE=${2:?--cache needs a value}; shift 2 ;;
    --no-mic) MIC=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

IN_CONTAINER=0 IN_IMAGE=0
[[ -f /.dockerenv || -f /run/.containerenv ]] && IN_CONTAINER=1
[[ -f /opt/fdrl/entrypoint.sh ]] && IN_IMAGE=1 # inside the fdrl-stream image (deploy/jetson/Dockerfile)
if [[ -z "$CACHE" ]]; then
  if ((IN_IMAGE)); then CACHE=/data/engines; else CACHE=${FDRL_DATA:-/var/lib/fdrl-stream}/engines; fi
fi

NPASS=0 NWARN=0 NFAIL=0 NSKIP=0
# report LEVEL ITEM MESSAGE [FIX]
report() {
  local level=$1 item=$2 msg=$3 fix=${4:-}
  printf '%-4s  %-15s %s\n' "$level" "$item" "$msg"
  [[ -n "$fix" ]] && printf '      %-15s fix: %s\n' "" "$fix"
  case "$level" in PASS) ((NPASS++)) ;; WARN) ((NWARN++)) ;; FAIL) ((NFAIL++)) ;; SKIP) ((NSKIP++)) ;; esac
  return 0
}
have() { command -v "$1" >/dev/null 2>&1; }
pyrun() { "$PY" -c "$1" 2>&1; }

where=host
((IN_CONTAINER)) && where=container
((IN_IMAGE)) && where="fdrl-stream image"
echo "fdrl-stream device check ($where: $(uname -n), $(uname -m), $(date '+%Y-%m-%d %H:%M'))"

# --- L4T / JetPack -------------------------------------------------------------------------------------
check_l4t() {
  local f=${FDRL_TEGRA_RELEASE:-/etc/nv_tegra_release} line major rev
  if [[ ! -r $f ]]; then
    if ((IN_CONTAINER)); then
      report FAIL "L4T/JetPack" "$f is not visible in this container" \
        "start it with -v /etc/nv_tegra_release:/etc/nv_tegra_release:ro (deploy/jetson/run.sh does)"
    else
      report FAIL "L4T/JetPack" "not a Jetson: $f is missing" \
        "flash JetPack 6.1 or 6.2 (L4T R36.4.x) with SDK Manager or the SD-card image"
    fi
    return
  fi
  line=$(head -n1 "$f")
  # e.g. "# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
  major=$(sed -n 's/^# R\([0-9]*\) .*/\1/p' <<<"$line")
  rev=$(sed -n 's/.*REVISION: \([0-9.]*\).*/\1/p' <<<"$line")
  local l4t="$major.$rev" jp=""
  case "$l4t" in
    36.3 | 36.3.*) jp="6.0" ;;
    36.4 | 36.4.0 | 36.4.1 | 36.4.2) jp="6.1" ;;
    36.4.3) jp="6.2" ;;
    36.4.4) jp="6.2.1" ;;
    36.*) jp="6.x" ;;
  esac
  if [[ "$major" == 36 && "$rev" == 4* ]] || [[ "$major" == 36 && -n "$rev" && ${rev%%.*} -gt 4 ]]; then
    report PASS "L4T/JetPack" "R$l4t (JetPack $jp)"
  elif [[ "$major" == 36 ]]; then
    report WARN "L4T/JetPack" "R$l4t (JetPack $jp): the image is built for R36.4 (CUDA 12.6, TensorRT 10.3)" \
      "upgrade to JetPack 6.1/6.2 (sudo apt dist-upgrade within r36, or reflash), or build with --build-arg L4T_IMAGE matching R$l4t"
  else
    report FAIL "L4T/JetPack" "R$l4t: this project targets JetPack 6 (L4T R36.x); JetPack 5 and 7 are not supported" \
      "reflash with JetPack 6.1 or 6.2"
  fi
}

# --- Python ---------------------------------------------------------------------------------------------
check_python() {
  local v
  if ! v=$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null); then
    report FAIL "python" "'$PY' does not run" "install python3 (JetPack ships 3.10) or pass --python"
    return
  fi
  case "$v" in
    3.10.*) report PASS "python" "$v ($PY)" ;;
    3.1[1-9].*) report WARN "python" "$v ($PY): JetPack 6's TensorRT bindings are for Python 3.10" \
      "use the system python3 (3.10) or the container" ;;
    *) report FAIL "python" "$v ($PY): fdrl-stream needs Python >= 3.10" "use the system python3 of JetPack 6 or the container" ;;
  esac
}

# --- TensorRT (JetPack's python3-libnvinfer) ----------------------------------------------------------
check_tensorrt() {
  local out
  if out=$(pyrun 'import tensorrt; print(tensorrt.__version__)'); then
    case "$out" in
      10.3.*) report PASS "TensorRT" "$out (Python bindings import)" ;;
      10.*) report WARN "TensorRT" "$out: JetPack 6.1/6.2 ship 10.3; engines build for whatever is installed" \
        "fine if this is the apt TensorRT of your JetPack; never pip-install tensorrt on a Jetson" ;;
      *) report FAIL "TensorRT" "$out: the export/run-time is written for TensorRT 10.x (JetPack 6.1+)" \
        "upgrade to JetPack 6.1/6.2 (TensorRT 10.3)" ;;
    esac
  else
    local fix="sudo apt install python3-libnvinfer (JetPack's TensorRT; never pip install tensorrt on a Jetson); in a venv use --system-site-packages"
    ((IN_IMAGE)) && fix="rebuild the image from deploy/jetson/Dockerfile (it uses JetPack's python3-libnvinfer)"
    report FAIL "TensorRT" "cannot import tensorrt with $PY: ${out##*$'\n'}" "$fix"
  fi
}

# --- CUDA toolkit / runtime version -----------------------------------------------------------------
check_cuda() {
  local v="" src=""
  local nvcc
  nvcc=$(command -v nvcc || true)
  [[ -z "$nvcc" && -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc
  if [[ -n "$nvcc" ]]; then
    v=$("$nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
    src="nvcc"
  fi
  if [[ -z "$v" && -r /usr/local/cuda/version.json ]]; then
    v=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["cuda"]["version"])' \
      /usr/local/cuda/version.json 2>/dev/null)
    src="/usr/local/cuda/version.json"
  fi
  case "$v" in
    "") report FAIL "CUDA" "no CUDA toolkit found (no nvcc, no /usr/local/cuda/version.json)" \
      "on the host: sudo apt install nvidia-jetpack (or cuda-toolkit-12-6); the container brings its own" ;;
    12.6*) report PASS "CUDA" "$v ($src)" ;;
    12.*) report WARN "CUDA" "$v ($src): JetPack 6.1/6.2 use CUDA 12.6; the image is built against 12.6" \
      "upgrade to JetPack 6.1/6.2 so host driver and image agree" ;;
    *) report FAIL "CUDA" "$v ($src): JetPack 6 (CUDA 12.x) is required" "reflash with JetPack 6.1 or 6.2" ;;
  esac
}

# --- CTranslate2 (faster-whisper) with CUDA ------------------------------------------------------------
check_ctranslate2() {
  local out
  out=$(pyrun '
import ctranslate2 as c
n = c.get_cuda_device_count()
try:
    types = sorted(c.get_supported_compute_types("cuda"))
except Exception as e:  # CPU-only build: ValueError; CUDA build without a usable GPU: RuntimeError
    types = ["%s: %s" % (type(e).__name__, e)]
print("%s|%d|%s" % (c.__version__, n, ", ".join(types)))
')
  local rc=$?
  if ((rc != 0)); then
    if ((IN_IMAGE)); then
      report FAIL "CTranslate2" "cannot import ctranslate2: ${out##*$'\n'}" "rebuild the image (its builder stage compiles CTranslate2 with CUDA)"
    else
      report SKIP "CTranslate2" "not installed for $PY on the host (the container brings a CUDA build)" \
        "check it inside the image: deploy/jetson/run.sh check"
    fi
    return
  fi
  out=${out##*$'\n'}
  local ver=${out%%|*} rest=${out#*|}
  local n=${rest%%|*} types=${rest#*|}
  if ((n > 0)); then
    report PASS "CTranslate2" "$ver sees $n CUDA device(s); compute types: $types"
  elif [[ "$types" == *"not compiled with CUDA"* ]]; then
    report FAIL "CTranslate2" "$ver is a CPU-only build ('This CTranslate2 package was not compiled with CUDA support')" \
      "PyPI's aarch64 wheels are CPU-only: use the image (CTranslate2 built with -DWITH_CUDA=ON for sm_87)"
  else
    report FAIL "CTranslate2" "$ver was built with CUDA but sees 0 devices (${types})" \
      "run the container with --runtime nvidia (run.sh does); on the host check the GPU driver (JetPack install)"
  fi
}

# --- onnxruntime (the fallback backend) -----------------------------------------------------------------
check_onnxruntime() {
  local out
  if out=$(pyrun 'import onnxruntime as o; print(o.__version__, ",".join(o.get_available_providers()))'); then
    report PASS "onnxruntime" "${out##*$'\n'} (fallback backend)"
  elif ((IN_IMAGE)); then
    report FAIL "onnxruntime" "cannot import onnxruntime: ${out##*$'\n'}" "rebuild the image"
  else
    report SKIP "onnxruntime" "not installed for $PY on the host (the container brings it)"
  fi
}

# --- microphones and the rates they accept ------------------------------------------------------------
check_mics() {
  local cards=""
  if have arecord; then
    cards=$(arecord -l 2>/dev/null | grep '^card ' || true)
  fi
  if ((MIC == 0)); then
    report SKIP "microphone" "--no-mic given"
    return
  fi
  local out rc
  out=$(pyrun '
import sounddevice as sd
found = 0
for i, d in enumerate(sd.query_devices()):
    if d["max_input_channels"] < 1:
        continue
    found += 1
    ok = []
    for rate in (16000, 48000):
        try:
            sd.check_input_settings(device=i, samplerate=rate, channels=1, dtype="int16")
            ok.append(rate)
        except Exception:
            pass
    print("%d|%s|%s" % (i, d["name"], ",".join(str(r) for r in ok)))
print("TOTAL|%d" % found)
')
  rc=$?
  if ((rc == 0)); then
    local line n16=0 n48=0 devs=""
    while IFS= read -r line; do
      [[ "$line" == TOTAL\|* || -z "$line" ]] && continue
      local idx=${line%%|*} rest=${line#*|}
      local name=${rest%|*} rates=${rest##*|}
      [[ ",$rates," == *,16000,* ]] && ((n16++))
      [[ ",$rates," == *,48000,* ]] && ((n48++))
      devs+="$idx '$name' [${rates:-no 16k/48k}]; "
    done <<<"$out"
    if [[ -z "$devs" ]]; then
      local fix="plug in a USB microphone (check with: arecord -l)"
      ((IN_CONTAINER)) && fix="pass the sound devices into the container: --device /dev/snd --group-add audio (run.sh does)"
      report FAIL "microphone" "no input device found${cards:+ (arecord sees: $cards)}" "$fix"
    elif ((n16 > 0)); then
      report PASS "microphone" "${devs%; }"
    elif ((n48 > 0)); then
      report WARN "microphone" "${devs%; }: 48 kHz only" \
        "fine: the run-time captures at 48 kHz and resamples to 16 kHz; pick it with FDRL_MIC_DEVICE"
    else
      report FAIL "microphone" "${devs%; }: none accepts 16 kHz or 48 kHz mono int16" \
        "use a USB microphone that does 16 or 48 kHz, or route it through PulseAudio/PipeWire (README)"
    fi
    return
  fi
  # no sounddevice: list ALSA cards and their rates with arecord
  if [[ -z "$cards" ]]; then
    if have arecord; then
      report FAIL "microphone" "no capture device (arecord -l lists none)" "plug in a USB microphone; in a container pass --device /dev/snd"
    else
      report SKIP "microphone" "neither sounddevice (for $PY) nor arecord is installed" "sudo apt install alsa-utils"
    fi
    return
  fi
  local summary="" c d rates
  while IFS= read -r line; do
    c=$(sed -n 's/^card \([0-9]*\):.*/\1/p' <<<"$line")
    d=$(sed -n 's/.*, device \([0-9]*\):.*/\1/p' <<<"$line")
    rates=$(timeout 5 arecord -D "hw:$c,$d" --dump-hw-params -f S16_LE -d 1 /dev/null 2>&1 | sed -n 's/^RATE: *//p' | head -n1)
    summary+="hw:$c,$d rates ${rates:-?}; "
  done <<<"$cards"
  report WARN "microphone" "${summary%; } (sounddevice not importable with $PY, rates from ALSA)" \
    "the run-time needs 16000 or 48000 in those ranges; check inside the image: deploy/jetson/run.sh check"
}

# --- power mode ------------------------------------------------------------------------------------------
check_power() {
  local nvp
  nvp=$(command -v nvpmodel || true)
  [[ -z "$nvp" && -x /usr/sbin/nvpmodel ]] && nvp=/usr/sbin/nvpmodel
  if [[ -z "$nvp" ]]; then
    if ((IN_CONTAINER)); then
      report SKIP "power mode" "nvpmodel is not in the container" "run deploy/jetson/check.sh on the host"
    else
      report SKIP "power mode" "nvpmodel not found (not a Jetson)"
    fi
    return
  fi
  local q mode
  q=$("$nvp" -q 2>&1) || true
  mode=$(sed -n 's/^NV Power Mode: *//p' <<<"$q" | head -n1)
  if [[ -z "$mode" ]]; then
    report WARN "power mode" "could not read it: ${q%%$'\n'*}" "sudo nvpmodel -q"
  elif [[ "$mode" == MAXN* ]]; then
    report PASS "power mode" "$mode"
  else
    report WARN "power mode" "$mode: lower than MAXN, latency will be higher" \
      "sudo nvpmodel -m <id> (ids: grep POWER_MODEL /etc/nvpmodel.conf; Orin Nano Super: 2 = MAXN_SUPER, AGX/NX: 0 = MAXN), then sudo jetson_clocks"
  fi
}

# --- unified memory ---------------------------------------------------------------------------------------
check_memory() {
  local total avail swap
  total=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
  avail=$(awk '/^MemAvailable:/ {print int($2/1024)}' /proc/meminfo)
  swap=$(awk '/^SwapTotal:/ {print int($2/1024)}' /proc/meminfo)
  if [[ -z "$avail" ]]; then
    report SKIP "memory" "/proc/meminfo unreadable"
    return
  fi
  local msg="${avail} MiB available of ${total} MiB (CPU and GPU share it), swap ${swap} MiB"
  local fix="stop other GPU/desktop work (sudo systemctl isolate multi-user.target frees ~800 MB on a devkit), or use a smaller Whisper"
  if ((avail < 1024)); then
    report FAIL "memory" "$msg: the run-time needs about 1.5 GiB" "$fix"
  elif ((avail < 2048)); then
    report WARN "memory" "$msg: tight for Whisper + TensorRT engine build" "$fix"
  else
    report PASS "memory" "$msg"
  fi
  if ((total <= 8704 && swap < 2048)); then
    report WARN "swap" "${swap} MiB swap on a ${total} MiB board: the first engine build can peak" \
      "sudo fallocate -l 4G /swapfile && sudo chmod 600 /swapfile && sudo mkswap /swapfile && sudo swapon /swapfile"
  fi
}

# --- disk space for engines (and, on the host, for the image) ---------------------------------------------
free_mib() { # nearest existing ancestor of $1
  local p=$1
  while [[ ! -e "$p" && "$p" != / ]]; do p=$(dirname "$p"); done
  df -Pm "$p" 2>/dev/null | awk 'NR==2 {print $4}'
}
check_disk() {
  local free
  free=$(free_mib "$CACHE")
  if [[ -z "$free" ]]; then
    report SKIP "disk (engines)" "cannot stat $CACHE"
  elif ((free < 200)); then
    report FAIL "disk (engines)" "${free} MiB free at $CACHE: an engine + timing cache need a few hundred MB" "free disk space or point FDRL_DATA at a bigger disk (NVMe)"
  elif ((free < 1024)); then
    report WARN "disk (engines)" "${free} MiB free at $CACHE" "keep >= 1 GiB free for engine rebuilds after model updates"
  else
    report PASS "disk (engines)" "${free} MiB free at $CACHE"
  fi
  if ((!IN_CONTAINER)) && have docker; then
    local root
    root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)
    root=${root:-/var/lib/docker}
    free=$(free_mib "$root")
    if [[ -n "$free" ]] && ((free < 20480)); then
      report WARN "disk (docker)" "${free} MiB free at $root: building the image needs ~20 GB (l4t-jetpack base + CUDA build)" \
        "move docker's data-root to NVMe (/etc/docker/daemon.json \"data-root\") or prune: docker system prune"
    elif [[ -n "$free" ]]; then
      report PASS "disk (docker)" "${free} MiB free at $root"
    fi
  fi
}

# --- docker with the NVIDIA runtime (host only) ----------------------------------------------------------
check_docker() {
  ((IN_CONTAINER)) && return
  if ! have docker; then
    report WARN "docker" "docker is not installed" "sudo apt install docker.io nvidia-container (JetPack's container toolkit)"
    return
  fi
  local rt
  if ! rt=$(docker info --format '{{json .Runtimes}}' 2>&1); then
    report WARN "docker" "cannot talk to the docker daemon: ${rt##*$'\n'}" \
      "sudo systemctl start docker; run as root or add yourself to the docker group"
    return
  fi
  if [[ "$rt" == *nvidia* ]]; then
    report PASS "docker" "NVIDIA container runtime registered"
  else
    report FAIL "docker" "no 'nvidia' runtime in docker" \
      "sudo apt install nvidia-container && sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
  fi
}

check_l4t
check_python
check_cuda
check_tensorrt
check_ctranslate2
check_onnxruntime
check_mics
check_power
check_memory
check_disk
check_docker

echo "summary: $NPASS PASS, $NWARN WARN, $NFAIL FAIL, $NSKIP SKIP"
((NFAIL == 0))
