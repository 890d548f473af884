#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every crate's tests on real
# files. This is what CI runs (.ci/run) and what README.md tells users to run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
