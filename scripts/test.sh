#!/usr/bin/env bash
# Runs every check and test of matchgate, installing what the tests need first.
# `.ci/run` calls exactly this. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cfn-lint on the SAM template"
bash scripts/cfn-lint.sh

step "cargo test (every crate, every test)"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
