# Two commands do everything, set-up included:
#   make demo   creates .venv, installs the package, runs the examples (digits, brains, brain maps and report, Dask search)
#   make test   creates .venv, installs the package with its extras, runs every test
# TORCH pins the CPU build that installs from this machine's disk; override it
# (e.g. `make test TORCH=torch`) for a CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: test test-fast demo bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test,plot,neuro,dist]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(PY) examples/plot_digits_vs_pca.py
	$(PY) examples/plot_brain_population.py
	$(PY) examples/plot_brain_latent_maps.py
	$(PY) examples/plot_grid_search_on_dask.py

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_digits_defaults.py

clean:
	rm -rf $(VENV) results *.egg-info
