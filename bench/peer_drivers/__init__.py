"""Driver scripts run INSIDE each peer's own virtual environment (never imported by the project).

Each driver is started as `<peer venv>/bin/python <driver>.py <job.json>`; it loads the peer with the
given CTranslate2 model folder, feeds the job's WAV in 30 ms blocks paced at real time through the peer's
own streaming interface, and writes one JSON object per line on stdout (see `_protocol.py`). They only
need the standard library, numpy and the peer itself.
"""
