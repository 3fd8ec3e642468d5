"""JetPack 6 ships Python 3.10: no 3.11+ syntax or standard-library module may reach the packages."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["fdrl_core", "train", "export", "stream", "bench"]


def _vermin() -> list[str]:
    exe = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    if not Path(exe).exists():
        pytest.skip("vermin is not installed (pip install vermin; it is in the project's dev extra)")
    return [exe, "-t=3.10-", "--no-tips", "--violations", "--eval-annotations", "-q"]


def test_packages_run_on_python_310():
    paths = [str(ROOT / p) for p in PACKAGES if (ROOT / p).is_dir()]
    proc = subprocess.run(_vermin() + paths, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, "code that needs Python > 3.10:\n" + proc.stdout + proc.stderr


def test_vermin_catches_311_only_code(tmp_path):
    # guards the check itself: if vermin stopped flagging these, the test above would pass vacuously
    code, needles = "import tomllib\nfrom typing import Self\n", ["tomllib", "typing.Self"]
    if sys.version_info >= (3, 11):  # vermin parses with the running interpreter
        code += "try:\n    pass\nexcept* ValueError:\n    pass\n"
        needles.append("except*")
    (tmp_path / "new.py").write_text(code)
    proc = subprocess.run(_vermin() + [str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    for needle in needles:
        assert needle in proc.stdout
