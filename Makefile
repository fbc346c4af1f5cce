# Liên Thông: developer entry points. Every recipe runs in bash with -e and pipefail, so a failing step
# fails the target. The test servers (PostgreSQL, Redis) stay up between runs; `make stop` stops them.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: help demo test lint bench services stop clean

help:
	@echo "make demo    run the demo (lienthong demo)"
	@echo "make test    lint, type-check and run the tests (PYTEST_ARGS=... for pytest)"
	@echo "make lint    ruff and mypy only"
	@echo "make bench   run bench/run.py"
	@echo "make stop    stop the test PostgreSQL and Redis"
	@echo "make clean   stop them and remove var/ and .venv"

demo:
	@bash scripts/venv.sh
	.venv/bin/lienthong demo $(DEMO_ARGS)

# One shell for the whole sequence, so that the exported URLs reach pytest. An empty URL means the
# server could not be had (the script said why) and the tests that need it skip.
test:
	@bash scripts/venv.sh test
	@pg_url=$$(bash scripts/postgres.sh start); \
	redis_url=$$(bash scripts/redis.sh start); \
	chromium=$$(bash scripts/chromium.sh); \
	export LIENTHONG_TEST_PG_URL="$$pg_url" LIENTHONG_TEST_REDIS_URL="$$redis_url" \
		LIENTHONG_TEST_CHROMIUM="$$chromium"; \
	echo "==> PostgreSQL: $${pg_url:-none, its tests will be skipped}"; \
	echo "==> Redis: $${redis_url:-none, its tests will be skipped}"; \
	echo "==> Chromium: $${chromium:-none, the browser tests will be skipped}"; \
	echo "==> ruff check ."; \
	.venv/bin/ruff check .; \
	echo "==> mypy"; \
	.venv/bin/mypy; \
	echo "==> pytest (with branch coverage; the floor is fail_under in pyproject.toml)"; \
	rm -f .coverage .coverage.*; \
	.venv/bin/python -m pytest -q -p no:cacheprovider --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

lint:
	@bash scripts/venv.sh test
	.venv/bin/ruff check .
	.venv/bin/mypy

bench:
	@bash scripts/venv.sh bench
	@bash scripts/bench-tools.sh
	.venv/bin/python bench/run.py $(BENCH_ARGS)

# Start the test servers and print their URLs (handy for running pytest by hand).
services:
	@echo "LIENTHONG_TEST_PG_URL=$$(bash scripts/postgres.sh start)"
	@echo "LIENTHONG_TEST_REDIS_URL=$$(bash scripts/redis.sh start)"

stop:
	@bash scripts/postgres.sh stop
	@bash scripts/redis.sh stop

clean:
	-@bash scripts/postgres.sh clean
	-@bash scripts/redis.sh stop
	rm -rf var .venv
