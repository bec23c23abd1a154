# The two commands of the README: `make lab` (installs everything, runs the lab) and
# `make test` (installs everything, runs the test suite). Both are idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install lab serve test test-fast bench clean

$(PY):
	python3 -m venv $(VENV) || { apt-get install -y -qq python3-venv && python3 -m venv $(VENV); }

install: $(PY)
	PYTHON=$(PY) bash scripts/install-deps.sh

lab: install
	$(VENV)/bin/restoredrill lab --out reports/lab

serve: install
	$(VENV)/bin/restoredrill lab serve --dir reports/lab-serve

test: install
	$(PY) -m pytest -p no:benchmark

test-fast: install
	$(PY) -m pytest -p no:benchmark tests/unit

# every figure of the README's benchmark table, each against its target in one run
# (a missed target is printed, and the next benchmark still runs)
bench: install
	-$(PY) benchmarks/bench_retention.py
	-$(PY) benchmarks/bench_borg_extract.py
	-$(PY) benchmarks/bench_offsite_listing.py
	-$(PY) benchmarks/bench_offsite.py
	-$(PY) benchmarks/bench_restore.py
	-$(PY) benchmarks/bench_psql_lexer.py
	-$(PY) benchmarks/bench_report.py
	-$(PY) benchmarks/bench_pxar.py
	-$(PY) benchmarks/bench_site_loss.py

clean:
	rm -rf $(VENV) build dist reports/lab reports/lab-serve
