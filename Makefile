# Two commands for a newcomer: `make run` and `make test` (see README.md).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMPS := data

# Offline data: use the shared copy of MovieLens beside the checkout when present;
# otherwise init_dataset.py downloads the official zip (checksum verified).
SHARED_DATA ?= $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/ml-100k/u.data),)
export ML100K_SOURCE ?= $(SHARED_DATA)/ml-100k
export ML100K_DETAILS ?= $(SHARED_DATA)/ml-100k-details.csv
export SHARED_DATA_DIR ?= $(SHARED_DATA)
endif

.PHONY: run serve test init train frontend browser lint format fuzz bench clean venv posters

venv: $(STAMPS)/.stamp-venv

$(STAMPS)/.stamp-venv: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@mkdir -p $(STAMPS) && touch $@

# Import once; `make init` forces a rerun (idempotent: rows are updated in place).
# Re-imported (idempotently) when the import or the schema changes.
$(STAMPS)/.stamp-import: $(STAMPS)/.stamp-venv init_dataset.py models.py
	$(PY) init_dataset.py
	@touch $@

init: $(STAMPS)/.stamp-venv
	$(PY) init_dataset.py
	@touch $(STAMPS)/.stamp-import

# Train once after the import; `make train` retrains.
$(STAMPS)/.stamp-train: $(STAMPS)/.stamp-import
	@if [ -f train_evaluate_model.py ]; then $(PY) train_evaluate_model.py; \
	else echo "train_evaluate_model.py not present yet: serving without a model pack"; fi
	@touch $@

train: $(STAMPS)/.stamp-import
	$(PY) train_evaluate_model.py
	@touch $(STAMPS)/.stamp-train

# Build the Vue front end when Node.js is available; the API works without it.
frontend:
	@if [ ! -f frontend/package.json ]; then echo "frontend/ not present: API only"; \
	elif ! command -v npm >/dev/null 2>&1; then \
		echo "Node.js/npm not found: skipping the front-end build (API only at /api)"; \
	elif [ -f frontend/dist/index.html ] && [ frontend/node_modules/.package-lock.json -nt frontend/package-lock.json ] && [ -z "$$(find frontend/src frontend/public frontend/index.html frontend/package.json -newer frontend/dist/index.html 2>/dev/null | head -1)" ]; then \
		echo "front end is up to date"; \
	else \
		cd frontend && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npm run build; \
	fi

# Debian's Chromium and a Chinese font for the browser test (npx playwright install
# cannot download browsers here; playwright-core drives /usr/bin/chromium).
browser:
	@if [ -x /usr/bin/chromium ] && fc-list :lang=zh 2>/dev/null | grep -q .; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; \
	else echo "install chromium and fonts-wqy-microhei (as root, apt-get): the browser test needs them"; fi

run: $(STAMPS)/.stamp-train frontend
	$(PY) app.py

serve: $(STAMPS)/.stamp-train frontend
	APP_ENV=production $(BIN)/gunicorn --config gunicorn.conf.py "app:create_app()"

test: $(STAMPS)/.stamp-venv frontend browser
	$(BIN)/python -m pytest

lint: $(STAMPS)/.stamp-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMPS)/.stamp-venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Posters (optional, resumable): the shared movielens-posters mapping when present,
# else its GitHub URL; POSTERS_ARGS adds options (e.g. POSTERS_ARGS="--limit 50").
POSTERS_CSV := $(wildcard $(SHARED_DATA)/movielens-posters/movie_poster.csv)
posters: $(STAMPS)/.stamp-venv
	$(PY) download_posters.py $(if $(POSTERS_CSV),--csv $(POSTERS_CSV)) $(POSTERS_ARGS)

# A long schemathesis run over every API route (make test runs a bounded one).
FUZZ_EXAMPLES ?= 300
fuzz: $(STAMPS)/.stamp-venv
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz.py -q

bench: $(STAMPS)/.stamp-venv
	$(PY) bench/import_bench.py
	$(PY) bench/recommender_bench.py

clean:
	rm -rf $(VENV) $(STAMPS)/.stamp-* frontend/node_modules frontend/dist
