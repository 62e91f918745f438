# shellcheck shell=bash
# Lab 3 (QA bot): English prose from Debian's debian-history package is the offline QA model's training
# text. Sourced by scripts/setup.sh (which defines apt_install and installs the Python extras, qa included).
# The model itself is not built here: the tests, the playbook and `qa-bot build-model` build it on first
# use and cache it under $REPO/.cache/qa-model/.
apt_install debian-history
