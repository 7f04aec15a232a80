#!/usr/bin/env bash
# Edge coverage of shopcall's own code (crates/*/src, the harness excluded) reached by a
# target's corpus: libFuzzer's -print_coverage over fuzz/corpus/<t> and fuzz/work/corpus/<t>.
#
#   fuzz/coverage.sh <target>      (after fuzz/run.sh or `cargo fuzz build -a`)
#
# Prints, per source file, covered/total edges of the functions the binary contains (a
# function not linked into the target is not counted), then the total.
set -euo pipefail
cd "$(dirname "$0")"
t="$1"
bin="target/x86_64-unknown-linux-gnu/release/$t"
dirs=()
for d in "work/corpus/$t" "corpus/$t"; do [ -d "$d" ] && dirs+=("$d"); done
"$bin" -runs=0 -print_coverage=1 -rss_limit_mb=4096 "${dirs[@]}" 2>&1 |
    grep -E '^(UN)?COVERED_FUNC' |
    grep -E '/crates/[a-z]+/src/' | grep -v '/src/fuzzing.rs' |
    sed -E 's/.* edges: ([0-9]+)\/([0-9]+) .* ([^ ]*\/crates\/[a-z]+\/src\/[^:]*):[0-9]+$/\1 \2 \3/' |
    sed -E 's#[^ ]*/crates/#crates/#' |
    awk '{c[$3]+=$1; n[$3]+=$2; C+=$1; N+=$2}
         END {for (f in c) printf "%6d/%-6d %5.1f%%  %s\n", c[f], n[f], n[f] ? 100*c[f]/n[f] : 0, f;
              printf "%6d/%-6d %5.1f%%  total (%s)\n", C, N, N ? 100*C/N : 0, "'"$t"'"}' |
    sort -k3
