# XenKeep developer entry points. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: run test lint image cloud-template boot bench clean reset-admin

$(STAMP): pyproject.toml constraints/bookworm.txt
	scripts/deps.sh run
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints/bookworm.txt -e '.[test,systemd]'
	touch $@

## Start the XAPI simulator with a demo pool and the daemon against it.
run: $(STAMP)
	$(PY) scripts/devrun.py

## Install what the tests need and run the whole suite.
test: $(STAMP)
	scripts/deps.sh test
	$(PY) -m pytest $(PYTEST_ARGS)

## Build the appliance: out/xenkeep.xva, xenkeep.raw, SHA256SUMS, manifest.txt.
image: $(STAMP)
	scripts/deps.sh image
	$(PY) image/build.py

## The simulator's Debian cloud template: out/cloud-template/debian-cloud.raw
## (rebuilt only when image/cloud-template or its build script changed). Use it
## with `python -m xapisim --demo --qemu --cloud-image out/cloud-template/debian-cloud.raw`.
cloud-template: $(STAMP)
	scripts/deps.sh image
	$(PY) image/cloud_template.py

## Boot out/xenkeep.raw under QEMU; prints the URL and the setup token.
boot: $(STAMP)
	scripts/deps.sh image
	test -e out/xenkeep.raw || $(MAKE) image
	$(PY) image/boot.py

## Benchmarks -> out/bench*.json: datastore merges (root: loop-mounted XFS/ext4),
## the simulator's export rate, backups and replication, each as ratios
## against a baseline of the same run; out/bench-boot.json: boot to the wizard
## beside a minimal image's boot (QEMU, TCG); out/bench-selfservice.json:
## create-to-SSH of a self-service VM and its split (QEMU, TCG).
bench: $(STAMP)
	scripts/deps.sh test
	scripts/deps.sh image
	$(PY) bench/merge_bench.py
	$(PY) -m xapisim.bench --out out/bench.json
	PYTHONPATH=. $(PY) bench/backup_bench.py --out out/bench-backup.json
	$(PY) bench/boot_bench.py --out out/bench-boot.json
	PYTHONPATH=. $(PY) bench/replication_bench.py --out out/bench-replication.json
	PYTHONPATH=. $(PY) bench/selfservice_bench.py --out out/bench-selfservice.json

## ruff and mypy (the test suite runs them too, in tests/test_linters.py).
lint: $(STAMP)
	$(PY) -m pytest -q tests/test_linters.py

clean:
	rm -rf $(VENV) var out build dist

## Let a new administrator be created in the `make run` state (keeps all data).
reset-admin: $(STAMP)
	$(VENV)/bin/xenkeep --config var/xenkeep.toml reset-admin
