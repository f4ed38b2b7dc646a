# LogiFlow: `make run` runs the whole stack on embedded defaults (Apache Kafka where Java 17+ is, else Tansu) under
# supervisord; `make test` runs the test suite (Tansu, then Apache Kafka); `make kafka` runs an Apache Kafka broker
# in the foreground, for a `make run` told to use it (LOGIFLOW_RUN_BROKER=external).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

KAFKA_LIB := var/kafka/lib
KAFKA_JARS := $(KAFKA_LIB)/.fetched
KAFKA_PORT ?= 9092
# Why the Apache Kafka lane cannot run here (empty when it can): it needs java 17+, and mvn while the jars are missing.
KAFKA_LANE_MISSING = $(shell v=$$(java -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p'); \
	if [ "$${v:-0}" -lt 17 ]; then echo "java 17+ is not on PATH"; \
	elif [ ! -e $(KAFKA_JARS) ] && ! command -v mvn >/dev/null; then echo "mvn is not on PATH to fetch the Kafka jars"; fi)

.PHONY: setup asyncapi-tools-if-possible check-asyncapi asyncapi-renderer run test test-kafka bench bench-kafka chaos kafka-lane-or-skip lint lint-imports check-compose kafka kafka-jars kafka-jars-if-possible clean

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "LogiFlow needs Python 3.11+"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP) asyncapi-tools-if-possible
	@mkdir -p var/media var/celery

# The official AsyncAPI tooling (tools/asyncapi/package.json, pinned, with its lockfile): the CLI validates the event
# catalogue in `make test`; the renderer is vendored (`make asyncapi-renderer`), so pages need no npm. Installed by
# npm ci where npm is on the PATH (about 500 MB, a minute or two); without npm, one line says so.
ASYNCAPI_DIR := tools/asyncapi
ASYNCAPI_TOOLS := $(ASYNCAPI_DIR)/node_modules/.installed
ASYNCAPI_CLI := $(ASYNCAPI_DIR)/node_modules/.bin/asyncapi
# The CLI's usage metrics stay off: its settings file is ours, not one it writes to $$HOME.
ASYNCAPI_ENV := ASYNCAPI_METRICS_CONFIG_PATH=$(CURDIR)/$(ASYNCAPI_DIR)/analytics.json SUPPRESS_NO_CONFIG_WARNING=1

$(ASYNCAPI_TOOLS): $(ASYNCAPI_DIR)/package-lock.json
	cd $(ASYNCAPI_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

asyncapi-tools-if-possible:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(ASYNCAPI_TOOLS); \
	else echo "AsyncAPI CLI not installed: npm is not on PATH"; fi

# docs/asyncapi.yaml is what the code generates (tests/consumers/test_catalogue.py); here the official CLI checks it.
# Without the CLI it is skipped in one line, unless LOGIFLOW_REQUIRE_ASYNCAPI_CLI is set (CI): then a failure.
check-asyncapi: setup
	@if [ -x $(ASYNCAPI_CLI) ]; then $(ASYNCAPI_ENV) $(ASYNCAPI_CLI) validate docs/asyncapi.yaml --fail-severity warn; \
	elif [ -n "$$LOGIFLOW_REQUIRE_ASYNCAPI_CLI" ]; then echo "AsyncAPI CLI required but not installed (npm?)" >&2; exit 1; \
	else echo "AsyncAPI validation skipped: the CLI is not installed (npm is not on PATH)"; fi

# Copies @asyncapi/react-component's standalone bundle (the version pinned in tools/asyncapi) into apps/consumers/static.
asyncapi-renderer:
	$(ASYNCAPI_DIR)/refresh-renderer.sh

# Apache Kafka is the default broker of `make run` and `make chaos` where it can run (java 17+; mvn to fetch the jars
# once): fetch them then, unless the run is told to use another broker. Without them run_stack/chaos say why, in one line.
kafka-jars-if-possible:
	@if [ -z "$(KAFKA_LANE_MISSING)" ]; then $(MAKE) --no-print-directory kafka-jars; fi

run: setup $(if $(filter tansu external,$(LOGIFLOW_RUN_BROKER)),,kafka-jars-if-possible)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) scripts/run_stack.py

# ruff (pycodestyle, pyflakes, import order, bugbear, pyupgrade) and mypy on the code; settings in pyproject.toml.
lint: setup
	$(VENV)/bin/ruff check apps logiflow
	$(VENV)/bin/mypy apps logiflow

lint-imports: setup
	$(VENV)/bin/lint-imports

check-compose: setup
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

# The suite on Tansu, then again on Apache Kafka; without java/mvn the Kafka lane is skipped in one line,
# unless LOGIFLOW_REQUIRE_KAFKA_LANE is set (CI), which makes that a failure.
test: setup lint lint-imports check-compose check-asyncapi
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory kafka-lane-or-skip LANE=test-kafka

test-kafka: setup kafka-jars
	env -u KAFKA_BOOTSTRAP_SERVERS LOGIFLOW_TEST_BROKER=kafka $(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/relay.py
	$(PY) bench/invoicing.py
	$(PY) bench/story.py
	@$(MAKE) --no-print-directory kafka-lane-or-skip LANE=bench-kafka

bench-kafka: setup kafka-jars
	env -u KAFKA_BOOTSTRAP_SERVERS BENCH_BROKER=kafka $(PY) bench/relay.py
	env -u KAFKA_BOOTSTRAP_SERVERS BENCH_BROKER=kafka $(PY) bench/invoicing.py
	env -u KAFKA_BOOTSTRAP_SERVERS BENCH_BROKER=kafka $(PY) bench/story.py

kafka-lane-or-skip:
	@missing="$(KAFKA_LANE_MISSING)"; \
	if [ -z "$$missing" ]; then $(MAKE) --no-print-directory $(LANE); \
	elif [ -n "$$LOGIFLOW_REQUIRE_KAFKA_LANE" ]; then echo "Kafka lane required (LOGIFLOW_REQUIRE_KAFKA_LANE) but $$missing" >&2; exit 1; \
	else echo "Kafka lane skipped: $$missing"; fi

# Apache Kafka's jars from Maven Central (version in deploy/kafka/pom.xml), fetched once into an ignored folder.
$(KAFKA_JARS): deploy/kafka/pom.xml
	rm -rf $(KAFKA_LIB)
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_LIB)
	touch $@

kafka-jars: $(KAFKA_JARS)

# A single-node Apache Kafka on 127.0.0.1:$(KAFKA_PORT) in the foreground, data in var/kafka/data; Ctrl-C stops it.
kafka: setup kafka-jars
	KAFKA_PORT=$(KAFKA_PORT) $(PY) scripts/kafka_broker.py

# The fault-injection run (README, "make chaos"); CHAOS_SEED picks the schedule.
CHAOS_SECONDS ?= 600
chaos: setup $(if $(filter tansu,$(CHAOS_BROKER)),,kafka-jars-if-possible)
	CHAOS_SECONDS=$(CHAOS_SECONDS) $(PY) -m chaos

clean:
	rm -rf $(VENV) var
