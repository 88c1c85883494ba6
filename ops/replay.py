"""The replay that `unisar demo` and `unisar compare` run beside their processes: the item
catalogue first (its records name the items the events will show), then the events, in a
daemon thread, until done or told to stop; and what their watch loops check each second."""
from __future__ import annotations

import threading
from pathlib import Path


class Replay:
    """`sent`, `invalid` and `done` once every line is sent; `error` if the replay failed."""

    def __init__(self) -> None:
        self.sent = self.invalid = 0
        self.done = False
        self.error: str | None = None
        self.stop = threading.Event()

    def start(self, settings, catalogue: Path | None, lines, pacer) -> None:
        threading.Thread(target=self._run, args=(settings, catalogue, lines, pacer), name="replay",
                         daemon=True).start()

    def _run(self, settings, catalogue, lines, pacer) -> None:
        from stream.contract.files import read_values
        from stream.ingest.producer import EventProducer, produce_items, produce_lines

        try:
            if catalogue is not None and catalogue.is_file():
                with EventProducer(settings, topic=settings.items_topic) as producer:
                    produce_items(producer, read_values(catalogue))
            with EventProducer(settings) as producer:
                summary = produce_lines(producer, until_set(lines, self.stop), pacer)
        except Exception as exc:  # noqa: BLE001 - reported by the watch loop, which stops the run
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.sent, self.invalid, self.done = summary.sent, len(summary.invalid), True

    def problem(self, children) -> str | None:
        """Why the run cannot go on, if it cannot: the replay failed or a child process exited."""
        if self.error is not None:
            return f"replaying the events failed: {self.error}"
        for child in children:
            if not child.alive():
                return f"the {child.command} exited with code {child.proc.returncode}; see {child.log_path}"
        return None


def until_set(items, stop: threading.Event):
    """`items` until `stop` is set (a replay that ends early on Ctrl-C or a time limit)."""
    for item in items:
        if stop.is_set():
            return
        yield item
