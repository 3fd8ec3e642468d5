"""The dashboard: a local web page that shows running streams live, and the assets the HTML run report shares.

`python -m stream.dashboard` subscribes to one or more stream.run publishers (ZeroMQ) and serves the page;
`stream.run --dashboard` serves it from inside the run. The page's rendering code (static/render.js) is the
same one stream/report.py inlines into a self-contained HTML report. Importing this package needs no web
library; only `stream.dashboard.server` needs aiohttp (the `dashboard` extra).
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
