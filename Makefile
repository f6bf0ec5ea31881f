# One-command set-up. Every target creates .venv and installs the pins when they are missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(abspath $(VENV))/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
DATA_DIR ?= data/synthetic_rhd
DEMO_DIR ?= runs/demo

.PHONY: venv ops data test demo experiments clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

ops: $(STAMP)
	$(MAKE) -C tf_ops PYTHON=$(PY)

data: $(STAMP)
	$(PY) -m data_pipeline.synthetic --format=rhd --out $(DATA_DIR) --num_train 2000 --num_test 200 --seed 0

test: ops
	$(PY) -m pytest -q

# The demo: synthetic data, S4 (poe) with the cpu preset, evaluation, figures, and the score of
# the training set's mean pose for reference.
demo: ops data
	$(PY) -m data_pipeline.inspect --data=synthetic --data_dir=$(DATA_DIR) --split=train --index=0 --augment --out=$(DEMO_DIR)/inspect/train_0.npz --png=$(DEMO_DIR)/inspect/train_0.png
	$(PY) -m data_pipeline.inspect --data=synthetic --data_dir=$(DATA_DIR) --split=test --index=0 --out=$(DEMO_DIR)/inspect/test_0.npz --png=$(DEMO_DIR)/inspect/test_0.png
	$(PY) train.py --strategy=poe --data=synthetic --data_dir=$(DATA_DIR) --preset=cpu --model_dir=$(DEMO_DIR)
	$(PY) evaluate.py --ckpt=$(DEMO_DIR) --out=$(DEMO_DIR)/eval_test
	$(PY) -m evaluation.mean_pose --data=synthetic --data_dir=$(DATA_DIR) --image_size=64 --out=$(DEMO_DIR)/mean_pose/predictions.npz
	$(PY) evaluate.py --predictions=$(DEMO_DIR)/mean_pose/predictions.npz --out=$(DEMO_DIR)/mean_pose
	@$(PY) -c 'import json, sys; m, r = (json.load(open(p))["epe_mean_mm"] for p in sys.argv[1:]); print(f"test EPE: model {m:.2f} mm, training mean pose {r:.2f} mm, ratio {m / r:.2f}")' $(DEMO_DIR)/eval_test/metrics.json $(DEMO_DIR)/mean_pose/metrics.json
	@echo "metrics: $(DEMO_DIR)/eval_test/metrics.json (the mean-pose reference: $(DEMO_DIR)/mean_pose/metrics.json)"
	@echo "figures: $(DEMO_DIR)/eval_test/*.png, $(DEMO_DIR)/inspect/*.png"

# The paper's experiments in kind (Table 1, the viewpoint ablation, weak supervision, Table 2's
# STB column) on generated synthetic sets; resumable, results in results/ (README, Results).
experiments: ops
	$(PY) -m experiments.run --suite=all

clean:
	rm -rf $(VENV) tf_ops/build
