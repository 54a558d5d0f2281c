# Every target creates .venv and installs what it needs, so a fresh clone needs only Python 3.10+.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_TILES ?= 200
DEMO_DIR ?= demo

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check uv || true
	( command -v uv >/dev/null 2>&1 && uv venv -q --allow-existing $(VENV) ) || $(PY) -m venv $(VENV)
	( command -v uv >/dev/null 2>&1 && uv pip install -q --python $(BIN)/python -e '.[test]' ) || \
	  $(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/satsft sample --tiles $(DEMO_TILES) --output $(DEMO_DIR)/tree --seed 7 --overwrite
	$(BIN)/satsft build --input $(DEMO_DIR)/tree --output $(DEMO_DIR)/sft --overwrite

test: $(STAMP)
	$(BIN)/ruff check pipeline transforms scoring tests bench
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
