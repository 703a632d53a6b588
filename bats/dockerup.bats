#!/usr/bin/env bats
# End-to-end tests of dockerup's command line that need no Docker engine.

load helper

@test "--help exits 0 and shows the usage and the exit codes" {
  run --separate-stderr dockerup --help
  [ "$status" -eq 0 ]
  expect_contains "$output" "Usage:"
  expect_contains "$output" "dockerup validate [options] [--user-data FILE]"
  expect_contains "$output" "--config FILE"
  expect_contains "$output" "Exit codes:"
  for code in 0 1 2 3; do
    [[ "$output" =~ $'\n'"  $code  " ]]
  done
}

@test "--version prints dockerup and the module's version" {
  version=$(cd "$BATS_TEST_DIRNAME/.." && python3 -c 'import dockerup; print(dockerup.__version__)')
  run --separate-stderr dockerup --version
  [ "$status" -eq 0 ]
  expect_equal "$output" "dockerup $version"
  [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]]
}

@test "an unknown option exits 2 and shows the usage" {
  run --separate-stderr dockerup validate --bogus
  [ "$status" -eq 2 ]
  [ -z "$output" ]
  expect_contains "$stderr" "Usage:"
  expect_contains "$stderr" "Run 'dockerup --help' for the options."
}

@test "an unknown option is named as it was typed, not as a Python repr" {
  run --separate-stderr dockerup validate --dryrun
  [ "$status" -eq 2 ]
  expect_equal "${stderr_lines[0]}" "unknown option --dryrun (did you mean '--dry-run'?)"
}

@test "an option without its value exits 2" {
  run --separate-stderr dockerup validate --config
  [ "$status" -eq 2 ]
  expect_equal "${stderr_lines[0]}" "--config requires argument"
  expect_contains "$stderr" "Usage:"
}

@test "validate on a good confdir exits 0 and prints nothing" {
  spec web.json '{"name": "web", "image": "app:1", "links": ["db"], "portMappings": [{"containerPort": 80}]}'
  spec db.json '{"name": "db", "image": "app:1", "volumes": [{"containerPath": "/data"}]}'
  spec notes.txt 'not a spec'
  run --separate-stderr dockerup validate --config "$CONFIG"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
  expect_contains "$stderr" "2 valid container specs"
}

@test "validate on a bad confdir exits 1 with each problem on its own line" {
  spec web.json '{"name": "web", "image": "app:1", "restart": "sometimes", "portMappings": [{"containerPort": 70000}]}'
  spec db.json '{"name": "db", "image": "app:1",}'
  spec cache.json '{"name": "cache", "image": "app:1", "memory": "4m"}'
  spec ok.json '{"name": "ok", "image": "app:1"}'
  run --separate-stderr dockerup validate --config "$CONFIG"
  [ "$status" -eq 1 ]
  expect_equal "${#lines[@]}" 4
  # Files that are not JSON come first, then the specs in file name order.
  expect_equal "${lines[0]}" "$CONFDIR/db.json: line 1, column 33: invalid JSON: Expecting property name enclosed in double quotes"
  expect_equal "${lines[1]}" "$CONFDIR/cache.json: memory: '4m' is below docker's minimum of 6m"
  expect_equal "${lines[2]}" "$CONFDIR/web.json: portMappings[0].containerPort: 70000 is greater than the maximum of 65535"
  expect_equal "${lines[3]}" "$CONFDIR/web.json: restart: \"sometimes\" is not one of \"always\", \"unless-stopped\", \"on-failure\", \"never\""
  no_traceback
}

@test "validate --user-data accepts a good document" {
  spec web.json '{"name": "web", "image": "app:1"}'
  printf '%s' '{"containers": [{"name": "api", "image": "app:1", "links": ["web"]}, {"image": "app:2"}]}' \
    >"$BATS_TEST_TMPDIR/user-data.json"
  run --separate-stderr dockerup validate --config "$CONFIG" --user-data "$BATS_TEST_TMPDIR/user-data.json"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
  expect_contains "$stderr" "3 valid container specs"
}

@test "validate --user-data names the path of each problem inside the document" {
  user_data="$BATS_TEST_TMPDIR/user-data.json"
  printf '%s' '{"containers": [{"name": "api", "image": "app:1"}, {"name": "worker", "image": 5}, {"name": "x"}]}' \
    >"$user_data"
  run --separate-stderr dockerup validate --config "$CONFIG" --user-data "$user_data"
  [ "$status" -eq 1 ]
  expect_equal "${#lines[@]}" 3
  expect_equal "${lines[0]}" "$user_data: containers[1].image: expected a string, got a number 5"
  expect_equal "${lines[1]}" "$user_data: containers[2]: missing required field 'image'"
  expect_contains "${lines[2]}" "$user_data: containers[2].name: \"x\" must start with a letter or digit"
  no_traceback
}

@test "validate --user-data with a shell script says what it is" {
  user_data="$BATS_TEST_TMPDIR/user-data.sh"
  printf '#!/bin/sh\necho hello\n' >"$user_data"
  run --separate-stderr dockerup validate --config "$CONFIG" --user-data "$user_data"
  [ "$status" -eq 1 ]
  expect_equal "$output" "$user_data: is a script, not a dockerup document {\"containers\": [...]}"
}

@test "validate --user-data with a file that is not JSON says where" {
  user_data="$BATS_TEST_TMPDIR/user-data.txt"
  printf 'containers: []\n' >"$user_data"
  run --separate-stderr dockerup validate --config "$CONFIG" --user-data "$user_data"
  [ "$status" -eq 1 ]
  expect_equal "$output" "$user_data: line 1, column 1: invalid JSON: Expecting value"
}

@test "validate with a missing --config file exits 2 with one line" {
  run --separate-stderr dockerup validate --config "$BATS_TEST_TMPDIR/nowhere.conf"
  [ "$status" -eq 2 ]
  [ -z "$output" ]
  expect_equal "${#stderr_lines[@]}" 1
  expect_contains "${stderr_lines[0]}" " ERROR $BATS_TEST_TMPDIR/nowhere.conf: configuration file not found"
}

@test "validate with a missing --user-data file exits 2 with one line" {
  run --separate-stderr dockerup validate --config "$CONFIG" --user-data "$BATS_TEST_TMPDIR/nowhere.json"
  [ "$status" -eq 2 ]
  expect_equal "${#stderr_lines[@]}" 1
  expect_contains "${stderr_lines[0]}" " ERROR $BATS_TEST_TMPDIR/nowhere.json: cannot read: No such file or directory"
}

@test "validate with a bad configuration key exits 2 and suggests the right one" {
  printf 'confdri=%s\n' "$CONFDIR" >"$CONFIG"
  run --separate-stderr dockerup validate --config "$CONFIG"
  [ "$status" -eq 2 ]
  expect_equal "${#stderr_lines[@]}" 1
  expect_contains "${stderr_lines[0]}" "$CONFIG:1: unknown key 'confdri' (did you mean 'confdir'?)"
}

@test "export without --format exits 2 and says what it needs" {
  run --separate-stderr dockerup export --config "$CONFIG"
  [ "$status" -eq 2 ]
  expect_equal "${stderr_lines[0]}" "export needs --format ecs or --format compose"
  expect_contains "$stderr" "Usage:"
}

@test "export --format ecs prints a task definition of a task definition's containers" {
  spec shop.json '{"family": "shop", "containerDefinitions": [{"name": "web", "image": "app:1", "memory": 64,
    "environment": [{"name": "TZ", "value": "UTC"}]}]}'
  run --separate-stderr dockerup export --config "$CONFIG" --format ecs --family shop
  [ "$status" -eq 0 ]
  [ -z "$stderr" ]
  expect_equal "$(python3 -c 'import json, sys; t = json.load(sys.stdin); print(t["family"], t["containerDefinitions"][0]["environment"])' <<<"$output")" "shop [{'name': 'TZ', 'value': 'UTC'}]"
}

@test "schema task-definition prints the task definition schema" {
  run --separate-stderr dockerup schema task-definition
  [ "$status" -eq 0 ]
  expect_contains "$output" '"$id": "https://dockerup.dev/schema/task-definition.schema.json"'
}

@test "status takes no argument" {
  run --separate-stderr dockerup status web
  [ "$status" -eq 2 ]
  expect_equal "${stderr_lines[0]}" "unexpected argument 'web'"
  expect_contains "$stderr" "dockerup status [options]"
}

@test "--format json is for status and --dry-run only, in one line" {
  run --separate-stderr dockerup --config "$CONFIG" --format json
  [ "$status" -eq 2 ]
  [ -z "$output" ]
  [ "${#stderr_lines[@]}" -eq 1 ]
  [[ "${stderr_lines[0]}" == *" dockerup ERROR --format json is for \`dockerup status\` and --dry-run" ]]
}

@test "a bad notify URL exits 2 and is not repeated" {
  printf 'notify=https://hooks.example/T0/ok hooks.example/T0/secret\n' >>"$CONFIG"
  run --separate-stderr dockerup validate --config "$CONFIG"
  [ "$status" -eq 2 ]
  [[ "${stderr_lines[0]}" == *": notify: expected http:// or https:// URLs separated by commas or spaces; URL 2 is not one" ]]
  [[ "$stderr" != *secret* ]]
}

@test "output cut short by its reader (| head) is no error" {
  for i in $(seq 1 1500); do printf '{"image": "app:1", "restart": "sometimes"}\n' >"$CONFDIR/bad-$i.json"; done
  run --separate-stderr bash -c "python3 '$DOCKERUP_PY' validate --config '$CONFIG' | head -1; exit \${PIPESTATUS[0]}"
  [ "$status" -eq 0 ]
  expect_contains "$output" "restart: \"sometimes\" is not one of"
  [[ "$stderr" != *"internal error"* ]]
  [[ "$stderr" != *"Traceback"* ]]
}
