# The two commands of the README's Quick start; each does its own set-up on a fresh machine.
PYTHON ?= python3
# torchvision finds ImageNet weights here offline (used only by training and a few tests).
export TORCH_HOME ?= $(abspath ../shared/torch-home)

.PHONY: demo test bench

demo:  ## install, then score the bundled example faces with the default model and write heatmaps
	$(PYTHON) -m pip install -q -e .
	effres score examples/faces --heatmap out/heatmaps

test:  ## install with test extras, then run the test suite
	$(PYTHON) -m pip install -q -e ".[test]"
	$(PYTHON) -m pytest -q

bench:  ## print the scoring and training speed tables
	$(PYTHON) benchmarks/bench_score.py
	$(PYTHON) benchmarks/bench_train.py --quick
