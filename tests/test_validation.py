"""Every class of bad input gets one line a person can act on: the file, the
field, and what is wrong with it. No engine is needed: validation never
touches docker."""

import json
import os
import subprocess
import sys

import pytest

from conftest import DOCKERUP, write_files

import dockerup

IMAGE = "app:1"  # never pulled or run: validation only reads the reference


def spec(**fields):
    return {"image": IMAGE, **fields}


def web(**fields):
    """A confdir holding one spec, web.json."""
    return {"web.json": spec(**fields)}


def declared(tmp_path, files, user_data=None):
    confdir = tmp_path / "containers.d"
    confdir.mkdir()
    write_files(confdir, files)
    return dockerup.load_declared(dockerup.default_config(confdir=str(confdir)), user_data), confdir


def problems(tmp_path, files, user_data=None):
    """The problem lines for a confdir, the directory shown as <dir>."""
    result, confdir = declared(tmp_path, files, user_data)
    lines = [str(problem).replace(str(confdir), "<dir>") for problem in result.problems]
    for line in lines:
        assert "\n" not in line and "Traceback" not in line, line
    return lines


def run(*args):
    return subprocess.run([sys.executable, str(DOCKERUP), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


# ---- The document itself -------------------------------------------------------

DOCUMENT_CASES = [
    pytest.param({"web.json": '{\n  "image": "app:1",\n  "name": web\n}'},
                 "<dir>/web.json: line 3, column 11: invalid JSON: Expecting value", id="malformed JSON"),
    # Python 3.13's json names a trailing comma, at the comma; older ones the missing name after it.
    pytest.param({"web.json": '{"image": "app:1",}'},
                 "<dir>/web.json: line 1, column 18: invalid JSON: Illegal trailing comma before end of object"
                 if sys.version_info >= (3, 13) else
                 "<dir>/web.json: line 1, column 19: invalid JSON: Expecting property name enclosed in double quotes",
                 id="trailing comma"),
    pytest.param({"web.json": ""}, "<dir>/web.json: empty file; expected a JSON object", id="empty file"),
    pytest.param({"web.json": " \n\t\n"}, "<dir>/web.json: empty file; expected a JSON object", id="blank file"),
    pytest.param({"web.json": b'{"image": "app:1", "name": "w\xffb"}'},
                 "<dir>/web.json: not valid UTF-8 (byte 0xff at offset 29)", id="invalid UTF-8"),
    # The offset must count from the start of the file, byte order mark included,
    # or it points a hex editor at the wrong byte.
    pytest.param({"web.json": b'\xef\xbb\xbf{"image": "\xff"}'},
                 "<dir>/web.json: not valid UTF-8 (byte 0xff at offset 14)", id="invalid UTF-8 after a BOM"),
    pytest.param({"web.json": [spec()]},
                 "<dir>/web.json: expected a JSON object describing one container, got an array", id="array"),
    pytest.param({"web.json": '"app:1"'},
                 "<dir>/web.json: expected a JSON object describing one container, got a string", id="string"),
    pytest.param({"web.json": None},
                 "<dir>/web.json: expected a JSON object describing one container, got null", id="null"),
    pytest.param({"web.json": '{"image": "app:1", "image": "app:2"}'},
                 "<dir>/web.json: duplicate key 'image': JSON would silently keep only the last value",
                 id="duplicate key"),
    pytest.param({"web.json": b" " * (1024 * 1024 + 1)},
                 "<dir>/web.json: 1048577 bytes is too large; the limit is 1048576 bytes", id="too large"),
    pytest.param({"web.json": "[" * 100_000}, "<dir>/web.json: invalid JSON: nested too deeply", id="nested too deeply"),
    # Numbers Python's json module reads but nothing after it could use.
    pytest.param({"web.json": '{"image": "app:1", "cpu": 1%s}' % ("0" * 5000)},
                 "<dir>/web.json: invalid JSON: a number of 5001 digits is too large", id="too many digits"),
    pytest.param({"web.json": '{"image": "app:1", "healthCheck": {"command": "true", "interval": 1e400}}'},
                 "<dir>/web.json: invalid JSON: the number 1e400 is too large", id="number too large"),
    pytest.param({"web.json": '{"image": "app:1", "healthCheck": {"command": "true", "interval": NaN}}'},
                 "<dir>/web.json: invalid JSON: NaN is not a JSON value", id="NaN"),
    pytest.param({"web.json": '{"image": "app:1", "env": {"A": -Infinity}}'},
                 "<dir>/web.json: invalid JSON: -Infinity is not a JSON value", id="Infinity"),
]


@pytest.mark.parametrize("files, expected", DOCUMENT_CASES)
def test_a_document_that_is_not_a_json_object_is_one_problem(tmp_path, files, expected):
    assert problems(tmp_path, files) == [expected]


# ---- One spec against the schema and the checks the schema cannot express ------

NAME_RULE = ("must start with a letter or digit, have at least 2 characters, and contain only letters, digits, "
             "'_', '.' and '-' (docker's rule)")
NAME_HINT = "must be a container name (letters, digits, '_', '.', '-')"
HOST_NAME_HINT = "must be a host name: letters, digits, '.' and '-', starting and ending with a letter or digit"

SPEC_CASES = [
    # fields
    (web(portMapping=[]), "portMapping: unknown field (did you mean 'portMappings'?)"),
    ({"web.json": {"name": "web"}}, "missing required field 'image'"),
    (web(type="rkt"), 'type: "rkt" is not supported; the only value is "docker"'),
    # types
    (web(name=5), "name: expected a string, got a number 5"),
    ({"web.json": {"image": ["app:1"]}}, 'image: expected a string, got an array ["app:1"]'),
    (web(privileged="yes"), 'privileged: expected true or false, got a string "yes"'),
    # env holds secrets whatever its type: no value is quoted.
    (web(env=["A=s3cret"]), "env: expected an object, got an array"),
    (web(env="TOKEN=s3cret"), "env: expected an object, got a string"),
    (web(env=[{"name": "TOKEN", "value": "s3cret"}]), "env: expected an object, got an array"),  # ECS's form
    (web(env={"A": ["s3cret"]}), "env.A: expected a string or a number or true or false, got an array"),
    (web(logConfiguration={"logDriver": "splunk", "options": {"splunk-token": 12345}}),
     'logConfiguration.options["splunk-token"]: expected a string, got a number'),
    (web(env={"A": None}), "env.A: expected a string or a number or true or false, got null"),
    (web(volumes={}), "volumes: expected an array, got an object {}"),
    (web(command=5), "command: expected a string or an array, got a number 5"),
    (web(command=["echo", 1]), "command[1]: expected a string, got a number 1"),
    (web(links="db"), 'links: expected an array or an object, got a string "db"'),
    # A number is MiB, as ECS writes it; a fraction is neither form.
    (web(memory=512.5), "memory: expected a string or an integer, got a number 512.5"),
    (web(portMappings=[{"containerPort": 80.5}]),
     "portMappings[0].containerPort: expected an integer or a string, got a number 80.5"),
    # 6.0 is an integer to JSON Schema, but neither "6.0m" nor --cpu-shares 1024.0 is to docker.
    (web(memory=6.0), "memory: expected a string or an integer, got a number 6.0"),
    (web(cpu=1024.0), "cpu: expected an integer, got a number 1024.0"),
    (web(portMappings=[{"containerPort": 80.0}]),
     "portMappings[0].containerPort: expected an integer or a string, got a number 80.0"),
    # enums
    (web(restart="sometimes"), 'restart: "sometimes" is not one of "always", "unless-stopped", "on-failure", "never"'),
    (web(portMappings=[{"containerPort": 80, "protocol": "sctp"}]),
     'portMappings[0].protocol: "sctp" is not one of "tcp", "udp"'),
    (web(network="overlay"), 'network: "overlay" must be "bridge", "none", "host" or "container:NAME"'),
    # ports, as numbers and as strings of digits
    (web(portMappings=[{"containerPort": 70000}]),
     "portMappings[0].containerPort: 70000 is greater than the maximum of 65535"),
    (web(portMappings=[{"containerPort": 0}]), "portMappings[0].containerPort: 0 is less than the minimum of 1"),
    (web(portMappings=[{"containerPort": 80, "hostPort": 65536}]),
     "portMappings[0].hostPort: 65536 is greater than the maximum of 65535"),
    (web(portMappings=[{"containerPort": "70000"}]),
     "portMappings[0].containerPort: 70000 is not a port number from 1 to 65535"),
    (web(portMappings=[{"containerPort": "http"}]),
     'portMappings[0].containerPort: "http" must be a port number from 1 to 65535'),
    (web(portMappings=[{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": "8080"}]),
     "portMappings[1].hostPort: host port 8080/tcp is mapped twice"),
    (web(portMappings=[{"containerPort": 80, "hostPort": 8080, "hostIp": "127.0.0.1"},
                       {"containerPort": 81, "hostPort": 8080, "hostIp": "127.0.0.1"}]),
     "portMappings[1].hostPort: host port 8080/tcp on 127.0.0.1 is mapped twice"),
    # Every address includes each one.
    (web(portMappings=[{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 8080, "hostIp": "::1"}]),
     "portMappings[1].hostPort: host port 8080/tcp on ::1 is mapped twice"),
    (web(portMappings=[{"containerPort": "0" * 5000 + "80"}]),
     f'portMappings[0].containerPort: "{"0" * 56}... must be a port number from 1 to 65535'),
    (web(network="host", portMappings=[{"containerPort": 80}]),
     "portMappings: cannot be used with network 'host' (docker refuses or ignores it)"),
    # memory
    (web(memory="512x"), 'memory: "512x" must be a size with a unit such as "512m" or "2g"'),
    (web(memory="4m"), "memory: '4m' is below docker's minimum of 6m"),
    (web(memoryReservation="1k"), "memoryReservation: '1k' is below docker's minimum of 6m"),
    # Too large for docker's 64 bits, or for floating point: reported, not a crash.
    (web(memory="8192p"), "memory: '8192p' is more than docker can represent"),
    (web(memory="1" + "0" * 400 + "m"), f"memory: '1{'0' * 400}m' is more than docker can represent"),
    (web(memoryReservation="1" + "0" * 400 + "m"),
     f"memoryReservation: '1{'0' * 400}m' is more than docker can represent"),
    (web(memory="64m", memoryReservation="9" * 30 + "g"),
     f"memoryReservation: '{'9' * 30}g' is more than docker can represent"),
    # container names
    (web(name="my web"), f'name: "my web" {NAME_RULE}'),
    (web(name="app/web"), f'name: "app/web" {NAME_RULE}'),
    (web(name="w"), f'name: "w" {NAME_RULE}'),
    (web(name=".web"), f'name: ".web" {NAME_RULE}'),
    (web(signal=[{"container": "my proxy", "signal": "HUP"}]), f'signal[0].container: "my proxy" {NAME_HINT}'),
    # network
    (web(name="web", network="container:web"), "network: a container cannot share its own network"),
    (web(network="container:vpn", hostname="web"),
     "hostname: cannot be used with network 'container:vpn' (docker refuses or ignores it)"),
    # volumes
    ({**web(volumes=[{"from": "data", "containerPath": "/data"}]), "data.json": spec(name="data")},
     "volumes[0]: 'from' cannot be combined with containerPath or hostPath"),
    (web(volumes=[{"containerPath": "/data", "mode": "ro"}]),
     "volumes[0].mode: applies only with hostPath or from; an anonymous volume is always rw"),
    (web(volumes=[{"hostPath": "/srv/data"}]), "volumes[0]: 'hostPath' needs 'containerPath' too"),
    (web(volumes=[{"mode": "ro"}]), "volumes[0]: needs containerPath (a volume) or from (another container's volumes)"),
    (web(volumes=[{}]), "volumes[0]: needs containerPath (a volume) or from (another container's volumes)"),
    (web(volumes=[{"containerPath": "data"}]), """volumes[0].containerPath: "data" must be an absolute path without ':' or ','"""),
    (web(name="web", volumes=[{"from": "web"}]), "volumes[0].from: a container cannot take volumes from itself"),
    (web(name="web", links=["web"]), "links[0]: a container cannot link to itself"),
    # keys of objects
    (web(dockerLabels={"dockerup.x": "1"}),
     'dockerLabels: key "dockerup.x" is reserved: keys starting with "dockerup." are dockerup\'s own'),
    (web(dockerLabels={"": "1"}), "dockerLabels: an empty key is not allowed"),
    (web(env={"A=B": "1"}), "env: key \"A=B\" must not contain '='"),
    (web(env={"": "1"}), "env: an empty key is not allowed"),
    (web(logConfiguration={"logDriver": "json-file", "options": {"max=size": "1m"}}),
     "logConfiguration.options: key \"max=size\" must not contain '='"),
    (web(links={"my db": "db"}), f'links: key "my db" {NAME_HINT}'),
    # A link named "image" must not get the image field's hint.
    (web(links={"image": "my alias"}),
     """links.image: "my alias" must be an alias: a letter or digit, then letters, digits, '_', '.' or '-'"""),
    # NUL characters and commands
    (web(env={"A": "x\0y"}), "env.A: contains a NUL character, which no command line can carry"),
    (web(command="echo \0"), "command: contains a NUL character, which no command line can carry"),
    (web(command="sh -c 'echo hi"), """command: cannot split "sh -c 'echo hi" into arguments: No closing quotation"""),
    (web(command=""), "command: must not be empty"),
    (web(command=[]), "command: must not be empty"),
    (web(command="   "), "command: is blank"),
    (web(healthCheck={"command": []}), "healthCheck.command: must not be empty"),
    # other fields with a format: each names the format, not a regular expression
    (web(image="App:1"), 'image: "App:1" is not a valid image reference such as "registry.example.com/app:1.4"'),
    (web(image="app:-1"), 'image: "app:-1" is not a valid image reference such as "registry.example.com/app:1.4"'),
    (web(image="app:" + "v" * 129), f'image: "app:{"v" * 52}... is not a valid image reference such as '
                                    '"registry.example.com/app:1.4"'),
    (web(image="app@sha256:abc"),
     'image: "app@sha256:abc" is not a valid image reference such as "registry.example.com/app:1.4"'),
    (web(user="a:b:c"), 'user: "a:b:c" must be "user", "uid" or "uid:gid"'),
    (web(hostname="-web"), f'hostname: "-web" {HOST_NAME_HINT}'),
    (web(extraHosts=[{"hostname": "db host", "ipAddress": "10.0.0.2"}]),
     f'extraHosts[0].hostname: "db host" {HOST_NAME_HINT}'),
    (web(extraHosts=[{"hostname": "db", "ipAddress": "10.0.0"}]),
     "extraHosts[0].ipAddress: '10.0.0' is not an IPv4 or IPv6 address, or host-gateway"),
    (web(dnsSearchDomains=["example com"]),
     """dnsSearchDomains[0]: "example com" must be a domain name: letters, digits, '.' and '-'"""),
    (web(logConfiguration={"logDriver": "-json"}),
     'logConfiguration.logDriver: "-json" must be a log driver name such as "json-file" or "syslog"'),
    (web(portMappings=[{"containerPort": 80, "hostIp": "localhost"}]),
     "portMappings[0].hostIp: 'localhost' is not an IPv4 or IPv6 address"),
    (web(ulimits=[{"name": "nofile", "softLimit": 2048, "hardLimit": 1024}]),
     "ulimits[0]: softLimit 2048 is above hardLimit 1024"),
    (web(update={"pul": False}), "update.pul: unknown field (did you mean 'pull'?)"),
]


@pytest.mark.parametrize("files, message", SPEC_CASES, ids=[message[:50] for _, message in SPEC_CASES])
def test_a_bad_spec_is_one_line_naming_file_and_field(tmp_path, files, message):
    assert problems(tmp_path, files) == [f"<dir>/web.json: {message}"]


def test_every_wrong_field_of_a_spec_is_reported_at_once(tmp_path):
    files = {"web.json": {"image": 5, "name": "my web", "restart": "sometimes", "portMapping": []}}
    assert problems(tmp_path, files) == [
        "<dir>/web.json: portMapping: unknown field (did you mean 'portMappings'?)",
        "<dir>/web.json: image: expected a string, got a number 5",
        f'<dir>/web.json: name: "my web" {NAME_RULE}',
        '<dir>/web.json: restart: "sometimes" is not one of "always", "unless-stopped", "on-failure", "never"',
    ]


# ---- Across specs --------------------------------------------------------------

CROSS_CASES = [
    pytest.param({"a.json": spec(name="web"), "b.json": spec(name="web")},
                 ["<dir>/b.json: name: 'web' is also declared in <dir>/a.json",
                  "<dir>/a.json: name: 'web' is also declared in <dir>/b.json"], id="duplicate name"),
    pytest.param(web(volumes=[{"containerPath": "/cache"}, {"from": "data"}]),
                 ["<dir>/web.json: volumes[1].from: 'data' names no declared container"], id="volumes from"),
    pytest.param({**web(links=["db", "cache:redis"]), "db.json": spec(name="db")},
                 ["<dir>/web.json: links[1]: 'cache' names no declared container"], id="links array"),
    pytest.param(web(links={"db": "database"}),
                 ["<dir>/web.json: links.db: 'db' names no declared container"], id="links object"),
    pytest.param(web(network="container:vpn"),
                 ["<dir>/web.json: network: 'vpn' names no declared container"], id="network container"),
    pytest.param({"a.json": spec(name="app", links=["db"]), "b.json": spec(name="db", volumes=[{"from": "app"}])},
                 ["<dir>/a.json: dependency cycle: app -> db -> app",
                  "<dir>/b.json: dependency cycle: app -> db -> app"], id="cycle"),
]


@pytest.mark.parametrize("files, expected", CROSS_CASES)
def test_a_bad_reference_between_specs_names_every_file_involved(tmp_path, files, expected):
    assert problems(tmp_path, files) == expected


# ---- User-data -------------------------------------------------------------------

def user_data(document):
    specs, found, documents = dockerup.parse_user_data(json.dumps(document).encode(), "user-data")
    return dockerup.UserData(specs, found, documents, not found)


USER_DATA_CASES = [
    pytest.param({"containers": [spec(name="web"), {"image": 5}]},
                 ["user-data: containers[1].image: expected a string, got a number 5"], id="wrong type"),
    pytest.param({"containers": [spec(name="web", links=["db"])]},
                 ["user-data: containers[0].links[0]: 'db' names no declared container"], id="undeclared"),
    pytest.param({"container": []},
                 ["user-data: container: unknown field (did you mean 'containers'?)",
                  "user-data: missing required field 'containers'"], id="unknown field"),
    pytest.param({"containers": [spec(name="api")]},
                 ["user-data: containers[0].name: 'api' is also declared in <dir>/api.json",
                  "<dir>/api.json: name: 'api' is also declared in user-data: containers[0]"], id="name also in confdir"),
]


@pytest.mark.parametrize("document, expected", USER_DATA_CASES)
def test_user_data_problems_give_the_path_inside_the_document(tmp_path, document, expected):
    assert problems(tmp_path, {"api.json": spec(name="api")}, user_data(document)) == expected


# ---- What is not a problem ----------------------------------------------------

def test_a_valid_directory_has_no_problems_and_ignores_what_is_not_a_spec(tmp_path):
    files = {
        "web.json": spec(name="web", links=["db:database"], memory="512m",
                         portMappings=[{"containerPort": "80", "hostPort": 8080}]),
        "db.json": spec(name="db", volumes=[{"containerPath": "/var/lib/db"}]),
        # Not *.json, hidden, or a directory: never read, so their content does not matter.
        "README": "not JSON",
        "web.json.orig": "not JSON",
        ".editing.json": "not JSON",
        "old.json/web.json": "not JSON",
        "archive/web.json": "not JSON",
    }
    result, _ = declared(tmp_path, files)
    assert result.problems == []
    assert sorted(s.name for s in result.specs) == ["db", "web"]


VALID_FIELDS = [
    pytest.param({"image": "app:V2"}, id="capitals in a tag"),
    pytest.param({"image": "registry.example.com:5000/team/app:Release_2.1-rc1"}, id="registry and a long tag"),
    pytest.param({"image": "app:" + "v" * 128}, id="tag of 128 characters"),
    pytest.param({"image": "library/nginx:1.25@sha256:" + "a" * 64}, id="tag and digest"),
    pytest.param({"extraHosts": [{"hostname": "host.docker.internal", "ipAddress": "host-gateway"}]},
                 id="host-gateway"),
    pytest.param({"portMappings": [{"containerPort": 80, "hostPort": 8080, "hostIp": "127.0.0.1"},
                                   {"containerPort": 81, "hostPort": 8080, "hostIp": "127.0.0.2"},
                                   {"containerPort": 82, "hostPort": 8080, "hostIp": "::1"},
                                   {"containerPort": 83, "hostPort": 8080, "protocol": "udp"}]},
                 id="one host port on several addresses"),
]


@pytest.mark.parametrize("fields", VALID_FIELDS)
def test_valid_fields_are_no_problem(tmp_path, fields):
    assert problems(tmp_path, {"web.json": spec(**fields)}) == []


def test_an_empty_directory_declares_nothing(tmp_path):
    result, _ = declared(tmp_path, {})
    assert (result.specs, result.problems) == ([], [])


# ---- Through the command line --------------------------------------------------

def test_validate_prints_each_problem_on_its_own_line_and_exits_1(tmp_path):
    confdir = tmp_path / "containers.d"
    write_files(confdir, {"web.json": spec(name="web", restart="sometimes"), "db.json": "{",
                    "ok.json": spec(name="ok")})
    config = tmp_path / "dockerup.conf"
    config.write_text(f"confdir={confdir}\n")
    result = run("validate", "--config", config)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"{confdir}/db.json: line 1, column 2: invalid JSON: Expecting property name enclosed in double quotes",
        f'{confdir}/web.json: restart: "sometimes" is not one of "always", "unless-stopped", "on-failure", "never"',
    ]
    assert "Traceback" not in result.stderr


def test_validate_of_a_good_directory_exits_0_and_prints_nothing(tmp_path):
    confdir = tmp_path / "containers.d"
    write_files(confdir, {"web.json": spec(name="web")})
    config = tmp_path / "dockerup.conf"
    config.write_text(f"confdir={confdir}\n")
    result = run("validate", "--config", config)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr


CONFIG_CASES = [
    pytest.param("confdri=/srv\n", [],
                 "<conf>:1: unknown key 'confdri' (did you mean 'confdir'?); known keys: confdir, cache, remote, "
                 "interval, aws, pull, exclusive, timeout, settle, probation, scope, metrics, notify",
                 id="unknown key"),
    pytest.param("; comment\npull=maybe\n", [], "<conf>:2: pull='maybe': expected true or false", id="bad boolean"),
    pytest.param("interval=soon\n", [], "<conf>:1: interval='soon': expected a number", id="bad number"),
    pytest.param("interval=0\n", [], "<conf>:1: interval='0': expected a number of seconds above 0", id="zero interval"),
    # Not a number of seconds either: nan never compares as elapsed, inf never ends a wait.
    pytest.param("settle=nan\n", [], "<conf>:1: settle='nan': expected a number of seconds, 0 or more", id="nan"),
    pytest.param("interval=inf\n", [], "<conf>:1: interval='inf': expected a number of seconds above 0", id="inf"),
    pytest.param("remote=localhost\n", [],
                 "<conf>:1: remote='localhost': expected unix:///path/to/docker.sock or tcp://host:port", id="remote"),
    pytest.param("confdir\n", [], "<conf>:1: expected key=value, got 'confdir'", id="not key=value"),
    pytest.param("", ["--timeout", "soon"], "--timeout: timeout='soon': expected a number", id="bad option value"),
    # A webhook URL's path is its password: the value is never repeated.
    pytest.param("notify=https://hooks.example/ok, hooks.example/T0/secret\n", [],
                 "<conf>:1: notify: expected http:// or https:// URLs separated by commas or spaces; URL 2 is not one",
                 id="notify"),
]


@pytest.mark.parametrize("text, options, message", CONFIG_CASES)
def test_a_bad_configuration_exits_2_with_one_line(tmp_path, text, options, message):
    config = tmp_path / "dockerup.conf"
    config.write_text(text)
    result = run("validate", "--config", config, *options)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [result.stderr.splitlines()[0]]
    assert result.stderr.rstrip("\n").endswith(" ERROR " + message.replace("<conf>", str(config)))


def test_a_missing_configuration_file_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "nowhere.conf"
    result = run("validate", "--config", missing)
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.rstrip("\n").endswith(f" ERROR {missing}: configuration file not found")


def test_a_configuration_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    confdir = tmp_path / "containers.d"
    write_files(confdir, {"web.json": spec(name="web")})
    config = tmp_path / "dockerup.conf"
    config.write_bytes(b"\xef\xbb\xbf" + f"confdir={confdir}\n".encode())
    result = run("validate", "--config", config)
    assert result.returncode == 0, result.stderr


def test_no_message_is_a_traceback_even_for_unreadable_files(tmp_path):
    confdir = tmp_path / "containers.d"
    write_files(confdir, {"web.json": spec()})
    os.mkfifo(confdir / "fifo.json")
    (confdir / "link.json").symlink_to(tmp_path / "nowhere.json")
    config = tmp_path / "dockerup.conf"
    config.write_text(f"confdir={confdir}\n")
    result = run("validate", "--config", config)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{confdir}/link.json: cannot read: No such file or directory"]
    assert "fifo.json: not a regular file; ignored" in result.stderr
    assert "Traceback" not in result.stderr
