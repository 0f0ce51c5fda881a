#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) on the checked-in corpus.
#
#   fuzz/run.sh [SECONDS]
#
# Exits non-zero as soon as a target crashes, panics, leaks, times out or runs out of memory;
# the failing input is left in fuzz/artifacts/<target>/ (reproduce it with
# `cargo +nightly fuzz run <target> <file>`). Also replays fuzz/regressions/ first, so a known
# bug keeps failing until it is fixed.
#
# New inputs found during the run go to a scratch corpus, not to fuzz/corpus/, so the checked-in
# corpus stays small; to fold them in, run `cargo +nightly fuzz cmin <target>` by hand.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR"

TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
if ! cargo "+$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi

TARGETS=(request_scanner reply_frame http_request)

# One build for all targets (release + debug assertions + ASan, cargo-fuzz's defaults).
cargo "+$TOOLCHAIN" fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for t in "${TARGETS[@]}"; do
  # Regressions: each file named <target>-* must pass.
  regs=()
  for f in regressions/"$t"-*; do
    [ -f "$f" ] && regs+=("$f")
  done
  if [ "${#regs[@]}" -gt 0 ]; then
    echo "== $t: replaying ${#regs[@]} regression input(s)"
    cargo "+$TOOLCHAIN" fuzz run "$t" "${regs[@]}" -- \
      -runs=1 -rss_limit_mb=2048 -max_len=65536 -timeout=10
  fi

  echo "== $t: fuzzing for ${SECONDS_PER_TARGET}s"
  mkdir -p "$scratch/$t"
  # First corpus dir receives new inputs; the checked-in one is only read.
  cargo "+$TOOLCHAIN" fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" \
    -rss_limit_mb=2048 \
    -max_len=65536 \
    -timeout=10 \
    -print_final_stats=1
done

echo "all fuzz targets passed"
