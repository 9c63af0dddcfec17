# The two commands: `make demo` (the main job on the local stack) and `make test`.
# Both work on a fresh clone with only Python 3.11 present: they create .venv and install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install stop clean

$(STAMP): pyproject.toml
	@echo "installing into $(VENV) (log: $(VENV)/install.log)"
	$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e '.[worker,local,test]'; } \
		> $(VENV)/install.log 2>&1 || { tail -40 $(VENV)/install.log; exit 1; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tickwire demo

test: $(STAMP)
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

stop: $(STAMP)
	$(BIN)/tickwire stack down

clean: stop
	rm -rf .tickwire
