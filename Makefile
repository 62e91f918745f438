# The two commands of the README, plus a few conveniences.
.PHONY: setup run test lint teardown stop

# The main job: install everything, then run the GPU lab on the embedded emulator (LAB=ec2_lab for Lab 1).
run: setup
	.venv/bin/ansible-playbook playbooks/$(or $(LAB),gpu_lab).yml

# The whole test suite (unit, molecule, lint, integration against the emulator, browser), on TEST_WORKERS
# pytest-xdist workers (one per core of a 2-core CI machine; TEST_WORKERS=0 runs it in one process).
TEST_WORKERS ?= 2
test: setup
	.venv/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

setup:
	scripts/setup.sh

lint:
	.venv/bin/ansible-lint --offline playbooks roles

teardown:
	.venv/bin/ansible-playbook playbooks/teardown.yml

stop:
	.venv/bin/kumolab-sshhost stop; .venv/bin/kumolab-emulator stop
