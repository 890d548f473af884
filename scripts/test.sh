#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every crate's tests on real
# files. This is what CI runs (.ci/run) and what README.md tells users to run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace

# Real Kafka clients (confluent-kafka, kafka-python, aiokafka, kcat) against
# the real broker: see docs/testing.md.
./scripts/test-python.sh
