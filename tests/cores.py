"""The cores one test process may use: the machine's, shared by the pytest-xdist workers
(`make test` runs two). PyTorch and OpenMP threads beyond that only spin-wait against the
other worker: a fit took 3.7x as long beside another test with 2 threads each."""
from __future__ import annotations

import os

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 2) // WORKERS)
