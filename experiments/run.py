r"""Runs the paper's experiments in kind and writes their tables and figures.

  python -m experiments.run --suite=table1          # Table 1 rows, 3 seeds each
  python -m experiments.run --suite=view            # S4 with / without viewpoint correction
  python -m experiments.run --suite=weak            # Fig. 8: S4 weak vs S4 and S1 on m% alone
  python -m experiments.run --suite=stb             # Table 2's STB column: S1, S3, S4
  python -m experiments.run --suite=all             # all four (make experiments)
  python -m experiments.run --suite=all --jobs=2 --intra_op_threads=1   # two runs at a time
  python -m experiments.run --suite=table1 --preset=paper --data=rhd   # with the data and a GPU
  python -m experiments.run --rescore               # every finished run's model, scored again
  python -m experiments.run --suite=table1 --rows=s1,s4 --seeds=1 --max_steps=10000 \
      --out=results/long                            # a subset of rows, another budget

Each run is `train.py` then `evaluate.py` on the test split, as subprocesses. A finished run is
recorded at once in <out>/runs/<name>.json, with its provenance (commit, data set, machine;
experiments/provenance.py), and skipped when the command is started again; an interrupted one
resumes from its newest checkpoint (train.py does that). A run is refused when the checkout has
uncommitted changes or <out> holds finished runs of other code (commits that differ in more than
results/, tests/, benchmarks/, .ci/ and Markdown files), unless --result_neutral declares the
change unable to alter results. After every run the aggregates (claims.md, table1.md, view.md,
weak.md, stb.md, summary.json, runs.json, pck_strategies.png, weak.png, fig3.png, fig4.png) are
rebuilt from the records. Models live under --model_root (not committed).
"""
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import threading
import time

from common import cli

cli.quiet_tensorflow(sys.argv)

from absl import app, flags  # noqa: E402

from data_pipeline.config import DATASETS  # noqa: E402
from experiments import provenance, report, suites  # noqa: E402
from model import presets  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_enum("suite", "all", suites.SUITES + ("all",), "Which experiments to run.")
flags.DEFINE_enum("data", "synthetic", DATASETS, "Data set.")
flags.DEFINE_string("data_dir", None,
                    "Data set root (default: data/synthetic_experiments for synthetic, generated "
                    "when missing; data/<name> for the others).")
flags.DEFINE_string("stb_dir", None,
                    "STB-format data set of the stb suite (default: with --data=synthetic, "
                    "data/synthetic_stb_experiments, generated in the STB format when missing; "
                    "with --data=stb, --data_dir; else data/STB).")
flags.DEFINE_enum("preset", "experiment", presets.NAMES,
                  "train.py --preset of every run.")
flags.DEFINE_list("rows", None, "Only the runs of these rows of the chosen suites, by key "
                  "(s1, s4, s4_noview, s4_weak_m10, ...; --dry_run lists the runs); default: "
                  "every row.")
flags.DEFINE_integer("seeds", 3, "Seeds of every Table 1 row, S4 without view correction and "
                     "both S4 arms of the weak curves at 1% and 2% labels; the other rows get "
                     "one.",
                     lower_bound=1)
flags.DEFINE_integer("max_steps", None, "Override the preset's steps for every run (all rows "
                     "keep the same number).")
flags.DEFINE_string("out", None, "Results directory (default: results for the synthetic "
                    "experiment preset, else results/<data>_<preset>).")
flags.DEFINE_string("model_root", None, "Model directories (default: runs/experiments/"
                    "<data>_<preset>).")
flags.DEFINE_string("cache_dir", None, "Pre-processed data cache (default: data/cache).")
flags.DEFINE_integer("synthetic_train", 6000, "Training samples of the generated synthetic set.")
flags.DEFINE_integer("synthetic_test", 1000, "Test samples of the generated synthetic set.")
flags.DEFINE_integer("jobs", 1, "Runs trained at once (each a train.py then evaluate.py); "
                     "their order of start is the list's (--dry_run).", lower_bound=1)
flags.DEFINE_integer("intra_op_threads", 0, "Threads per TensorFlow operation of every run "
                     "(TF_NUM_INTRAOP_THREADS; 0: TensorFlow's default, the machine's cores); "
                     "recorded in each run's provenance.", lower_bound=0)
flags.DEFINE_boolean("dry_run", False, "Print the runs and their commands; train nothing.")
flags.DEFINE_string("result_neutral", None,
                    "Why a change of code cannot alter results: lets runs be added although the "
                    "checkout has uncommitted changes or --out holds finished runs of another "
                    "commit; stored in each such run's record.")
flags.DEFINE_boolean("rescore", False,
                     "Train nothing: evaluate every finished run's model in --out again with the "
                     "current evaluate.py (into <model_dir>/eval_rescore) and print the recorded "
                     "and the new test EPE.")
cli.define_verbose_flag()


def _portable(value):
    return provenance.portable(value, REPO)


def _module(name, *args):
    return [sys.executable, "-m", name, *args]


def _script(name, *args):
    return [sys.executable, os.path.join(REPO, name), *args]


def _call(cmd, log_path, prefix=""):
    """Runs cmd with its output appended to log_path (and echoed, each line after `prefix`);
    raises on failure. With --intra_op_threads, TensorFlow in cmd uses that many threads per
    operation (TF_NUM_INTRAOP_THREADS)."""
    print(f"{prefix}$ " + " ".join(cmd), flush=True)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if FLAGS.intra_op_threads:
        env["TF_NUM_INTRAOP_THREADS"] = str(FLAGS.intra_op_threads)
    # Line-buffered: when the runner is killed, the log keeps every line of the attempt, and the
    # resumed attempt's record reads the whole validation curve from it.
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
        for line in proc.stdout:
            log.write(line)
            if not line.startswith("\r"):
                sys.stdout.write(f"  {prefix}{line}")
        if proc.wait():
            raise RuntimeError(f"{cmd[1]} failed with exit code {proc.returncode}; see {log_path}")


def _common_flags(data, data_dir):
    flags_ = [f"--data={data}", f"--data_dir={data_dir}"]
    if FLAGS.cache_dir:
        flags_.append(f"--cache_dir={FLAGS.cache_dir}")
    if FLAGS.verbose:
        flags_.append("--verbose")
    return flags_


def _ensure_synthetic(fmt, data_dir):
    """Generates the synthetic set of format 'rhd' or 'stb' into data_dir when it is empty."""
    if os.path.isdir(data_dir) and os.listdir(data_dir):
        return
    _call(_module("data_pipeline.synthetic", f"--format={fmt}", f"--out={data_dir}",
                  f"--num_train={FLAGS.synthetic_train}", f"--num_test={FLAGS.synthetic_test}",
                  "--seed=0"), os.path.join(os.path.dirname(data_dir), "generate.log"))


def _mean_pose(out_dir, model_root, data, data_dir, image_size, name="mean_pose", compute=True):
    """The training mean pose scored on the test split (the floor every model must beat); its
    predictions and log stay beside the models in <model_root>/<name>, its metrics go to
    <out>/<name>.json. Without `compute`, None when that file is missing."""
    path = os.path.join(out_dir, name + ".json")
    if not os.path.isfile(path):
        if not compute:
            return None
        eval_dir = os.path.join(model_root, name)
        predictions = os.path.join(eval_dir, "predictions.npz")
        log = os.path.join(eval_dir, "log.txt")
        command = _module("evaluation.mean_pose", *_common_flags(data, data_dir),
                          f"--image_size={image_size}", f"--out={predictions}")
        origin = provenance.run_provenance(data_dir, provenance.git_state(REPO), None, repo=REPO)
        _call(command, log)
        _call(_script("evaluate.py", f"--predictions={predictions}", f"--out={eval_dir}"), log)
        with open(os.path.join(eval_dir, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        report.write_metrics(_portable({**metrics, "command": " ".join(command),
                                        "provenance": origin}), path)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _run_one(run, out_dir, model_root, data, data_dir, origin):
    """Trains and evaluates one run; writes its record, with `origin` (provenance.
    run_provenance) and the run's config.json; returns it."""
    model_dir = os.path.join(model_root, run.name)
    eval_dir = os.path.join(model_dir, "eval_test")
    log = os.path.join(model_dir, "log.txt")
    train = _script("train.py", *run.train_flags(), *_common_flags(data, data_dir),
                    f"--preset={FLAGS.preset}", f"--model_dir={model_dir}")
    if FLAGS.max_steps:
        train.append(f"--max_steps={FLAGS.max_steps}")
    prefix = f"[{run.name}] " if FLAGS.jobs > 1 else ""
    start = time.time()
    _call(train, log, prefix)
    train_seconds = time.time() - start
    _call(_script("evaluate.py", f"--ckpt={model_dir}", f"--out={eval_dir}"), log, prefix)
    eval_seconds = time.time() - start - train_seconds
    with open(os.path.join(eval_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    steps = int(re.search(r"ckpt-(\d+)$", metrics["checkpoint"]).group(1))
    with open(log, encoding="utf-8") as f:
        curve = report.validation_curve(f.read())
    record = {"name": run.name, "row": run.row.name, "row_key": run.row.key,
              "strategy": run.row.strategy, "decoders": list(run.row.decoders),
              "view_correction": run.row.view_correction,
              "labelled_fraction": run.row.labelled_fraction,
              "labelled_only": run.row.labelled_only,
              "unlabelled_batch_size": run.row.unlabelled_batch_size, "seed": run.seed,
              "preset": FLAGS.preset, "data": data, "data_dir": _portable(data_dir),
              "steps": steps, "validation_epe_mm": curve,
              "train_seconds": train_seconds, "eval_seconds": eval_seconds,
              "model_dir": os.path.relpath(model_dir, REPO),
              "eval_dir": os.path.relpath(eval_dir, REPO),
              "command": _portable(" ".join(train)), "config": _portable(config),
              "provenance": origin,
              "metrics": {k: metrics[k] for k in ("epe_mean_mm", "epe_median_mm", "auc_0_50",
                                                  "auc_20_50", "num_samples", "pck",
                                                  "pck_thresholds_mm")}}
    report.write_metrics(record, os.path.join(out_dir, "runs", run.name + ".json"))
    return record


def _data_dirs():
    """(main data set's directory, STB-format data set's directory), absolute (flag docs)."""
    if FLAGS.data == "synthetic":
        data_dir = FLAGS.data_dir or os.path.join("data", "synthetic_experiments")
    else:
        data_dir = FLAGS.data_dir or os.path.join("data", {"rhd": "RHD_published_v2",
                                                           "stb": "STB"}[FLAGS.data])
    stb_dir = FLAGS.stb_dir or (data_dir if FLAGS.data == "stb" else os.path.join(
        "data", "synthetic_stb_experiments" if FLAGS.data == "synthetic" else "STB"))
    return os.path.abspath(data_dir), os.path.abspath(stb_dir)


def _data_of(row, data_dir, stb_dir):
    """(train.py --data, --data_dir) of a row's runs."""
    return ("stb", stb_dir) if row.stb else (FLAGS.data, data_dir)


def _check_code(out_dir, code, dry_run=False):
    """The result-neutral declaration to store with a run: FLAGS.result_neutral where
    provenance.code_refusal refuses the run, else None. Exits when it refuses and no
    declaration was given (a dry run only prints it)."""
    refusal = provenance.code_refusal(out_dir, report.load_records(out_dir), code, REPO)
    if refusal is None:
        return None
    if FLAGS.result_neutral is None and not dry_run:
        sys.exit(f"error: {refusal}")
    admitted = ("a run would be refused now" if FLAGS.result_neutral is None
                else f"--result_neutral={FLAGS.result_neutral!r} admits the run although")
    print(f"note: {admitted}: {refusal}")
    return FLAGS.result_neutral


def _rescore(out_dir):
    """Evaluates every finished run's model in out_dir with the current evaluate.py."""
    failed, missing = [], []
    records = report.load_records(out_dir)
    print(f"re-scoring {len(records)} finished runs of {out_dir}/runs with the code of "
          f"{provenance.git_state(REPO)['commit'] or 'a tree outside git'}")
    for name, record in sorted(records.items()):
        model_dir = os.path.join(REPO, record["model_dir"])
        if not os.path.isdir(model_dir):
            missing.append(name)
            continue
        eval_dir = os.path.join(model_dir, "eval_rescore")
        args = [f"--ckpt={model_dir}", f"--out={eval_dir}"]
        if FLAGS.cache_dir:
            args.append(f"--cache_dir={FLAGS.cache_dir}")
        try:
            _call(_script("evaluate.py", *args), os.path.join(eval_dir, "log.txt"))
        except RuntimeError as e:
            failed.append(f"{name} ({e})")
            continue
        with open(os.path.join(eval_dir, "metrics.json"), encoding="utf-8") as f:
            now = json.load(f)["epe_mean_mm"]
        made = record.get("provenance", {}).get("commit") or "no commit recorded"
        print(f"  {name}: EPE mean {record['metrics']['epe_mean_mm']:.2f} mm recorded "
              f"({made}), {now:.2f} mm now")
    if missing:
        print(f"models not on this machine (not re-scored): {', '.join(missing)}")
    if failed:
        sys.exit("error: evaluate.py refused or failed on " + "; ".join(failed))


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    default = FLAGS.data == "synthetic" and FLAGS.preset == "experiment"
    setting = f"--data={FLAGS.data} --preset={FLAGS.preset}"
    out_dir = FLAGS.out or ("results" if default else f"results/{FLAGS.data}_{FLAGS.preset}")
    model_root = FLAGS.model_root or os.path.join("runs", "experiments",
                                                  f"{FLAGS.data}_{FLAGS.preset}")
    if FLAGS.rescore:
        _rescore(out_dir)
        return
    data_dir, stb_dir = _data_dirs()
    # The stb rows' own reference and caption where their data set is not the main one.
    stb_apart = (FLAGS.data, data_dir) != ("stb", stb_dir)
    stb_setting = (f"--data=stb --preset={FLAGS.preset}"
                   + (" (synthetic, STB format)" if FLAGS.data == "synthetic" else ""))
    chosen = suites.SUITES if FLAGS.suite == "all" else (FLAGS.suite,)
    runs = suites.suite_runs(chosen, FLAGS.seeds)
    if FLAGS.rows is not None:
        keys = {run.row.key for run in runs}
        unknown = sorted(set(FLAGS.rows) - keys)
        if unknown or not FLAGS.rows:
            sys.exit(f"error: --rows={','.join(FLAGS.rows)}: {unknown or 'no row'} not among the "
                     f"rows of {', '.join(chosen)} ({', '.join(sorted(keys))})")
        runs = [run for run in runs if run.row.key in FLAGS.rows]
    max_steps = FLAGS.max_steps or presets.section(FLAGS.preset, "train")["max_steps"]
    done = report.load_records(out_dir)
    rows = suites.all_rows()
    # Rows are compared at equal steps: a finished run of another budget would break that.
    other = sorted(name for name, r in done.items()
                   if r["config"]["train"]["max_steps"] != max_steps
                   or r["preset"] != FLAGS.preset
                   or r["data"] != ("stb" if r["row_key"] in rows and rows[r["row_key"]].stb
                                    else FLAGS.data))
    if other:
        sys.exit(f"error: {out_dir}/runs holds runs of another data set, preset or step budget "
                 f"({', '.join(other)}); pass another --out or remove them")
    todo = [r for r in runs if r.name not in done]
    print(f"{len(runs)} runs in {', '.join(chosen)}: {len(runs) - len(todo)} finished in "
          f"{out_dir}/runs, {len(todo)} to go ({setting})")
    if FLAGS.dry_run:
        _check_code(out_dir, provenance.git_state(REPO), dry_run=True)
        for run in todo:
            data, run_dir = _data_of(run.row, data_dir, stb_dir)
            print(f"  {run.name}: train.py {' '.join(run.train_flags())} --data={data} "
                  f"--data_dir={_portable(run_dir)}")
        return
    if todo:  # adding runs: refused before anything is generated
        _check_code(out_dir, provenance.git_state(REPO))
    needs_stb = any(r.row.stb for r in runs)
    if FLAGS.data == "synthetic":
        _ensure_synthetic("rhd", data_dir)
        if needs_stb:
            _ensure_synthetic("stb", stb_dir)
    image_size = presets.section(FLAGS.preset, "data")["image_size"]
    start = time.time()

    try:
        mean_pose = _mean_pose(out_dir, model_root, FLAGS.data, data_dir, image_size)
        stb_mean_pose = (_mean_pose(out_dir, model_root, "stb", stb_dir, image_size,
                                    name="mean_pose_stb", compute=needs_stb)
                         if stb_apart else mean_pose)

        def rebuild():
            return report.write_all(out_dir, mean_pose, setting, stb_mean_pose=stb_mean_pose,
                                    stb_setting=stb_setting if stb_apart else setting)

        lock = threading.Lock()  # one run starts, or one rebuild writes, at a time
        failed = threading.Event()  # after a failure no further run starts

        def train_and_record(index, run):
            try:
                with lock:
                    if failed.is_set():
                        return
                    print(f"[{index}/{len(todo)}] {run.name} ({time.time() - start:.0f} s so "
                          "far)", flush=True)
                    # Checked again before each run: the checkout may change while a suite runs.
                    code = provenance.git_state(REPO)
                    declared = _check_code(out_dir, code)
                    data, run_dir = _data_of(run.row, data_dir, stb_dir)
                    origin = provenance.run_provenance(run_dir, code, declared,
                                                       FLAGS.intra_op_threads or None, REPO)
                _run_one(run, out_dir, model_root, data, run_dir, origin)
                with lock:
                    rebuild()
            except BaseException:  # SystemExit from _check_code too
                failed.set()
                raise

        with concurrent.futures.ThreadPoolExecutor(FLAGS.jobs) as pool:
            futures = [pool.submit(train_and_record, index, run)
                       for index, run in enumerate(todo, 1)]
            for future in futures:
                error = future.exception()
                if error is not None:
                    failed.set()
                    raise error
        written = rebuild()
    except RuntimeError as e:
        sys.exit(f"error: {e}")
    spent = sum(r["train_seconds"] + r["eval_seconds"]
                for r in report.load_records(out_dir).values() if r["name"] in
                {run.name for run in runs})
    print(f"done: {len(runs)} runs, {(time.time() - start) / 60:.1f} min in this call, "
          f"{spent / 60:.1f} min of training and evaluation over all calls")
    for path in written:
        print(f"  {path}")


if __name__ == "__main__":
    app.run(main)
