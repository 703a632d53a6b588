"""Bad input, end to end: a real run against the real engine with one bad file
beside a good spec. Every case must end with the documented exit code, exactly
one ERROR line that names the file and the field, no traceback, and the good spec
converged all the same. (The exact wording of each message is
tests/test_validation.py's business; this suite is about the run surviving.)"""

import json
import os
import subprocess

import pytest

from conftest import IMAGE, Host, docker, remove_test_containers, write_files
from faults_support import (WITHOUT_FILE_ACCESS, assert_clean_output, assert_one_problem, changing_commands,
                            error_lines)

import dockerup

GOOD = "badinput-ok"  # the valid spec every case runs beside the bad one
BAD = "web.json"
SCHEMA = json.loads(dockerup.SCHEMA_TEXTS["container"])


@pytest.fixture(scope="module")
def good_container(engine):
    """The good spec's container lives through the module; each case stops it
    first, so only the run under test can have started it again."""
    remove_test_containers()
    yield GOOD
    remove_test_containers()


@pytest.fixture
def site(good_container, tmp_path):
    docker("stop", GOOD, check=False)
    host = Host(tmp_path)
    host.spec("good.json", name=GOOD)
    return host


def assert_good_converged(result):
    state = json.loads(docker("inspect", "--type", "container", GOOD))[0]["State"]
    assert state["Running"], result.stderr
    assert any(c.endswith(f"start {GOOD}  # container is exited ({GOOD})") or f" --name {GOOD} " in c
               for c in changing_commands(result.stderr)), result.stderr


def assert_not_created(*names):
    existing = docker("ps", "-a", "--format", "{{.Names}}").split()
    assert not set(names) & set(existing)


def run_case(host, files, *parts):
    write_files(host.confdir, files)
    result = host.run()
    line = assert_one_problem(result, *parts)
    assert_good_converged(result)
    return line


def spec(**fields):
    return {"image": IMAGE, "name": "web", **fields}


# ---- Documents that are not one JSON object ----------------------------------------

DOCUMENTS = [
    pytest.param(b"", "empty file", id="empty file"),
    pytest.param(b"\n\t  \n", "empty file", id="blank file"),
    pytest.param(b'{"image": "dockerup-test/app:1", "name": "w\xe9b"}', "not valid UTF-8", id="latin-1 text"),
    pytest.param(b"\xff\xfe{\x00}\x00", "not valid UTF-8", id="UTF-16"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00", "not valid UTF-8", id="binary"),
    pytest.param(json.dumps([spec()]).encode(), "got an array", id="array"),
    pytest.param(b'"dockerup-test/app:1"', "got a string", id="string"),
    pytest.param(b"null", "got null", id="null"),
    pytest.param(b"42", "got a number", id="number"),
    pytest.param(b"true", "got a boolean", id="boolean"),
    pytest.param(b'{"image": "dockerup-test/app:1"', "line 1, column 32: invalid JSON", id="truncated"),
    pytest.param(b"{'image': 'dockerup-test/app:1'}", "line 1, column 2: invalid JSON", id="single quotes"),
    pytest.param(b'{"image": "dockerup-test/app:1"} {}', "invalid JSON: Extra data", id="two documents"),
    # Python's json module reads these; nothing after it could use them.
    pytest.param(b'{"image": NaN}', "invalid JSON: NaN is not a JSON value", id="NaN"),
    pytest.param(b'{"image": "dockerup-test/app:1", "cpu": 1' + b"0" * 5000 + b"}",
                 "invalid JSON: a number of 5001 digits is too large", id="5001 digits"),
    pytest.param(b'{"image": "dockerup-test/app:1", "healthCheck": {"command": "true", "timeout": 1e999}}',
                 "invalid JSON: the number 1e999 is too large", id="1e999"),
    pytest.param(b'{"image": "dockerup-test/app:1", "env": {"A": "\\ud800"}}',
                 "invalid JSON: a \\u escape names half of a UTF-16 surrogate pair", id="lone surrogate"),
    pytest.param(b'{"image": "dockerup-test/app:1", "env": {"\\udfff": "1"}}',
                 "invalid JSON: a \\u escape names half of a UTF-16 surrogate pair", id="lone surrogate in a key"),
    pytest.param(b'{"image": "dockerup-test/app:1", "image": "dockerup-test/app:2"}', "duplicate key 'image'",
                 id="duplicate key"),
    pytest.param(b'{"image": "dockerup-test/app:1", "env": {"A": "1", "A": "2"}}', "duplicate key 'A'",
                 id="duplicate nested key"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "invalid JSON: nested too deeply", id="nested 100000 deep"),
    # The real size, not the bytes read before giving up.
    pytest.param(b" " * (10 * 1024 * 1024), "10485760 bytes is too large; the limit is 1048576 bytes", id="10 MB"),
]


@pytest.mark.parametrize("content, message", DOCUMENTS)
def test_a_document_that_is_not_one_spec(site, content, message):
    run_case(site, {BAD: content}, f"{site.confdir}/{BAD}: ", message)


DEPTHS = range(900, 1001)


def test_deep_nesting_at_every_depth_near_the_parser_limit(site):
    """Python parses a document nested ~990 deep, but hashing or describing it
    one stack frame further down fails: no depth may turn into a crash."""
    files = {f"deep-{field}-{depth}.json": '{"image": "dockerup-test/app:1", "%s": %s}'
             % (field, "[" * depth + "]" * depth) for depth in DEPTHS for field in ("env", "volumes")}
    run_with_one_line_per_file(site, files)


# ---- A wrong type for every field -----------------------------------------------------

# A value of the wrong JSON type for each schema field.
WRONG_TYPE = {
    "type": 5, "name": 5, "image": 5, "cpu": "512", "memory": True, "memoryReservation": 5.5,
    "entrypoint": 5, "command": {"sh": "-c"}, "privileged": "yes", "network": 5, "volumes": {},
    "portMappings": {"containerPort": 80}, "env": ["A=1"], "restart": True, "update": "eager",
    "signal": "HUP", "links": "db", "dockerLabels": ["team=web"], "hostname": 5, "user": 1000,
    "workingDirectory": 5, "extraHosts": "db:10.0.0.5", "dnsServers": "10.0.0.2",
    "dnsSearchDomains": "example.com", "logConfiguration": "json-file", "healthCheck": "true",
    "stopTimeout": "30", "ulimits": {"nofile": 1024}, "readonlyRootFilesystem": 1,
    # ECS's spellings and fields
    "environment": {"A": "1"}, "entryPoint": "sh -c", "mountPoints": {}, "volumesFrom": "db",
    "restartPolicy": "always", "disableNetworking": "yes", "essential": "true", "dependsOn": {"db": "HEALTHY"},
    "startTimeout": "30", "linuxParameters": [], "systemControls": {}, "dockerSecurityOptions": "no-new-privileges",
    "pseudoTerminal": 1, "interactive": "yes", "pidMode": 5, "ipcMode": 5, "versionConsistency": True,
    "secrets": "arn:aws:secretsmanager:eu-west-1:1:secret:x", "environmentFiles": "s3://bucket/x.env",
    "repositoryCredentials": "arn", "firelensConfiguration": "fluentbit", "resourceRequirements": "GPU",
    "credentialSpecs": "gmsa",
}

NESTED_WRONG_TYPE = [
    ({"portMappings": [{"containerPort": [80]}]}, "portMappings[0].containerPort"),
    ({"portMappings": [{"containerPort": 80, "hostPort": 80.5}]}, "portMappings[0].hostPort"),
    ({"portMappings": [{"containerPort": 80, "hostIp": 127}]}, "portMappings[0].hostIp"),
    ({"portMappings": ["80:80"]}, "portMappings[0]"),
    ({"volumes": [{"containerPath": 5}]}, "volumes[0].containerPath"),
    ({"volumes": [{"containerPath": "/d", "hostPath": ["/srv"]}]}, "volumes[0].hostPath"),
    ({"volumes": ["/srv:/d"]}, "volumes[0]"),
    ({"env": {"A": None}}, "env.A"),
    ({"env": {"A": {"nested": "1"}}}, "env.A"),
    ({"dockerLabels": {"team": 5}}, "dockerLabels.team"),
    ({"healthCheck": {"command": "true", "interval": "10s"}}, "healthCheck.interval"),
    ({"healthCheck": {"command": "true", "retries": 2.5}}, "healthCheck.retries"),
    ({"healthCheck": {"command": 5}}, "healthCheck.command"),
    ({"ulimits": [{"name": "nofile", "softLimit": "1024", "hardLimit": 2048}]}, "ulimits[0].softLimit"),
    ({"logConfiguration": {"logDriver": "json-file", "options": {"max-size": 10}}},
     'logConfiguration.options["max-size"]'),
    ({"update": {"eager": "yes"}}, "update.eager"),
    ({"signal": [{"container": "proxy", "signal": 1}]}, "signal[0].signal"),
    ({"extraHosts": [{"hostname": "db", "ipAddress": 10}]}, "extraHosts[0].ipAddress"),
    ({"command": ["echo", None]}, "command[1]"),
    ({"links": [5]}, "links[0]"),
]


def test_every_schema_field_has_a_wrong_type_case():
    assert sorted(WRONG_TYPE) == sorted(SCHEMA["properties"])


@pytest.mark.parametrize("field", sorted(WRONG_TYPE))
def test_a_wrong_type_for_each_field(site, field):
    run_case(site, {BAD: spec(**{field: WRONG_TYPE[field]})}, f"{site.confdir}/{BAD}: {field}: ")


@pytest.mark.parametrize("fields, path", NESTED_WRONG_TYPE, ids=[p for _, p in NESTED_WRONG_TYPE])
def test_a_wrong_type_inside_a_field(site, fields, path):
    run_case(site, {BAD: spec(**fields)}, f"{site.confdir}/{BAD}: {path}: ")


# ---- Values out of range or of the wrong form ---------------------------------------------

def ports(**mapping):
    return {"portMappings": [{"containerPort": 80, **mapping}]}


OUT_OF_RANGE = [
    # ports
    (ports(containerPort=0), "portMappings[0].containerPort"),
    (ports(containerPort=65536), "portMappings[0].containerPort"),
    (ports(containerPort=-80), "portMappings[0].containerPort"),
    (ports(containerPort="0"), "portMappings[0].containerPort"),
    (ports(containerPort="65536"), "portMappings[0].containerPort"),
    (ports(containerPort="-80"), "portMappings[0].containerPort"),
    (ports(containerPort="99999999999999999999999"), "portMappings[0].containerPort"),
    (ports(containerPort=1e10), "portMappings[0].containerPort"),
    (ports(hostPort=0), "portMappings[0].hostPort"),
    (ports(hostPort=70000), "portMappings[0].hostPort"),
    (ports(hostPort=" 80"), "portMappings[0].hostPort"),
    (ports(hostIp="localhost"), "portMappings[0].hostIp"),
    (ports(hostIp="127.0.0.1:80"), "portMappings[0].hostIp"),
    # cpu
    ({"cpu": -1}, "cpu"), ({"cpu": 1}, "cpu"), ({"cpu": 262145}, "cpu"), ({"cpu": 0.5}, "cpu"),
    # memory
    ({"memory": "512x"}, "memory"), ({"memory": "m"}, "memory"), ({"memory": "-1g"}, "memory"),
    ({"memory": "1.5.5g"}, "memory"), ({"memory": ""}, "memory"), ({"memory": "512 mbytes"}, "memory"),
    ({"memory": "4m"}, "memory"), ({"memory": "0"}, "memory"), ({"memory": "1eb"}, "memory"),
    ({"memoryReservation": "lots"}, "memoryReservation"),
    # other numbers
    ({"stopTimeout": -1}, "stopTimeout"), ({"stopTimeout": 3601}, "stopTimeout"),
    ({"healthCheck": {"command": "true", "interval": 0}}, "healthCheck.interval"),
    ({"healthCheck": {"command": "true", "retries": 0}}, "healthCheck.retries"),
    ({"ulimits": [{"name": "nofile", "softLimit": -2, "hardLimit": 10}]}, "ulimits[0].softLimit"),
    ({"ulimits": [{"name": "nofiles", "softLimit": 1, "hardLimit": 10}]}, "ulimits[0].name"),
    # enums
    ({"restart": "sometimes"}, "restart"), ({"type": "rkt"}, "type"),
    ({"portMappings": [{"containerPort": 80, "protocol": "sctp"}]}, "portMappings[0].protocol"),
    ({"volumes": [{"containerPath": "/d", "hostPath": "/srv", "mode": "rwx"}]}, "volumes[0].mode"),
]


@pytest.mark.parametrize("fields, path", OUT_OF_RANGE, ids=[f"{p}={json.dumps(f)[:60]}" for f, p in OUT_OF_RANGE])
def test_a_value_out_of_range(site, fields, path):
    run_case(site, {BAD: spec(**fields)}, f"{site.confdir}/{BAD}: {path}: ")


# ---- Names, paths, networks and references -----------------------------------------------

NAMES_AND_REFERENCES = [
    ({"name": "my web"}, "name"), ({"name": "app/web"}, "name"), ({"name": "../web"}, "name"),
    ({"name": ".."}, "name"), ({"name": "web\n"}, "name"), ({"name": "-web"}, "name"), ({"name": ""}, "name"),
    ({"name": "w" * 201}, "name"), ({"name": "wéb"}, "name"), ({"name": "web;rm -rf /"}, "name"),
    ({"volumes": [{"containerPath": "data"}]}, "volumes[0].containerPath"),
    ({"volumes": [{"containerPath": "/d", "hostPath": "../etc"}]}, "volumes[0].hostPath"),
    ({"volumes": [{"containerPath": "/d", "hostPath": "/srv:/etc"}]}, "volumes[0].hostPath"),
    ({"workingDirectory": "srv"}, "workingDirectory"),
    ({"network": "overlay"}, "network"), ({"network": "Bridge"}, "network"), ({"network": "host "}, "network"),
    ({"network": "container:"}, "network"), ({"network": "container:my web"}, "network"),
    ({"network": "container:web"}, "network"),  # itself
    ({"links": ["web"]}, "links[0]"), ({"volumes": [{"from": "web"}]}, "volumes[0].from"),
    ({"links": ["nowhere"]}, "links[0]"), ({"volumes": [{"from": "nowhere"}]}, "volumes[0].from"),
    ({"network": "container:nowhere"}, "network"),
    ({"network": "host", "portMappings": [{"containerPort": 80}]}, "portMappings"),
    ({"name": GOOD}, "name"),  # the good spec's name: both files are named, see below
    # The schema's patterns end in `$`, which in Python also matches before a final
    # newline: each of these passes validation, then docker refuses it.
    ({"network": "host\n"}, "network"), ({"image": IMAGE + "\n"}, "image"), ({"memory": "64m\n"}, "memory"),
    ({"links": ["db\n"]}, "links[0]"),
]


@pytest.mark.parametrize("fields, path", NAMES_AND_REFERENCES,
                         ids=[f"{p}={json.dumps(f)[:60]}" for f, p in NAMES_AND_REFERENCES])
def test_a_bad_name_path_network_or_reference(site, fields, path):
    write_files(site.confdir, {BAD: spec(**fields)})
    result = site.run()
    if fields.get("name") == GOOD:
        # A duplicate name is two lines, one per file, and neither spec applies:
        # the good container is left as it is (stopped), never removed.
        assert_clean_output(result)
        assert result.returncode == 1
        errors = error_lines(result.stderr)
        assert len(errors) == 2 and all(": name: " in line for line in errors), errors
        for name in (BAD, "good.json"):
            assert any(f" ERROR {site.confdir}/{name}: name: " in line for line in errors), errors
        assert docker("ps", "-a", "--filter", f"name=^{GOOD}$", "--format", "{{.Names}}").split() == [GOOD]
        return
    assert_one_problem(result, f"{site.confdir}/{BAD}: {path}: ")
    assert_good_converged(result)
    assert_not_created("web")


CYCLES = [
    pytest.param({"a.json": {"image": IMAGE, "name": "cyc-a", "links": ["cyc-b"]},
                  "b.json": {"image": IMAGE, "name": "cyc-b", "volumes": [{"from": "cyc-a"}]}},
                 ["a.json", "b.json"], id="two specs"),
    pytest.param({"a.json": {"image": IMAGE, "name": "cyc-a", "links": ["cyc-b"]},
                  "b.json": {"image": IMAGE, "name": "cyc-b", "links": ["cyc-c"]},
                  "c.json": {"image": IMAGE, "name": "cyc-c", "network": "container:cyc-a"}},
                 ["a.json", "b.json", "c.json"], id="three specs"),
]


@pytest.mark.parametrize("files, involved", CYCLES)
def test_a_dependency_cycle_names_every_file_once(site, files, involved):
    write_files(site.confdir, files)
    result = site.run()
    assert_clean_output(result)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == len(involved), errors
    for name in involved:
        assert sum(f"{site.confdir}/{name}: dependency cycle: " in line for line in errors) == 1, errors
    assert_good_converged(result)
    assert_not_created("cyc-a", "cyc-b", "cyc-c")


# ---- Specs the schema accepts and the engine refuses -------------------------------------
# `dockerup validate` passing must mean the run can converge: each of these passes
# validation today, then fails at `docker run` on every run, with docker's words
# and no field. (Health durations and memoryReservation are test_translate's.)

ENGINE_REFUSES = [
    pytest.param({"hostname": "h" * 65}, "hostname", id="hostname over 64 characters (sethostname)"),
    pytest.param({"dnsSearchDomains": ["a..b"]}, "dnsSearchDomains[0]", id="search domain with an empty label"),
    pytest.param({"dnsSearchDomains": ["-"]}, "dnsSearchDomains[0]", id="search domain without a letter"),
    pytest.param({"volumes": [{"containerPath": "/"}]}, "volumes[0].containerPath", id="volume on /"),
    pytest.param({"memory": "99999999999999999999g"}, "memory", id="memory beyond 64 bits"),
    pytest.param({"memory": "1" + "0" * 400 + "m"}, "memory", id="memory beyond floating point"),
    pytest.param({"memoryReservation": "1" + "0" * 400 + "m"}, "memoryReservation",
                 id="memoryReservation beyond floating point"),
    pytest.param({"portMappings": [{"containerPort": "0" * 5000 + "80"}]}, "portMappings[0].containerPort",
                 id="port of 5002 digits"),
    # docker drops an empty --health-cmd, so the image's own check (or none) applies,
    # and an eager update then waits for a "healthy" that never comes.
    pytest.param({"healthCheck": {"command": ["CMD"]}}, "healthCheck.command", id="health check without a command"),
    # One argv item cannot exceed 128 KiB (MAX_ARG_STRLEN): exec fails with E2BIG.
    pytest.param({"env": {"BIG": "x" * 200_000}}, "env.BIG", id="env value over 128 KiB"),
]


@pytest.mark.parametrize("fields, path", ENGINE_REFUSES)
def test_a_spec_the_engine_would_refuse_is_a_validation_error(site, fields, path):
    run_case(site, {BAD: spec(**fields)}, f"{site.confdir}/{BAD}: {path}: ")
    assert_not_created("web")


# ---- Files that cannot be read, and what is not a spec -------------------------------------

def without_file_access(host):
    """Root reads any file; without CAP_DAC_OVERRIDE it is refused like anyone."""
    return subprocess.run(WITHOUT_FILE_ACCESS + host.command(), capture_output=True, text=True, timeout=120)


def test_an_unreadable_file(site):
    path = site.spec(BAD, name="web")
    path.chmod(0)
    result = without_file_access(site)
    assert_one_problem(result, f"{path}: cannot read: Permission denied")
    assert_good_converged(result)


UNREADABLE_LINKS = [
    pytest.param(lambda d: (d / BAD).symlink_to(d / "nowhere"), "No such file or directory", id="dangling symlink"),
    pytest.param(lambda d: (d / BAD).symlink_to(d / BAD), "Too many levels of symbolic links", id="symlink loop"),
]


@pytest.mark.parametrize("make, reason", UNREADABLE_LINKS)
def test_a_file_that_cannot_be_opened(site, make, reason):
    make(site.confdir)
    result = site.run()
    assert_one_problem(result, f"{site.confdir}/{BAD}: cannot read: {reason}")
    assert_good_converged(result)


def test_file_names_that_would_break_the_line(site):
    """A newline in a file name must not split the message into two lines."""
    write_files(site.confdir, {"we\nb.json": spec(image=5)})
    result = site.run()
    assert_one_problem(result, "we", "b.json: image: ")
    assert_good_converged(result)


def test_a_missing_confdir_removes_nothing(site):
    site.converge()
    before = docker("inspect", "--format", "{{.Id}}", GOOD).strip()
    missing = site.root / "no-such-dir"
    site.configure(confdir=missing)
    result = site.run()
    assert_one_problem(result, f"{missing}: cannot read the container directory: No such file or directory")
    assert docker("inspect", "--format", "{{.Id}} {{.State.Running}}", GOOD).split() == [before, "true"]


def test_a_confdir_that_is_a_file_removes_nothing(site):
    site.converge()
    before = docker("inspect", "--format", "{{.Id}}", GOOD).strip()
    not_a_dir = site.root / "containers.conf"
    not_a_dir.write_text("{}")
    site.configure(confdir=not_a_dir)
    result = site.run()
    assert_one_problem(result, f"{not_a_dir}: cannot read the container directory: Not a directory")
    assert docker("inspect", "--format", "{{.Id}} {{.State.Running}}", GOOD).split() == [before, "true"]


def test_other_files_and_subdirectories_are_ignored(site):
    write_files(site.confdir, {"README": "not JSON", "web.json.orig": "{", "web.json~": "{", ".web.json.swp": "{",
                 ".hidden.json": "{", "web.yaml": "image: x", "web.JSON.bak": "{"})
    for directory in ("sub", "archive.json"):
        (site.confdir / directory).mkdir()
        (site.confdir / directory / "web.json").write_text("{")
    os.mkfifo(site.confdir / "fifo.json")
    (site.confdir / "devnull.json").symlink_to("/dev/null")
    result = site.run()
    assert_clean_output(result)
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == []
    assert_good_converged(result)


def test_every_bad_file_at_once_is_one_line_each(site):
    """The whole corpus in one directory: one line per file, good spec converged."""
    files = {f"type-{field}.json": spec(name=f"t-{field[:20]}", **{field: value})
             for field, value in WRONG_TYPE.items() if field != "name"}
    files.update({f"doc-{index}.json": param.values[0] for index, param in enumerate(DOCUMENTS)})
    files.update({f"range-{index}.json": spec(name=f"r{index}x", **fields)
                  for index, (fields, _) in enumerate(OUT_OF_RANGE)})
    errors = run_with_one_line_per_file(site, files)
    assert len(errors) == len(files)


def run_with_one_line_per_file(site, files):
    """Write the bad files beside the good spec and run: exit 1, exactly one
    error line for each file, and the good spec converged. Returns the lines."""
    write_files(site.confdir, files)
    result = site.run()
    assert_clean_output(result)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    for name in files:
        assert sum(f"{site.confdir}/{name}: " in line for line in errors) == 1, (name, errors)
    assert_good_converged(result)
    return errors

