# p4cs — top-level entry points. `sudo make demo` and `sudo make test` are the README's two commands.
.PHONY: setup setup-test demo test test-fast dataplane p4 clean
VENV := .venv
P4CS := $(VENV)/bin/p4cs

setup:
	./scripts/setup.sh

setup-test:
	./scripts/setup.sh --test

demo: setup
	$(P4CS) demo

test: setup-test
	./scripts/run-tests.sh

dataplane:
	$(MAKE) -C dataplane

# Regenerate the DPDK artifacts (needs p4c-dpdk on PATH; the results are committed).
p4:
	$(P4CS) generate --compile

clean:
	$(MAKE) -C dataplane clean
