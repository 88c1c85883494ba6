"""Child processes of the demo: `unisar <command>` with settings passed through UNISAR_*."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ops.settings import Settings


def settings_env(settings: Settings, **overrides) -> dict[str, str]:
    """This process's environment with every setting as UNISAR_<NAME> (overrides win)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNISAR_")}
    values = settings.model_dump() | overrides
    env.update({f"UNISAR_{k.upper()}": str(v) for k, v in values.items() if v is not None})
    return env


class Child:
    def __init__(self, command: str, settings: Settings, log_path: Path, **overrides) -> None:
        self.command = command
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ops.cli", command],
                                         env=settings_env(settings, **overrides), stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up at all (the crash tests' kill -9)."""
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM (a clean stop: final commit or checkpoint), then SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()
