#!/usr/bin/env bash
# Every fuzz target for SECS seconds (default 30) from its committed seeds, with libFuzzer via
# cargo fuzz (installed here if missing). Stable Rust is enough: RUSTC_BOOTSTRAP lets cargo
# fuzz pass its instrumentation flags; no sanitizer (the code under test has no unsafe of its
# own). Prints executions and coverage per target; fails on any crash.
#   scripts/fuzz-smoke.sh [SECS] [TARGET...]   e.g. scripts/fuzz-smoke.sh 3600 sk_exchange
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
shift || true
only=("$@")

# crate directory : targets
suites=(
    "crates/ike-wire/fuzz:decode_message reassemble"
    "crates/esp/fuzz:decapsulate"
    "crates/profile/fuzz:parse client_package"
    "crates/ikev2/fuzz:sk_exchange eap_tls"
    "crates/gateway/fuzz:gateway_toml"
    "crates/agent/fuzz:control_lines"
    "crates/radius/fuzz:answer"
)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
target_dir="$PWD/target/fuzz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for suite in "${suites[@]}"; do
    dir=${suite%%:*}
    for target in ${suite#*:}; do
        if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " =~ " ${target} " ]]; then
            continue
        fi
        corpus="$work/$target"
        mkdir -p "$corpus"
        seeds=()
        [ -d "$dir/seeds/$target" ] && seeds=("$dir/seeds/$target")
        echo "== fuzz $target ($dir) for ${secs}s"
        log="$work/$target.log"
        if ! cargo fuzz run --fuzz-dir "$dir" --target-dir "$target_dir" --sanitizer none \
            "$target" "$corpus" "${seeds[@]}" -- -max_total_time="$secs" -rss_limit_mb=2048 \
            -print_final_stats=1 >"$log" 2>&1; then
            tail -n 60 "$log"
            echo "fuzz $target FAILED (artifacts under $dir/artifacts/$target)"
            exit 1
        fi
        # libFuzzer's last status line and final stats: executions and edge coverage.
        grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -n 1 || true
        grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' "$log" || true
    done
done
