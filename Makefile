# make install: .venv with the project and its CPU extras (fast when already done)
# make demo:    install, then the main job end to end on the embedded defaults
# make test:    install, then the test suite
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# torch is not pinned in pyproject.toml; without a GPU take the CPU build (2.13.0 lies on disk here).
	if command -v nvidia-smi >/dev/null 2>&1; then $(PYTHON) -m pip install --quiet torch; \
	else $(PYTHON) -m pip install --quiet torch==2.13.0; fi
	$(PYTHON) -m pip install --quiet -e ".[hf,test,bertscore,serve,finetune,ray]"
	touch $(STAMP)

demo: install
	$(PYTHON) -m harness.demo

test: install
	$(VENV)/bin/ruff check harness tasks sandbox tests benchmarks leaderboard finetune
	$(VENV)/bin/ruff format --check harness tasks sandbox tests benchmarks leaderboard finetune
	$(PYTHON) -m pytest

clean:
	rm -rf $(VENV) .demo runs
