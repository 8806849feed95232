# Two commands do everything, set-up included:
#   make demo   creates .venv, installs the package, runs the examples (digits, brains, brain maps and report, real activation maps, sprites, Dask search)
#   make test   creates .venv, installs the package with its extras, runs every test
#   make docs   also installs the doc extra, builds doc/_build/html (examples run, warnings
#               are errors), checks its links offline and screenshots pages in Chromium
# TORCH pins the CPU build that installs from this machine's disk; override it
# (e.g. `make test TORCH=torch`) for a CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

SPHINXOPTS ?=

.PHONY: test test-fast demo bench docs clean

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
	$(PY) examples/plot_real_activation_maps.py
	$(PY) examples/plot_sprites_disentanglement.py
	$(PY) examples/plot_grid_search_on_dask.py

$(VENV)/.installed-doc: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e ".[doc]"
	touch $@

# SPHINXOPTS="-D plot_gallery=0" skips running the examples while editing.
docs: $(VENV)/.installed-doc
	$(PY) -m sphinx -W --keep-going -b html -d doc/_build/doctrees $(SPHINXOPTS) doc doc/_build/html
	$(PY) doc/check_links.py doc/_build/html
	$(PY) doc/screenshots.py --build doc/_build/html --out doc/_build/screenshots

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_digits_defaults.py

clean:
	rm -rf $(VENV) results *.egg-info doc/_build doc/auto_examples doc/generated doc/sg_execution_times.rst
