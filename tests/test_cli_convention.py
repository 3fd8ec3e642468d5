"""One command-line convention for stream.run, stream.subscribe, stream.keys, train, export and bench:
exit 0 success, 1 run-time failure, 2 usage/input error; one line by default; --debug adds the traceback;
errors name the file, field and line at fault."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fdrl_core.cli import EXIT_FAILURE, EXIT_USAGE, InputError, run_main
from stream.messages import validate
from tests.test_stream_support import REPO, Collector, assert_one_clean_line, clean_env, free_endpoint

DEMO_MODEL = REPO / "fdrl_core" / "demo_model"


def cli(*args, timeout=240, env=None):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env or clean_env(PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tone(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    sf.write(str(path), (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000, subtype="PCM_16")
    return path


def _bad_model(tmp_path, config_edit=None, labels_text=None, with_export=False):
    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder, ignore=None if with_export else shutil.ignore_patterns("onnx"))
    if config_edit:
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(config_edit)
        (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    if labels_text is not None:
        (folder / "labels.json").write_text(labels_text)
    return folder


# ---------------------------------------------------------------------------------------------- the helper

def test_run_main_maps_errors_to_the_convention(capsys):
    def raises(e):
        def body():
            raise e
        return body

    assert run_main("x", raises(InputError("bad --thing"))) == EXIT_USAGE
    assert capsys.readouterr().err == "x: bad --thing\n"
    assert run_main("x", raises(FileNotFoundError(2, "No such file or directory", "a.wav"))) == EXIT_USAGE
    assert capsys.readouterr().err == "x: a.wav: No such file or directory\n"
    assert run_main("x", raises(RuntimeError("boom\nmore"))) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err == "x: unexpected error: RuntimeError: boom (--debug shows the traceback)\n"
    assert run_main("x", raises(RuntimeError("boom")), debug=True) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "x: unexpected error: RuntimeError: boom"
    assert run_main("x", raises(KeyboardInterrupt())) == 130
    assert run_main("x", lambda: 0) == 0


@pytest.mark.parametrize("command", [("stream.run",), ("stream.subscribe",), ("stream.keys",), ("train", "fit"),
                                     ("export", "onnx"), ("bench", "pipeline")])
def test_every_command_offers_debug(command):
    res = cli(*command, "--help", timeout=120)
    assert res.returncode == 0 and "--debug" in res.stdout, res.stderr


@pytest.mark.parametrize("command", [("stream.run", "--loop", "x"), ("stream.subscribe", "--bogus"),
                                     ("stream.keys", "--bogus"), ("stream.report",), ("train", "fit"),
                                     ("export", "onnx", "--bogus"), ("bench", "pipeline", "--repeat", "x"),
                                     ("stream.dashboard", "--port", "x")])
def test_a_mistyped_option_is_one_line_not_the_usage_block(command):
    res = cli(*command, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "error:" in lines[0] and "--help" in lines[0], res.stderr


# ---------------------------------------------------------------------------------------------- stream.run

def test_a_directory_given_to_file_says_so(tmp_path):
    res = cli("stream.run", "--file", str(tmp_path), "--endpoint", free_endpoint(), timeout=120)
    assert res.returncode == 2 and "is a directory" in assert_one_clean_line(res.stderr)
    res = cli("stream.run", "--file", str(tmp_path), "--endpoint", free_endpoint(), "--debug", timeout=120)
    assert res.returncode == 2 and "Traceback" in res.stderr and "is a directory" in res.stderr


def test_a_fifo_or_device_given_to_file_is_refused_at_once(tmp_path):
    """A named pipe with no writer would block the open forever (and a pipe cannot be read twice, as the
    file checks need): one line, exit 2, no hang."""
    fifo = tmp_path / "talk.wav"
    os.mkfifo(fifo)
    for path in (fifo, Path(os.devnull)):
        res = cli("stream.run", "--file", str(path), "--endpoint", free_endpoint(), timeout=60)
        assert res.returncode == 2 and "not a regular file" in assert_one_clean_line(res.stderr), res.stderr


def test_nan_samples_exit_2_with_one_line(tmp_path):
    x = (0.1 * np.sin(np.arange(32000) / 5)).astype(np.float32)
    x[20000:20010] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    res = cli("stream.run", "--file", str(path), "--endpoint", free_endpoint(), timeout=120)
    assert res.returncode == 2
    line = assert_one_clean_line(res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1 and "nan.wav: NaN/Inf samples at 1.25 s" in line
    assert "RuntimeWarning" not in res.stderr


@pytest.mark.parametrize("endpoint, why", [
    ("tcp://127.0.0.1:99999", "port must be 1-65535"),
    ("tcp://256.1.1.1:5599", "is not an IPv4 address"),
    ("udp://127.0.0.1:5556", "unsupported scheme"),
    ("tcp://0.0.0.0:5599", "--insecure-bind-any"),
    ("tcp://*:5599", "--insecure-bind-any"),
])
def test_bad_or_wide_endpoints_are_refused(tone, endpoint, why):
    res = cli("stream.run", "--file", str(tone), "--endpoint", endpoint, timeout=120)
    assert res.returncode == 2 and why in assert_one_clean_line(res.stderr)


def test_usage_errors(tone):
    for args, why in ((("--loop", "0"), "--loop"), (("--device", "1"), "--device only applies to --mic"),
                      (("--stop-timeout", "0"), "--stop-timeout"), (("--no-speech-threshold", "5"), "probability")):
        res = cli("stream.run", "--file", str(tone), "--endpoint", free_endpoint(), *args, timeout=120)
        assert res.returncode == 2 and why in assert_one_clean_line(res.stderr), res.stderr
    res = cli("stream.run", "--curve-secret", "/nonexistent/server.key_secret", "--file", str(tone),
              "--endpoint", free_endpoint(), timeout=120)
    assert res.returncode == 2 and "server.key_secret: no such file" in assert_one_clean_line(res.stderr)
    for flag in ("--partial-every", "--heartbeat", "--stop-timeout", "--end-gate-db"):  # nan passed every check
        res = cli("stream.run", "--file", str(tone), "--endpoint", free_endpoint(), flag, "nan", timeout=120)
        assert res.returncode == 2 and "finite number" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_model_folder_errors_name_file_and_field(tmp_path, tone):
    banana = _bad_model(tmp_path / "a", config_edit={"d_model": "banana"})
    res = cli("stream.run", "--file", str(tone), "--model", str(banana), "--endpoint", free_endpoint())
    line = assert_one_clean_line(res.stderr)
    assert res.returncode == 2, res.stderr
    assert "config.json" in line and "'d_model'" in line and "banana" in line
    labels = _bad_model(tmp_path / "b", labels_text="neutral, happy, angry, sad\n")
    res = cli("stream.run", "--file", str(tone), "--model", str(labels), "--endpoint", free_endpoint())
    line = assert_one_clean_line(res.stderr)
    assert res.returncode == 2 and "labels.json line 1" in line and "config.json" not in line
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr  # said before binding: no 'publishing on' first
    res = cli("export", "onnx", "--model", str(banana), "--out", str(tmp_path / "onnx"), timeout=120)
    assert res.returncode == 2 and "'d_model'" in assert_one_clean_line(res.stderr)


def test_a_broken_labels_json_is_named_even_when_the_folder_has_an_onnx_export(tmp_path, tone):
    """The default backend runs the folder's ONNX export; labels.json (authoritative for the label set) was
    not read at all, so a broken or changed one went unnoticed (exit 0, the export's old labels)."""
    broken = _bad_model(tmp_path / "a", labels_text="neutral, happy, angry, sad\n", with_export=True)
    res = cli("stream.run", "--file", str(tone), "--model", str(broken), "--endpoint", free_endpoint())
    assert res.returncode == 2 and "labels.json line 1" in assert_one_clean_line(res.stderr), res.stderr
    changed = _bad_model(tmp_path / "b", labels_text=json.dumps({"name": "two", "classes": ["calm", "upset"]}),
                         with_export=True)
    res = cli("stream.run", "--file", str(tone), "--model", str(changed), "--endpoint", free_endpoint())
    assert res.returncode == 2, res.stderr
    assert "labels.json" in res.stderr and "export it again" in res.stderr and "Traceback" not in res.stderr


def test_a_damaged_onnx_export_is_one_line_naming_the_users_folder(tmp_path, tone):
    """onnxruntime logs its own coloured error on stderr before raising, and the bundled export is loaded
    from an unpacked copy in the cache: the user saw ORT's log and a cache path they never gave."""
    folder = tmp_path / "export"
    shutil.copytree(DEMO_MODEL / "onnx", folder)
    data = folder / "fdrl.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    res = cli("stream.run", "--file", str(tone), "--model", str(folder), "--endpoint", free_endpoint())
    line = assert_one_clean_line(res.stderr)
    assert res.returncode == 2 and str(folder) in line and "onnxruntime" in line, res.stderr
    assert "\x1b[" not in res.stderr and "[E:onnxruntime" not in res.stderr, res.stderr


def test_start_status_publishes_the_real_bound_address(tmp_path):
    """`:*` binds a free port: it is printed after binding, and every status message carries it."""
    proc = subprocess.Popen([sys.executable, "-m", "stream.run", "--demo", "--realtime", "--endpoint",
                             "tcp://127.0.0.1:*", "--heartbeat", "0.3", "--partial-every", "0"], cwd=REPO,
                            env=clean_env(PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    sub = None
    try:
        line = proc.stderr.readline()
        assert line.startswith("publishing on tcp://127.0.0.1:"), line
        endpoint = line.split()[2]
        assert not endpoint.endswith(":*") and 1 <= int(endpoint.rsplit(":", 1)[1]) <= 65535
        sub = Collector(endpoint, topics=("status",))
        assert sub.wait_for(lambda t, m: t == "status" and m["kind"] == "heartbeat", 120)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if sub is not None:
            sub.close()
    status = sub.of("status")
    assert all(m["endpoint"] == endpoint and m["curve"] is False for m in status)
    for m in status:
        validate("status", m)
    assert proc.returncode == 0


# ---------------------------------------------------------------------------------------------- others

def test_subscribe_usage_errors():
    res = cli("stream.subscribe", "--endpoint", "tcp://127.0.0.1:99999", timeout=60)
    assert res.returncode == 2 and "port must be" in assert_one_clean_line(res.stderr)
    res = cli("stream.subscribe", "--topics", "emotions", timeout=60)
    assert res.returncode == 2 and "unknown topic" in assert_one_clean_line(res.stderr)
    # --count counts final emotions: with no emotion topic it could never be reached (it waited forever)
    res = cli("stream.subscribe", "--topics", "status", "--count", "1", timeout=60)
    assert res.returncode == 2 and "--count" in assert_one_clean_line(res.stderr)
    for bad in ("nan", "inf", "-1"):
        res = cli("stream.subscribe", "--timeout", bad, timeout=60)
        assert res.returncode == 2 and "--timeout" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_subscribe_wait_gives_up_when_nothing_publishes():
    """--wait S: a subscriber pointed at the wrong place says so and exits 1, instead of waiting forever."""
    endpoint = free_endpoint()
    res = cli("stream.subscribe", "--endpoint", endpoint, "--wait", "1", timeout=60)
    line = assert_one_clean_line(res.stderr)
    assert res.returncode == 1 and f"no message from {endpoint} in 1 s" in line, res.stderr


def test_subscribe_with_nowhere_to_print():
    """stdout closed (`>&-`): every message would be dropped without a word; a full disk: one plain line."""
    res = subprocess.run([sys.executable, "-m", "stream.subscribe", "--endpoint", free_endpoint()], cwd=REPO,
                         env=clean_env(PYTHONPATH=str(REPO)), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=60, pass_fds=(),
                         preexec_fn=lambda: os.close(1))
    assert res.returncode == 2 and "stdout is closed" in assert_one_clean_line(res.stderr), res.stderr


def test_manifest_with_a_non_utf8_byte_names_file_line_and_column(tmp_path):
    from train.corpora import load_manifest

    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(1600, np.float32), 16000)
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(b"path,text,label\n" + f"{wav},hello,neutral\n".encode()
                         + f"{wav},caf".encode() + b"\xe9 au lait,happy\n")
    col = len(f"{wav},caf") + 1
    with pytest.raises(ValueError, match=rf"manifest\.csv line 3 column {col}: byte 0xe9 is not UTF-8"):
        load_manifest(manifest)
    res = cli("train", "fit", "--corpus", str(manifest), "--out", str(tmp_path / "run"), timeout=120)
    assert res.returncode == 2
    line = assert_one_clean_line(res.stderr)
    assert line.startswith("train: ") and "manifest.csv line 3" in line and "UTF-8" in line


def test_stdout_on_a_full_disk_stops_printing_but_not_publishing():
    """`stream.run --demo > /dev/full`: the printed lines cannot be written; every utterance is still
    published and counted, with one warning instead of an error per utterance."""
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "stream.run", "--demo", "--endpoint", free_endpoint()], cwd=REPO,
                             env=clean_env(PYTHONPATH=str(REPO)), stdout=full, stderr=subprocess.PIPE, text=True,
                             timeout=240)
    assert res.returncode == 0, res.stderr
    assert "failed in publish" not in res.stderr and "errors 0" in res.stderr, res.stderr
    assert res.stderr.count("No space left on device") == 1, res.stderr
    assert "summary: 8 utterances" in res.stderr


def test_a_missing_extra_is_named_with_the_install_command():
    """The run-time install has no torch: `export onnx` or `train fit` there says which extra to install,
    not 'unexpected error: ModuleNotFoundError'."""
    from fdrl_core.cli import EXIT_FAILURE, EXIT_USAGE, classify

    code, msg = classify(ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert code == EXIT_USAGE and "pip install 'fdrl-stream[torch]'" in msg
    code, msg = classify(ModuleNotFoundError("No module named 'onnxscript'", name="onnxscript"))
    assert code == EXIT_USAGE and "fdrl-stream[export]" in msg
    code, msg = classify(ModuleNotFoundError("No module named 'torch'", name="torch"), prog="export onnx")
    assert code == EXIT_USAGE and "fdrl-stream[export]" in msg
    code, msg = classify(ModuleNotFoundError("No module named 'foo'", name="foo"))
    assert code == EXIT_FAILURE and msg.startswith("unexpected error")
