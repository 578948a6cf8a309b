# The two commands of the README: `make demo` and `make test`.
# Both create .venv/ when missing, install the project into it, and make sure the
# Fashion-MNIST raw files can be found (Debian's dataset-fashion-mnist package).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo test rehearsal rehearsal-test bench data slurm lint format clean-results

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Looks where the workflow looks (lrdynamics.engine.data.raw_locations); installs Debian's
# package only when no copy is found.
data: $(STAMP)
	@if ! $(BIN)/python -m lrdynamics.engine.data locate fashion_mnist >/dev/null 2>&1; then \
	  echo "Fashion-MNIST not found: installing Debian's dataset-fashion-mnist"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	    || echo "could not install dataset-fashion-mnist; see README (Data)"; \
	fi
	@$(BIN)/python -m lrdynamics.engine.data locate fashion_mnist

# Debian's SLURM and munge for the test that runs the workflow through a real SLURM
# (tests/test_slurm.py); without them, or without root, that test is skipped with the reason.
slurm:
	@if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo -n); \
	  echo "installing slurmctld slurmd slurm-client munge (for tests/test_slurm.py)"; \
	  ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends slurmctld slurmd slurm-client munge) >/dev/null \
	    || echo "could not install SLURM: tests/test_slurm.py will be skipped"; \
	fi

demo: $(STAMP) data
	$(BIN)/snakemake --cores $(CORES)
	@$(BIN)/python -m lrdynamics.studies.ledger show results/claims.csv

test: $(STAMP) data slurm
	$(BIN)/python -m pytest

# The paper config's whole DAG at 0.2% of its length, into results-rehearsal/ (docs/paper_scale.md);
# it needs the CIFAR-10 and MNIST files (or download: true with internet access).
rehearsal: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile config/paper.yaml --config 'rehearsal={length: 0.002}'

# That rehearsal end to end on CIFAR-10 and MNIST files the test writes (tests/test_rehearsal.py).
rehearsal-test: $(STAMP)
	$(BIN)/python -m pytest -m rehearsal

# The engine against the conventional PyTorch loop (results/bench/bench.json; README "Performance").
bench: $(STAMP) data
	$(BIN)/python workflow/bench/bench.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

clean-results:
	rm -rf results .snakemake
