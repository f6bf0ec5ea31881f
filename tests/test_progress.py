"""common/progress.py: a live bar in a terminal, a line at most every interval elsewhere."""
import io

from common import progress as progress_lib


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _progress(monkeypatch, **kwargs):
    clock = _Clock()
    monkeypatch.setattr(progress_lib.time, "monotonic", clock)
    stream = io.StringIO()
    return progress_lib.Progress(stream=stream, **kwargs), stream, clock


def test_a_log_gets_a_line_at_most_every_interval_and_the_last_one(monkeypatch):
    progress, stream, clock = _progress(monkeypatch, total=1000, unit="step", name="train",
                                        done=200, live=False, interval=30.0)
    for step in range(201, 1001):
        clock.now += 0.5  # 2 steps/s
        progress.update(step, loss=1.0 / step)
    lines = stream.getvalue().splitlines()
    # 400 s of steps: the first step's line, then one per 30 s (13), and the last step's.
    assert len(lines) == 15
    assert lines[0] == "train: step 201/1000, ? steps/s, ETA ?, loss 0.004975"
    assert lines[1] == "train: step 261/1000, 2.00 steps/s, ETA 6:10, loss 0.003831"
    assert lines[-1] == "train: step 1000/1000, 2.00 steps/s, ETA 0:00, loss 0.001"


def test_the_rate_starts_after_the_first_step(monkeypatch):
    # The first step holds the graph's tracing (here 1000 s); the rate and the ETA leave it out.
    progress, stream, clock = _progress(monkeypatch, total=3000, unit="step", name="train",
                                        live=False, interval=30.0)
    clock.now += 1000.0
    progress.update(1)
    for step in range(2, 62):
        clock.now += 0.5  # 2 steps/s
        progress.update(step)
    lines = stream.getvalue().splitlines()
    assert lines == ["train: step 1/3000, ? steps/s, ETA ?",
                     "train: step 61/3000, 2.00 steps/s, ETA 24:30"]


def test_a_terminal_gets_a_bar_redrawn_in_place(monkeypatch):
    progress, stream, clock = _progress(monkeypatch, total=4, unit="sample", name="rendering",
                                        live=True)
    for done in range(1, 5):
        clock.now += 1.0
        progress.update(done)
    progress.message("done")
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 3  # the final bar, the message's two
    assert "\r[" + "=" * 24 + "] rendering: sample 4/4, 1.00 samples/s, ETA 0:00" in text
    assert text.endswith("\ndone\n")


def test_a_disabled_progress_writes_nothing(monkeypatch):
    progress, stream, clock = _progress(monkeypatch, total=2, unit="step", name="train",
                                        live=False, enabled=False)
    clock.now += 60.0
    progress.update(2, loss=0.5)
    progress.message("validation")
    assert stream.getvalue() == "" and progress.done == 2
