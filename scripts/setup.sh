#!/usr/bin/env bash
# Install everything kumolab needs: system packages (OpenSSH server for the local lab host, Chromium for
# browser tests), the Python virtual environment .venv/ with Ansible and the AWS collections, and each
# lab's extras (scripts/setup.d/*.sh). Safe to run again: it only installs what is missing.
#
#   scripts/setup.sh            # everything (what `make run` and `make test` call)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif command -v sudo >/dev/null; then sudo "$@";
  else die "need root to run: $* (install these packages yourself, then run setup again)"; fi
}

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing system packages ${missing[*]} and no apt-get here; install them with your package manager"
  if [ "$APT_UPDATED" -eq 0 ]; then log "apt-get update"; as_root apt-get update -qq; APT_UPDATED=1; fi
  log "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# System packages: the OpenSSH server stands in for the lab instances; Chromium drives the browser tests;
# systemd-analyze checks the JupyterLab unit (systemd need not be running).
apt_install openssh-server openssh-client chromium chromium-driver systemd

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" -V 2>&1))"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# pip's own exit status decides (review M5): only its output goes through the filter, whose status is ignored.
pip_install() {
  { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; } 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# Every extra, when requirements/lock.txt exists: exactly its versions and hashes (how to regenerate it: its
# header), then kumolab itself without resolving anything. KUMOLAB_EXTRAS=<some>, or no lock: resolved from
# requirements/*.txt.
EXTRAS="${KUMOLAB_EXTRAS:-test,gpu,qa,serverless}"
LOCK="$REPO/requirements/lock.txt"
if [ "$EXTRAS" = "test,gpu,qa,serverless" ] && [ -f "$LOCK" ]; then
  log "pip install --require-hashes -r requirements/lock.txt (torch comes from local wheels where the machine has them)"
  pip_install --require-hashes -r "$LOCK" || die "pip could not install requirements/lock.txt (see above); a hash mismatch means a download is not the locked file"
  log "pip install --no-deps -e ."
  pip_install --no-deps --no-build-isolation -e "$REPO" || die "pip could not install kumolab itself (see above)"
else
  log "pip install -e .[$EXTRAS] (torch comes from local wheels where the machine has them; not locked)"
  pip_install -e "$REPO[$EXTRAS]" || die "pip could not install .[$EXTRAS] (see above)"
fi
"$VENV/bin/python" -c 'import ansible_collections.amazon.aws, ansible_collections.community.aws' \
  || die "pip did not install the amazon.aws/community.aws collections (they come with the ansible package)"

# Galaxy users get the same collections from requirements.yml; the PyPI ansible package already carries them.
if [ "${KUMOLAB_USE_GALAXY:-0}" = 1 ]; then
  "$VENV/bin/ansible-galaxy" collection install -r "$REPO/requirements.yml" -p "$REPO/collections"
fi

for part in "$REPO"/scripts/setup.d/*.sh; do
  [ -e "$part" ] || continue
  log "$(basename "$part")"
  # shellcheck source=/dev/null
  source "$part"
done
log "done: activate with 'source .venv/bin/activate'"
