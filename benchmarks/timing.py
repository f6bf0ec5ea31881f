"""What the step benchmarks share: timing a step function on one batch."""
import time


def time_steps(step_fn, batch, steps):
    """Seconds per call of step_fn(batch) -> scalar tensor, over `steps` calls in a row."""
    start = time.perf_counter()
    for _ in range(steps):
        out = step_fn(batch)
    float(out)  # waits for the last step
    return (time.perf_counter() - start) / steps
