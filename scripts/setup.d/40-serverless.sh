# shellcheck shell=bash
# Serverless labs (4: serverless, 5: Bashoutter). Sourced by scripts/setup.sh with $REPO set; idempotent.
# - Python packages (schemathesis, playwright) come from requirements/serverless.txt via the extras.
# - Playwright drives Debian's /usr/bin/chromium (its own browser download does not work offline), so no
#   `playwright install` here; the setup script installs chromium and chromium-driver.
# - Japanese fonts, so that the GUI's screenshots show 古池や rather than empty boxes.

kumolab_serverless_setup() {
    local repo="${REPO:?REPO must be set}"
    if declare -F apt_install >/dev/null; then
        apt_install fonts-ipafont-gothic fonts-ipafont-mincho
    elif ! fc-list 2>/dev/null | grep -qi ipa; then
        echo "40-serverless: no Japanese font found; install fonts-ipafont-gothic for readable GUI screenshots" >&2
    fi
    if ! "$repo/.venv/bin/python" -c 'import schemathesis, playwright' 2>/dev/null; then
        echo "40-serverless: schemathesis/playwright missing; run: $repo/.venv/bin/pip install -r $repo/requirements/serverless.txt" >&2
        return 1
    fi
    if [ ! -x /usr/bin/chromium ]; then
        echo "40-serverless: /usr/bin/chromium is missing (Debian package chromium); the browser test needs it" >&2
        return 1
    fi
    echo "40-serverless: schemathesis, playwright and /usr/bin/chromium are ready"
}

kumolab_serverless_setup
