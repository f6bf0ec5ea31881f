# One-command set-up. Every target creates .venv and installs the pins when they are missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(abspath $(VENV))/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
DATA_DIR ?= data/synthetic_rhd
DEMO_DIR ?= runs/demo
# The experiment suites' data set (experiments/run.py generates the same one).
EXPERIMENT_DATA := data/synthetic_experiments
RECORD := $(PY) benchmarks/record.py

.PHONY: venv ops data test demo records experiments benchmarks clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

ops: $(STAMP)
	$(MAKE) -C tf_ops PYTHON=$(PY)

data: $(STAMP)
	$(PY) -m data_pipeline.synthetic --format=rhd --out $(DATA_DIR) --num_train 2000 --num_test 200 --seed 0

# Two test processes (pytest-xdist): most of a test's time is single-threaded (TensorFlow's import,
# graph tracing, subprocess start-up), so two at once nearly halve the suite on 2 cores.
test: ops
	$(PY) -m pytest -q -n 2

# The demo: synthetic data, S4 (poe) with the cpu preset, evaluation, figures, and the score of
# the training set's mean pose for reference; its record goes to $(DEMO_DIR)/demo.json (not
# committed, so a fresh clone stays clean).
demo: ops data
	$(PY) -m data_pipeline.inspect --data=synthetic --data_dir=$(DATA_DIR) --split=train --index=0 --augment --out=$(DEMO_DIR)/inspect/train_0.npz --png=$(DEMO_DIR)/inspect/train_0.png
	$(PY) -m data_pipeline.inspect --data=synthetic --data_dir=$(DATA_DIR) --split=test --index=0 --out=$(DEMO_DIR)/inspect/test_0.npz --png=$(DEMO_DIR)/inspect/test_0.png
	$(PY) train.py --strategy=poe --data=synthetic --data_dir=$(DATA_DIR) --preset=cpu --model_dir=$(DEMO_DIR)
	$(PY) evaluate.py --ckpt=$(DEMO_DIR) --out=$(DEMO_DIR)/eval_test
	$(PY) -m evaluation.mean_pose --data=synthetic --data_dir=$(DATA_DIR) --image_size=64 --out=$(DEMO_DIR)/mean_pose/predictions.npz
	$(PY) evaluate.py --predictions=$(DEMO_DIR)/mean_pose/predictions.npz --out=$(DEMO_DIR)/mean_pose
	$(PY) -m experiments.demo --model=$(DEMO_DIR) --data_dir=$(DATA_DIR) --out=$(DEMO_DIR)/demo.json
	@echo "figures: $(DEMO_DIR)/eval_test/*.png, $(DEMO_DIR)/inspect/*.png"

# The committed record of the demo, results/demo.json, written only here (docs/evaluation.md).
records: demo
	$(PY) -m experiments.demo --model=$(DEMO_DIR) --data_dir=$(DATA_DIR) --out=results/demo.json

# The paper's experiments in kind (Table 1, the viewpoint ablation, weak supervision, Table 2's
# STB column) on generated synthetic sets; resumable, results in results/ (docs/results.md).
experiments: ops
	$(PY) -m experiments.run --suite=all

# Every benchmark figure docs/benchmarks.md quotes, each into results/benchmarks/<name>.json with the
# command and the commit (benchmarks/record.py); run on a quiet machine, one at a time.
benchmarks: ops data
	test -f $(EXPERIMENT_DATA)/synthetic.json || $(PY) -m data_pipeline.synthetic --format=rhd --out=$(EXPERIMENT_DATA) --num_train=6000 --num_test=1000 --seed=0
	$(RECORD) --out=results/benchmarks/emd.json -- benchmarks/emd.py
	$(RECORD) --out=results/benchmarks/pipeline.json -- benchmarks/pipeline.py
	$(RECORD) --out=results/benchmarks/train_step_experiment.json -- benchmarks/train_step.py --preset=experiment
	$(RECORD) --out=results/benchmarks/train_step_paper.json -- benchmarks/train_step.py --preset=paper --rows=s1,s4 --rounds=1 --steps=2 --pipeline_batches=5
	$(RECORD) --out=results/benchmarks/pose_head_fixed.json -- benchmarks/pose_head.py --preset=experiment --data_dir=$(EXPERIMENT_DATA)
	$(RECORD) --out=results/benchmarks/pose_head_stream.json -- benchmarks/pose_head.py --preset=experiment --data_dir=$(EXPERIMENT_DATA) --stream --steps=1000 --eval_every=250
	$(PY) benchmarks/loop.py --preset=experiment --rows=s1,s4 --fit_steps=300 --repeats=3 --out=results/benchmarks/loop_experiment.json

clean:
	rm -rf $(VENV) tf_ops/build
