"""The dashboard: a local web page that shows running streams live, and the assets the HTML run report shares.

`python -m stream.dashboard` subscribes to one or more stream.run publishers (ZeroMQ) and serves the page;
`stream.run --dashboard` serves it from inside the run. The page's rendering code (static/render.js) is the
same one stream/report.py inlines into a self-contained HTML report. Importing this package needs no web
library; only `stream.dashboard.server` needs aiohttp (the `dashboard` extra).
"""

from __future__ import annotations

from pathlib import Path

from fdrl_core.cli import InputError as _InputError  # exit 2, one line (fdrl_core.cli)
from fdrl_core.cli import RunError as _RunError  # exit 1, one line

STATIC_DIR = Path(__file__).resolve().parent / "static"


class DashboardError(_InputError):
    """A setup problem the user can fix: address, port in use, endpoint, key files (one line)."""


class ReportError(_InputError):
    """The report cannot be written where asked, or a capture cannot be read (one line)."""


class ReportWriteError(_RunError):
    """Writing the report failed at the end of a run (disk full, folder removed)."""
