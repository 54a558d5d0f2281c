# Every target creates .venv and installs what it needs, so a fresh clone needs only Python 3.10+.
# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (as here), every satsft process would
# otherwise compile Beam from source again, about 4 CPU s per start.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_TILES ?= 200
DEMO_DIR ?= demo

.PHONY: venv demo test lint bench clean browser

$(STAMP): pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check uv || true
	( command -v uv >/dev/null 2>&1 && uv venv -q --allow-existing $(VENV) ) || $(PY) -m venv $(VENV)
	( command -v uv >/dev/null 2>&1 && uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test]' ) || \
	  $(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/satsft sample --tiles $(DEMO_TILES) --output $(DEMO_DIR)/tree --seed 7 --overwrite
	$(BIN)/satsft build --input $(DEMO_DIR)/tree --output $(DEMO_DIR)/sft --overwrite
	$(BIN)/satsft preview $(DEMO_DIR)/sft --n 12

# The preview test drives Debian's Chromium (Playwright's own browser download cannot work offline). As root
# (CI) it is installed when missing and the test must run; elsewhere the one command to run is printed.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "satsft: the browser test is skipped without Chromium; install it: sudo apt-get install -y chromium"; fi

test: $(STAMP) browser
	$(BIN)/ruff check pipeline transforms scoring tests bench
	SATSFT_REQUIRE_BROWSER=$$([ "$$(id -u)" = 0 ] && echo 1) $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
