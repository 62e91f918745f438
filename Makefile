# The two commands of the README, plus a few conveniences.
.PHONY: setup run test lint teardown stop aws-check

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

# The acceptance run on real AWS (your account, $AWS_PROFILE/$AWS_REGION): deploy LAB with a 2 h expiry and a cost
# cap, use it as a student would, tear it down, count leftovers independently, write results/aws-check/<lab>-<time>.*
# (docs/cost_safety.md). E.g. make aws-check LAB=<lab>; AWS_CHECK_ARGS='-e aws_check_max_usd_per_hour=1' for the GPU lab.
aws-check:
	@test -n "$(LAB)" || { echo "usage: make aws-check LAB=<a lab of inventories/shared/labs.yml>"; exit 2; }
	.venv/bin/ansible-playbook -i inventories/aws playbooks/aws_check.yml -e lab=$(LAB) $(AWS_CHECK_ARGS)
