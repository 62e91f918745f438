# shellcheck shell=bash
# Lab 3 (QA bot): Debian prose for the offline model's training data and the Python packages.
# Sourced by the setup script with $REPO set; idempotent. The model itself is NOT built here: the tests,
# the playbook and `qa-bot build-model` build it on first use and cache it under $REPO/.cache/qa-model/.

qa_apt_packages=(debian-history debian-handbook)
qa_missing=()
for qa_pkg in "${qa_apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$qa_pkg" 2>/dev/null | grep -q "install ok installed" || qa_missing+=("$qa_pkg")
done
if ((${#qa_missing[@]})); then
    echo "setup: installing ${qa_missing[*]} (English prose for the QA model's training data)"
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${qa_missing[@]}"
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${qa_missing[@]}"
    fi
fi
unset qa_pkg qa_missing qa_apt_packages

# torch==2.14.1 comes from this machine's local wheels (pip's constraint file); the rest from PyPI.
"$REPO/.venv/bin/pip" install --quiet -r "$REPO/requirements/qa.txt"
