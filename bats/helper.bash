# Shared setup for the CLI tests. They run the module from the checkout and
# never touch the Docker engine: only --help, --version, usage errors, `validate`,
# `export` and `schema` are run here.

bats_require_minimum_version 1.5.0

DOCKERUP_PY="$BATS_TEST_DIRNAME/../dockerup.py"

dockerup() {
  python3 "$DOCKERUP_PY" "$@"
}

# A confdir and a configuration file of the test's own.
setup() {
  CONFDIR="$BATS_TEST_TMPDIR/containers.d"
  CONFIG="$BATS_TEST_TMPDIR/dockerup.conf"
  mkdir -p "$CONFDIR"
  printf 'confdir=%s\ncache=%s\n' "$CONFDIR" "$BATS_TEST_TMPDIR/cache" >"$CONFIG"
}

# spec FILE JSON: write one container spec into the confdir.
spec() {
  printf '%s\n' "$2" >"$CONFDIR/$1"
}

# Fail with what was expected and what came, for readable test output.
expect_equal() {
  if [[ "$1" != "$2" ]]; then
    printf 'expected: %s\nactual:   %s\n' "$2" "$1" >&2
    return 1
  fi
}

expect_contains() {
  if [[ "$1" != *"$2"* ]]; then
    printf 'expected to contain: %s\nactual: %s\n' "$2" "$1" >&2
    return 1
  fi
}

no_traceback() {
  [[ "$output$stderr" != *Traceback* ]]
}
