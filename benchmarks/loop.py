r"""How close train.py's loop comes to the rate of its own step, per strategy.

  python benchmarks/loop.py --preset=experiment
  python benchmarks/loop.py --preset=experiment --rows=s1,s4 --fit_steps=300

In one process, for each Table 1 row (S1 and S4 by default) with the preset's networks and batch:
  pure    Trainer.train_step in one tf.function on one fixed batch (no input pipeline, no loop);
  update  Trainer.update, the step as fit runs it, on the same fixed batch;
  fit     Trainer.fit on the real training pipeline (shuffle, augmentation, prefetch), progress
          output and the preset's logging and checkpoint cadence included, validation off:
          --fit_steps steps timed after --warmup_steps untimed ones (tracing, the shuffle buffer),
          up to the end of the last step's checkpoint.
  teardown  the rest of the fit call: the training pipeline's iterator is destroyed when fit
          returns, which on these machines sometimes blocks for seconds (the fit call then ends
          at a whole multiple of one period after the iterator was made); a train.py process
          pays it once, at its end, so it is reported apart, not spread over the steps.
Pure-step rounds run before and after the fit, so that machine load hits both; the median is
reported. With --repeats R the whole measurement of each row is made R times in turn (fresh
trainers each time), since the ratio of one measurement moves by about 0.1 with the load of a
shared machine: the table gives the median of the R ratios and their range. Prints each time in
ms and the rates' ratios update / pure and fit / pure (the goal of the loop: fit / pure >= 0.87,
at most 15% on top of the step).
"""
import dataclasses
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from common import cli  # noqa: E402

cli.quiet_tensorflow(sys.argv)

from absl import app, flags  # noqa: E402

from experiments import suites  # noqa: E402
from benchmarks import record, timing  # noqa: E402
from model import presets  # noqa: E402

FLAGS = flags.FLAGS
ROWS = {row.key: row for row in suites.TABLE1}
flags.DEFINE_enum("preset", "experiment", presets.NAMES,
                  "Image size, batch size, networks and loop cadence of this training preset.")
cli.define_choice_list("rows", ["s1", "s4"], list(ROWS), "Table 1 rows to time")
flags.DEFINE_string("data_dir", None, "Synthetic RHD-format set (default: data/synthetic_rhd).")
flags.DEFINE_string("cache_dir", None, "Pre-processed cache root (default: data/cache).")
flags.DEFINE_integer("steps", 10, "Timed pure steps per round.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Pure-step rounds before and after the fit, each.",
                     lower_bound=1)
flags.DEFINE_integer("warmup_steps", 30, "Untimed fit steps first.", lower_bound=1)
flags.DEFINE_integer("fit_steps", 300, "Timed fit steps.", lower_bound=1)
flags.DEFINE_integer("repeats", 1, "Measurements of every row, made in turn; the table gives "
                     "the median ratio and the range.", lower_bound=1)
flags.DEFINE_string("out", None, "Also write the table, the times, the command and the commit "
                    "to this JSON file (benchmarks/record.py; e.g. results/benchmarks/loop.json).")
cli.define_verbose_flag()


def time_row(key, train_cfg, data_cfg, scratch, repeat):
    """{'pure', 'update', 'fit'}: seconds per step of one Table 1 row."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from data_pipeline import dataset  # pylint: disable=import-outside-toplevel
    from model import strategies, training  # pylint: disable=import-outside-toplevel

    model_cfg = presets.model_config(FLAGS.preset, data_cfg, strategy=ROWS[key].strategy,
                                     decoders=ROWS[key].decoders)
    train_ds = dataset.build_dataset(data_cfg, "train", batch_size=train_cfg.batch_size,
                                     augment=True, shuffle=True, repeat=True,
                                     drop_remainder=True, seed=train_cfg.seed,
                                     deterministic=True,
                                     modalities=strategies.batch_modalities(model_cfg))
    batch = next(iter(train_ds))
    # Separate trainers (same seed, same initial weights): the fit's optimizer state and step
    # counter are not disturbed by the fixed-batch timings.
    pure_trainer = training.Trainer(model_cfg, train_cfg,
                                    os.path.join(scratch, key, str(repeat), "pure"))
    pure = tf.function(lambda b: pure_trainer.train_step(b)["total"])
    update = lambda b: pure_trainer.update(b)[0]["total"]  # noqa: E731
    timing.time_steps(pure, batch, 2)  # trace
    timing.time_steps(update, batch, 2)
    pure_times = [timing.time_steps(pure, batch, FLAGS.steps) for _ in range(FLAGS.rounds)]
    update_times = [timing.time_steps(update, batch, FLAGS.steps) for _ in range(FLAGS.rounds)]

    warm = FLAGS.warmup_steps
    fit_trainer = training.Trainer(model_cfg, dataclasses.replace(train_cfg, max_steps=warm),
                                   os.path.join(scratch, key, str(repeat), "fit"))
    fit_trainer.fit(train_ds)
    fit_trainer.config = dataclasses.replace(train_cfg, max_steps=warm + FLAGS.fit_steps)
    # The loop's last act is the checkpoint at max_steps; what follows is the pipeline's teardown
    # when fit returns (module doc), timed apart.
    saved = fit_trainer._save  # pylint: disable=protected-access
    last_save = []
    fit_trainer._save = lambda step: (saved(step), last_save.append(time.perf_counter()))[0]
    start = time.perf_counter()
    fit_trainer.fit(train_ds)
    end = time.perf_counter()
    fit_time = (last_save[-1] - start) / FLAGS.fit_steps

    pure_times += [timing.time_steps(pure, batch, FLAGS.steps) for _ in range(FLAGS.rounds)]
    update_times += [timing.time_steps(update, batch, FLAGS.steps) for _ in range(FLAGS.rounds)]
    return {"pure": statistics.median(pure_times), "update": statistics.median(update_times),
            "fit": fit_time, "teardown": end - last_save[-1]}


def main(argv):
    del argv
    from model import run_config  # pylint: disable=import-outside-toplevel

    train_cfg = run_config.TrainConfig.from_preset(FLAGS.preset)
    data_cfg = presets.data_config(FLAGS.preset, data="synthetic", data_dir=FLAGS.data_dir,
                                   cache_dir=FLAGS.cache_dir)
    results = {key: [] for key in FLAGS.rows}
    with tempfile.TemporaryDirectory(prefix="loop_") as scratch:
        for repeat in range(FLAGS.repeats):
            for key in FLAGS.rows:
                t = time_row(key, train_cfg, data_cfg, scratch, repeat)
                results[key].append(t)
                print(f"{key} ({repeat + 1}/{FLAGS.repeats}): pure {t['pure'] * 1e3:.1f} ms, "
                      f"update {t['update'] * 1e3:.1f} ms, fit {t['fit'] * 1e3:.1f} ms a step, "
                      f"fit/pure rate {t['pure'] / t['fit']:.2f}, teardown "
                      f"{t['teardown']:.1f} s", flush=True)
    lines = [f"preset={FLAGS.preset} image={data_cfg.image_size} batch={train_cfg.batch_size} "
             f"points={data_cfg.num_points} fit_steps={FLAGS.fit_steps} "
             f"repeats={FLAGS.repeats} cpus={os.cpu_count()}",
             "row      pure ms  update ms   fit ms   update/pure rate   fit/pure rate "
             "(goal >= 0.87)   fit/pure range   teardown s (max)"]
    for key, times in results.items():
        median = {k: statistics.median(t[k] for t in times) for k in ("pure", "update", "fit")}
        update_rate = statistics.median(t["pure"] / t["update"] for t in times)
        fit_rates = [t["pure"] / t["fit"] for t in times]
        lines.append(f"{key:7s} {median['pure'] * 1e3:8.1f} {median['update'] * 1e3:10.1f} "
                     f"{median['fit'] * 1e3:8.1f} {update_rate:18.2f} "
                     f"{statistics.median(fit_rates):15.2f} "
                     f"{min(fit_rates):15.2f}-{max(fit_rates):.2f} "
                     f"{max(t['teardown'] for t in times):18.1f}")
    print("\n".join(lines))
    if FLAGS.out:
        record.write_record(FLAGS.out, " ".join(["python", "benchmarks/loop.py"] + sys.argv[1:]),
                            lines, seconds_per_step=results)

if __name__ == "__main__":
    app.run(main)
