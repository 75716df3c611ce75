# Two commands: `make demo` runs the main job, `make test` runs the whole suite.
# Each sets up the venv it needs (.venv) from the pinned requirement files.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# DDS stays on this machine; each run gets its own domain unless one is given.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_DOMAIN_ID ?= $(shell $(PYTHON) -c "import random; print(random.randint(1, 101))")
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export PYTHONUNBUFFERED := 1

.PHONY: venv install lint test demo demo-learn bench soak clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt requirements-ros.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# A real (non-editable) install, so share/ and the ament index land in the venv.
install: venv
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --force-reinstall .

# The suite in random order (pytest-randomly; the seed is printed in the header): repeat an order
# with PYTEST_ARGS="-p randomly --randomly-seed=N", keep file order with PYTEST_ORDER="-p no:randomly".
# Test modules run on PYTEST_WORKERS pytest-xdist workers, a whole module per worker (0: one process).
PYTEST_ORDER ?= -p randomly
PYTEST_WORKERS ?= 2
test: install lint
	cd test && ../$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ORDER) -n $(PYTEST_WORKERS) --dist loadfile \
		$(PYTEST_ARGS) .

# ruff (ruff.toml): lint and import order, before the suite
lint: venv
	$(BIN)/ruff check .

demo: install
	$(BIN)/python -m magma_ros.demo

# record expert demonstrations in the simulator, fine-tune a small Magma on them, evaluate it closed
# loop (docs/demo.md#learning-in-the-simulator; about 30 min on 2 cores; not part of make test)
demo-learn: install
	$(BIN)/python -m magma_ros.demo_learn

.PHONY: docs
# docs/reference/*.md from the option declarations (test/test_docs_reference.py checks they are current)
docs: install
	$(BIN)/python tools/docs_reference.py

# Every benchmark but the 10-minute soak, which has its own target (bench/_*.py are helpers).
bench: install
	for b in bench/[!_]*.py; do [ $$b = bench/soak.py ] && continue; echo "== $$b"; $(BIN)/python $$b || exit 1; done

soak: install
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) build *.egg-info
