# Every target creates .venv on first use, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

HOST ?= 127.0.0.1
PORT ?= 5000
export HOST PORT

.PHONY: install run test lint format migrate bench bench-queries clean vendor screenshot

install: $(STAMP)

$(STAMP): setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/python wsgi.py

migrate: install
	$(BIN)/flask --app wsgi db upgrade

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks (tests/bench/README.md): scripts, not tests; results in bench-results/.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): setup.cfg $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m tests.bench.ingest $(BENCH_ARGS)

bench-queries: $(BENCH_STAMP)
	$(BIN)/python -m tests.bench.queries $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info

# The README's dashboard screenshot, rewritten from a live run of the browser tests.
screenshot: install
	UPDATE_SCREENSHOT=1 $(BIN)/python -m pytest -q tests/e2e/test_dashboard.py -k screenshot

# The dashboard's Socket.IO client, vendored so the page works offline (no CDN).
SOCKET_IO_CLIENT_VERSION ?= 4.8.4

vendor:
	set -eu; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	npm pack --silent --pack-destination "$$tmp" socket.io-client@$(SOCKET_IO_CLIENT_VERSION) >/dev/null; \
	tar -xzf "$$tmp"/socket.io-client-$(SOCKET_IO_CLIENT_VERSION).tgz -C "$$tmp"; \
	mkdir -p web/vendor; \
	cp "$$tmp"/package/dist/socket.io.min.js "$$tmp"/package/dist/socket.io.min.js.map web/vendor/; \
	cp "$$tmp"/package/LICENSE web/vendor/socket.io-client.LICENSE; \
	sed -i 's/^Version: .*/Version: $(SOCKET_IO_CLIENT_VERSION)/' web/vendor/README.md; \
	sed -i "s/^sha256 of socket.io.min.js: .*/sha256 of socket.io.min.js: $$(sha256sum web/vendor/socket.io.min.js | cut -d' ' -f1)/" web/vendor/README.md; \
	echo "web/vendor: socket.io-client $(SOCKET_IO_CLIENT_VERSION)"
