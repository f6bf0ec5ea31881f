"""Progress of long work (training steps, pre-processing, the synthetic generator).

In a terminal a live bar is redrawn in place; elsewhere (a log file, a cluster job, CI) a line is
printed at the first update, then at most every `interval` seconds, and at the end, so that a run
of 130,000 steps writes a few hundred lines instead of one per step. No TensorFlow here: the generator runs without it.
"""
import sys
import time
from typing import Optional, TextIO

# Seconds between two lines when the stream is not a terminal.
LOG_INTERVAL_S = 30.0
# Seconds between two redraws of the live bar.
LIVE_INTERVAL_S = 0.2
_BAR_WIDTH = 24


def _clock(seconds: float) -> str:
    """Seconds as h:mm:ss (or m:ss under an hour)."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts done units of `total` and reports rate, ETA and named values.

    Args:
      total: units to reach.
      unit: what a unit is called ('step', 'sample').
      name: what is in progress, first word of each line.
      done: units already done (a resumed run).
      stream: where to write (default sys.stdout, looked up at creation).
      interval: seconds between lines when the stream is not a terminal.
      live: redraw a bar in place (default: whether the stream is a terminal).
      enabled: False writes nothing.

    The rate (and so the ETA) counts from the first update on: the first unit of a run often
    holds one-off costs (a training step's graph tracing), which would make the first ETA hours
    long. Until a second update there is no rate, and the line shows '?' for both.
    """

    def __init__(self, total: int, unit: str, name: str, *, done: int = 0,
                 stream: Optional[TextIO] = None, interval: float = LOG_INTERVAL_S,
                 live: Optional[bool] = None, enabled: bool = True):
        self.total = int(total)
        self.unit = unit
        self.name = name
        self.done = int(done)
        self._stream = stream or sys.stdout
        self._live = self._stream.isatty() if live is None else live
        self._interval = LIVE_INTERVAL_S if self._live else interval
        self._enabled = enabled
        self._start = None  # set at the first update: the rate starts after the first unit
        self._start_done = self.done
        self._last_write = None  # the first update is written: the work has started
        self._values = {}

    def rate(self) -> float:
        """Units per second since the first update (0 until a second update)."""
        if self._start is None:
            return 0.0
        elapsed = time.monotonic() - self._start
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def update(self, done: int, **values: float) -> None:
        """Sets the units done and the latest values (e.g. loss=0.12); writes the first time,
        when due, and always when `done` reaches the total."""
        now = time.monotonic()
        if self._start is None:
            self._start, self._start_done = now, int(done)
        self.done = int(done)
        self._values.update(values)
        if not self._enabled:
            return
        if (self._last_write is None or now - self._last_write >= self._interval
                or self.done >= self.total):
            self._last_write = now
            self._write()

    def line(self) -> str:
        """The report without a bar: done/total, rate, ETA and the values."""
        rate = self.rate()
        left = max(self.total - self.done, 0)
        eta = _clock(left / rate) if rate > 0 else ("0:00" if left == 0 else "?")
        shown_rate = f"{rate:.2f}" if rate > 0 else "?"
        parts = [f"{self.name}: {self.unit} {self.done}/{self.total}",
                 f"{shown_rate} {self.unit}s/s", f"ETA {eta}"]
        parts += [f"{k} {v:.4g}" for k, v in self._values.items()]
        return ", ".join(parts)

    def _write(self) -> None:
        if self._live:
            filled = int(_BAR_WIDTH * min(self.done / max(self.total, 1), 1.0))
            bar = "[" + "=" * filled + "." * (_BAR_WIDTH - filled) + "] "
            end = "\n" if self.done >= self.total else ""
            self._stream.write("\r" + bar + self.line() + "\033[K" + end)
        else:
            self._stream.write(self.line() + "\n")
        self._stream.flush()

    def message(self, text: str) -> None:
        """Writes a line of its own (on a fresh line below a live bar)."""
        if self._enabled:
            self._stream.write(("\n" if self._live else "") + text + "\n")
            self._stream.flush()
