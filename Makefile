# All targets set themselves up: a fresh machine needs only python3 (>=3.10) and make.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-isa lab demo bench clean

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## make test: create .venv, install everything, run the whole suite (notebooks in smoke mode)
test: $(STAMP)
	bash scripts/install_browser.sh || true
	$(PY) -m pytest -q

## make test-isa: the library tests again on AVX2 kernels only (torch and oneDNN), so a test that
## assumes bit-identical results across code paths fails on this machine too (CI runs it)
ISA_ENV := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
LIBRARY_TESTS := -m "not slow and not browser and not gpu" --ignore-glob="tests/test_notebooks*" \
	--ignore-glob="tests/test_app*" --ignore=tests/test_viz_notebook.py
test-isa: $(STAMP)
	$(ISA_ENV) $(PY) -m pytest -q $(LIBRARY_TESTS)

## make lab: open the walkthrough notebooks in JupyterLab. As root (containers, Binder-like
## setups) JupyterLab refuses to start without --allow-root, so it is added then, and only then.
LAB_ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_ALLOW_ROOT)

## make demo: serve the Gradio app on http://127.0.0.1:7860
demo: $(STAMP)
	$(PY) app/app.py

## make bench: layer speed benchmark
bench: $(STAMP)
	$(PY) benchmarks/layer_speed.py

clean:
	rm -rf $(VENV) .pytest_cache
