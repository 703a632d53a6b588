"""Spec -> `docker run` argv, field by field, without an engine.

The table below is the golden record of the translation: every field of
schema/container.schema.json, the flags it must produce, and the words that must
follow the image. tests/test_fields_engine.py proves the engine reads those flags
the way this table assumes."""

import json
import subprocess

import pytest

import dockerup

IMAGE = "registry.example.com/app:1.4"


def normalized(doc):
    """The spec as loading leaves it: in dockerup's spelling (ECS spellings rewritten)."""
    def fail(path, message):
        raise AssertionError(f"{path}: {message}")

    return dockerup.normalize_container(doc, None, fail)[0]


def run_argv(**fields):
    return dockerup.run_argv(dockerup.Spec(normalized({"image": IMAGE, **fields}), "x.json", "confdir"))


def case(id, fragment, flags, after_image=()):
    return pytest.param(fragment, flags, list(after_image), id=id)


CASES = [
    case("name", {"name": "web"}, ["--name", "web"]),
    case("no-name", {}, []),
    case("cpu", {"cpu": 512}, ["--cpu-shares", "512"]),
    # Sizes go to docker as written: docker's parser is the reference, not ours.
    case("memory", {"memory": "512m"}, ["--memory", "512m"]),
    case("memory-fraction", {"memory": "1.5g"}, ["--memory", "1.5g"]),
    case("memoryReservation", {"memoryReservation": "256m"}, ["--memory-reservation", "256m"]),

    # --entrypoint takes one word; the rest of the entrypoint goes after the image,
    # before the command.
    case("entrypoint-string", {"entrypoint": "/bin/sh"}, ["--entrypoint", "/bin/sh"]),
    case("entrypoint-string-words", {"entrypoint": "/bin/sh -c 'echo hi'"},
         ["--entrypoint", "/bin/sh"], ["-c", "echo hi"]),
    case("entrypoint-array", {"entrypoint": ["/bin/sh", "-c", "echo  $HOME"]},
         ["--entrypoint", "/bin/sh"], ["-c", "echo  $HOME"]),
    case("entrypoint-and-command", {"entrypoint": ["/bin/sh", "-c"], "command": "'sleep 5' arg0"},
         ["--entrypoint", "/bin/sh"], ["-c", "sleep 5", "arg0"]),

    case("command-one-word", {"command": "/usr/bin/nginx"}, [], ["/usr/bin/nginx"]),
    case("command-string-quotes", {"command": "nginx -g 'daemon off;'"}, [], ["nginx", "-g", "daemon off;"]),
    case("command-string-double-quotes-escapes", {"command": 'echo "a  b" c\\ d \'"e"\''}, [],
         ["echo", "a  b", "c d", '"e"']),
    # Split like a shell, but no shell runs: variables and operators stay words.
    case("command-string-no-expansion", {"command": "echo $HOME && ls *"}, [], ["echo", "$HOME", "&&", "ls", "*"]),
    case("command-array-not-split", {"command": ["echo", "a  b", "'c'", "$HOME", ""]}, [],
         ["echo", "a  b", "'c'", "$HOME", ""]),

    case("privileged", {"privileged": True}, ["--privileged"]),
    case("privileged-false", {"privileged": False}, []),

    case("network-bridge", {"network": "bridge"}, ["--network", "bridge"]),
    case("network-none", {"network": "none"}, ["--network", "none"]),
    case("network-host", {"network": "host"}, ["--network", "host"]),
    case("network-container", {"network": "container:vpn"}, ["--network", "container:vpn"]),

    case("volume-host", {"volumes": [{"containerPath": "/data", "hostPath": "/mnt/data"}]},
         ["--volume", "/mnt/data:/data"]),
    case("volume-host-rw", {"volumes": [{"containerPath": "/data", "hostPath": "/mnt/data", "mode": "rw"}]},
         ["--volume", "/mnt/data:/data"]),
    case("volume-host-ro", {"volumes": [{"containerPath": "/etc/passwd", "hostPath": "/etc/passwd", "mode": "ro"}]},
         ["--volume", "/etc/passwd:/etc/passwd:ro"]),
    case("volume-anonymous", {"volumes": [{"containerPath": "/storage"}]}, ["--volume", "/storage"]),
    case("volume-from", {"volumes": [{"from": "backup"}]}, ["--volumes-from", "backup"]),
    case("volume-from-rw", {"volumes": [{"from": "backup", "mode": "rw"}]}, ["--volumes-from", "backup"]),
    case("volume-from-ro", {"volumes": [{"from": "backup", "mode": "ro"}]}, ["--volumes-from", "backup:ro"]),
    case("volumes-in-order",
         {"volumes": [{"from": "bk"}, {"containerPath": "/s"}, {"containerPath": "/d", "hostPath": "/h"}]},
         ["--volumes-from", "bk", "--volume", "/s", "--volume", "/h:/d"]),

    case("port-random", {"portMappings": [{"containerPort": 8080}]}, ["--publish", "8080/tcp"]),
    case("port-fixed", {"portMappings": [{"containerPort": 8080, "hostPort": 80}]}, ["--publish", "80:8080/tcp"]),
    case("port-strings", {"portMappings": [{"containerPort": "5000", "hostPort": "5000"}]},
         ["--publish", "5000:5000/tcp"]),
    case("port-string-leading-zero", {"portMappings": [{"containerPort": "080", "hostPort": "08080"}]},
         ["--publish", "8080:80/tcp"]),
    case("port-tcp-explicit", {"portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}]},
         ["--publish", "80:80/tcp"]),
    case("port-udp", {"portMappings": [{"containerPort": 53, "hostPort": 5353, "protocol": "udp"}]},
         ["--publish", "5353:53/udp"]),
    case("port-udp-random", {"portMappings": [{"containerPort": 53, "protocol": "udp"}]}, ["--publish", "53/udp"]),
    case("port-hostip-v4", {"portMappings": [{"containerPort": 80, "hostPort": 8080, "hostIp": "127.0.0.1"}]},
         ["--publish", "127.0.0.1:8080:80/tcp"]),
    case("port-hostip-v4-random", {"portMappings": [{"containerPort": 80, "hostIp": "127.0.0.1"}]},
         ["--publish", "127.0.0.1::80/tcp"]),
    # docker needs brackets to tell an IPv6 address's colons from its own.
    case("port-hostip-v6", {"portMappings": [{"containerPort": 80, "hostPort": 8080, "hostIp": "::1"}]},
         ["--publish", "[::1]:8080:80/tcp"]),
    case("port-hostip-v6-random-udp", {"portMappings": [{"containerPort": 53, "hostIp": "fd00::1", "protocol": "udp"}]},
         ["--publish", "[fd00::1]::53/udp"]),
    case("ports-in-order", {"portMappings": [{"containerPort": 81}, {"containerPort": 80, "hostPort": 8080}]},
         ["--publish", "81/tcp", "--publish", "8080:80/tcp"]),

    # Values go in docker's environment (ENVIRONMENT_CASES below), never on the command
    # line, except for the few variables the docker CLI reads itself.
    case("env-sorted", {"env": {"WORKERS": 4, "API_KEY": "XXX123"}}, ["--env", "API_KEY", "--env", "WORKERS"]),
    case("env-read-by-the-docker-cli", {"env": {"HOME": "/data", "DOCKER_HOST": "tcp://x:2375", "no_proxy": "*",
                                                "LD_PRELOAD": "/x.so", "TOKEN": "s"}},
         ["--env", "DOCKER_HOST=tcp://x:2375", "--env", "HOME=/data", "--env", "LD_PRELOAD=/x.so", "--env", "TOKEN",
          "--env", "no_proxy=*"]),

    case("restart-always", {"restart": "always"}, ["--restart", "always"]),
    case("restart-unless-stopped", {"restart": "unless-stopped"}, ["--restart", "unless-stopped"]),
    case("restart-on-failure", {"restart": "on-failure"}, ["--restart", "on-failure"]),
    case("restart-never", {"restart": "never"}, ["--restart", "no"]),

    case("links-array", {"links": ["db", "cache:memcached"]}, ["--link", "db", "--link", "cache:memcached"]),
    case("links-object", {"links": {"db": "database", "cache": "cache"}},
         ["--link", "db:database", "--link", "cache:cache"]),

    case("dockerLabels-sorted", {"dockerLabels": {"tier": "front end", "com.example.team": "web", "empty": ""}},
         ["--label", "com.example.team=web", "--label", "empty=", "--label", "tier=front end"]),

    case("hostname", {"hostname": "web-1.example.com"}, ["--hostname", "web-1.example.com"]),
    case("user-name", {"user": "nobody"}, ["--user", "nobody"]),
    case("user-uid-gid", {"user": "1000:1000"}, ["--user", "1000:1000"]),
    case("workingDirectory", {"workingDirectory": "/srv/app"}, ["--workdir", "/srv/app"]),
    case("extraHosts", {"extraHosts": [{"hostname": "db.local", "ipAddress": "10.0.0.5"},
                                       {"hostname": "v6.local", "ipAddress": "fd00::5"}]},
         ["--add-host", "db.local:10.0.0.5", "--add-host", "v6.local:fd00::5"]),
    case("dnsServers", {"dnsServers": ["10.0.0.2", "fd00::2"]}, ["--dns", "10.0.0.2", "--dns", "fd00::2"]),
    case("dnsSearchDomains", {"dnsSearchDomains": ["example.com", "corp"]},
         ["--dns-search", "example.com", "--dns-search", "corp"]),

    case("logConfiguration",
         {"logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m", "max-file": "2"}}},
         ["--log-driver", "json-file", "--log-opt", "max-file=2", "--log-opt", "max-size=1m"]),
    case("logConfiguration-no-options", {"logConfiguration": {"logDriver": "none"}}, ["--log-driver", "none"]),

    case("health-cmd-shell", {"healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]}},
         ["--health-cmd", "curl -f http://localhost/ || exit 1"]),
    # docker run cannot set an exec-form check: the words are quoted for /bin/sh.
    case("health-cmd-exec", {"healthCheck": {"command": ["CMD", "test", "-f", "/tmp/ready file", "$X"]}},
         ["--health-cmd", "test -f '/tmp/ready file' '$X'"]),
    case("health-none", {"healthCheck": {"command": ["NONE"]}}, ["--no-healthcheck"]),
    # docker refuses --no-healthcheck with any --health-* option, so they are dropped.
    case("health-none-drops-settings", {"healthCheck": {"command": ["NONE"], "interval": 5, "retries": 2}},
         ["--no-healthcheck"]),
    case("health-string", {"healthCheck": {"command": "test -d /tmp"}}, ["--health-cmd", "test -d /tmp"]),
    case("health-durations", {"healthCheck": {"command": "true", "interval": 30, "timeout": 0.5, "retries": 5,
                                              "startPeriod": 2.0}},
         ["--health-cmd", "true", "--health-interval", "30s", "--health-timeout", "0.5s",
          "--health-start-period", "2s", "--health-retries", "5"]),

    case("stopTimeout", {"stopTimeout": 30}, ["--stop-timeout", "30"]),
    case("stopTimeout-zero", {"stopTimeout": 0}, ["--stop-timeout", "0"]),
    case("ulimits", {"ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048},
                                 {"name": "core", "softLimit": -1, "hardLimit": -1}]},
         ["--ulimit", "nofile=1024:2048", "--ulimit", "core=-1:-1"]),
    case("readonlyRootFilesystem", {"readonlyRootFilesystem": True}, ["--read-only"]),
    case("readonlyRootFilesystem-false", {"readonlyRootFilesystem": False}, []),

    case("volume-named", {"volumes": [{"containerPath": "/data", "volume": "shop_data"}]},
         ["--volume", "shop_data:/data"]),
    case("volume-named-ro", {"volumes": [{"containerPath": "/data", "volume": "shop_data", "mode": "ro"}]},
         ["--volume", "shop_data:/data:ro"]),
    case("linuxParameters",
         {"linuxParameters": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD", "CHOWN"]},
                              "devices": [{"hostPath": "/dev/fuse"},
                                          {"hostPath": "/dev/sda", "containerPath": "/dev/xvda",
                                           "permissions": ["read", "mknod"]}],
                              "initProcessEnabled": True, "sharedMemorySize": 64,
                              "tmpfs": [{"containerPath": "/run", "size": 16, "mountOptions": ["noexec", "mode=1777"]}]}},
         ["--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD", "--cap-drop", "CHOWN", "--device", "/dev/fuse:/dev/fuse",
          "--device", "/dev/sda:/dev/xvda:rm", "--init", "--shm-size", "64m", "--tmpfs", "/run:size=16m,noexec,mode=1777"]),
    case("linuxParameters-init-off", {"linuxParameters": {"initProcessEnabled": False}}, []),
    case("systemControls", {"systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}]},
         ["--sysctl", "net.core.somaxconn=1024"]),
    # ECS writes a colon; docker's separator is '='.
    case("dockerSecurityOptions", {"dockerSecurityOptions": ["no-new-privileges", "apparmor:docker-default",
                                                             "label=disable"]},
         ["--security-opt", "no-new-privileges", "--security-opt", "apparmor=docker-default", "--security-opt",
          "label=disable"]),
    case("pseudoTerminal", {"pseudoTerminal": True}, ["--tty"]),
    case("interactive", {"interactive": True}, ["--interactive"]),
    case("pidMode", {"pidMode": "host"}, ["--pid", "host"]),
    case("ipcMode", {"ipcMode": "shareable"}, ["--ipc", "shareable"]),
    case("ipcMode-container", {"ipcMode": "container:shm"}, ["--ipc", "container:shm"]),

    # ECS spellings are rewritten into dockerup's before translation (tests/test_ecs.py has the rest).
    case("environment", {"environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]},
         ["--env", "A", "--env", "B"]),
    case("entryPoint", {"entryPoint": ["/bin/sh", "-c"]}, ["--entrypoint", "/bin/sh"], ["-c"]),
    case("mountPoints-none", {"mountPoints": []}, []),
    case("volumesFrom", {"volumesFrom": [{"sourceContainer": "backup", "readOnly": True}]},
         ["--volumes-from", "backup:ro"]),
    case("restartPolicy", {"restartPolicy": {"enabled": True, "ignoredExitCodes": [0], "restartAttemptPeriod": 60}},
         ["--restart", "on-failure"]),
    case("disableNetworking", {"disableNetworking": True}, ["--network", "none"]),
    case("memory-mib", {"memory": 512, "memoryReservation": 256}, ["--memory", "512m", "--memory-reservation", "256m"]),
    case("cpu-zero", {"cpu": 0}, []),
    case("versionConsistency", {"versionConsistency": "enabled"}, []),
    case("ecs-fields-left-empty", {"secrets": [], "environmentFiles": [], "repositoryCredentials": {},
                                   "firelensConfiguration": None, "resourceRequirements": [], "credentialSpecs": []},
         []),

    # These steer dockerup itself; docker never hears of them.
    case("essential", {"essential": False}, []),
    case("dependsOn", {"dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]}, []),
    case("startTimeout", {"startTimeout": 30}, []),
    case("type", {"type": "docker"}, []),
    case("update", {"update": {"pull": False, "eager": True, "rolling": False}}, []),
    case("signal", {"signal": [{"container": "proxy", "signal": "HUP"}]}, []),
]


@pytest.mark.parametrize("fragment, flags, after_image", CASES)
def test_run_argv(fragment, flags, after_image):
    assert run_argv(**fragment) == ["run", "--detach", *flags, IMAGE, *after_image]


ENVIRONMENT_CASES = [
    pytest.param({}, {}, id="no env"),
    pytest.param({"API_KEY": "XXX123", "HOME": "/data", "DOCKER_CONFIG": "/x", "HTTPS_PROXY": "http://p:3128"},
                 {"API_KEY": "XXX123"}, id="only what the docker CLI does not read"),
    pytest.param({"COUNT": 3, "RATIO": 0.5, "BIG": 1e100, "ON": True, "OFF": False, "NEG": -2},
                 {"BIG": "1e+100", "COUNT": "3", "NEG": "-2", "OFF": "false", "ON": "true", "RATIO": "0.5"},
                 id="JSON text"),
    pytest.param({"EMPTY": "", "EQUALS": "a=b", "SPACES": " x  y ", "NEWLINE": "1\n2", "my.key-1": "v"},
                 {"EMPTY": "", "EQUALS": "a=b", "SPACES": " x  y ", "NEWLINE": "1\n2", "my.key-1": "v"},
                 id="raw values"),
]


@pytest.mark.parametrize("env, environment", ENVIRONMENT_CASES)
def test_run_environment(env, environment):
    assert dockerup.run_environment(dockerup.Spec({"image": IMAGE, "env": env}, "x.json", "confdir")) == environment


@pytest.mark.parametrize("fragment, flags, after_image", CASES)
def test_field_flags_are_the_flags_before_the_image(fragment, flags, after_image):
    """field_flags is run_argv without --name (which is not a field's translation)."""
    produced = [flag for _, field_flags in dockerup.field_flags(normalized({"image": IMAGE, **fragment}))
                for flag in field_flags]
    assert produced == (flags[2:] if "name" in fragment else flags)


@pytest.mark.parametrize("fragment, flags, after_image", CASES)
def test_every_case_is_a_valid_spec(fragment, flags, after_image):
    assert spec_problems({"image": IMAGE, **fragment}) == []


def test_every_schema_field_has_a_case():
    schema = json.loads(dockerup.SCHEMA_TEXTS["container"])
    covered = {key for param in CASES for key in param.values[0]}
    assert set(schema["properties"]) - {"image"} - covered == set()


def test_whole_spec_golden():
    """Flags follow the order of dockerup.FIELD_FLAGS, whatever the key order of the file;
    dockerup's own labels come right after the name."""
    spec = dockerup.Spec({
        "update": {"eager": True},
        "command": ["--port", "8080"],
        "env": {"B": "2", "A": 1},
        "portMappings": [{"containerPort": "8080", "hostPort": "80"}],
        "entrypoint": "/app/run --verbose",
        "restart": "always",
        "memory": "256m",
        "image": IMAGE,
        "name": "web",
        "type": "docker",
    }, "web.json", "confdir")
    assert dockerup.run_argv(spec, labels={"dockerup.id": "web", "dockerup.hash": "abc"}) == [
        "run", "--detach", "--name", "web", "--label", "dockerup.id=web", "--label", "dockerup.hash=abc",
        "--memory", "256m", "--restart", "always", "--publish", "80:8080/tcp", "--env", "A", "--env", "B",
        "--entrypoint", "/app/run", IMAGE, "--verbose", "--port", "8080",
    ]


def test_run_argv_name_override():
    """An eager replacement starts under a temporary name."""
    spec = dockerup.Spec({"image": IMAGE, "name": "web"}, "web.json", "confdir")
    assert dockerup.run_argv(spec, name="web-new") == ["run", "--detach", "--name", "web-new", IMAGE]


@pytest.mark.parametrize("seconds, text", [
    (30, "30s"),
    (2.0, "2s"),
    (0.5, "0.5s"),
    (0.001, "0.001s"),
    (90.25, "90.25s"),
    # Valid in the schema (no maximum); docker's Go duration parser has no exponents.
    (1000000, "1000000s"),
    (1234.5678, "1234.5678s"),
])
def test_health_durations_are_go_durations(seconds, text):
    flags = dockerup.health_flags({"command": "true", "interval": seconds, "timeout": seconds, "startPeriod": seconds})
    assert flags == ["--health-cmd", "true", "--health-interval", text, "--health-timeout", text,
                     "--health-start-period", text]


def spec_problems(doc):
    """Every problem validation finds in one confdir spec."""
    problems = dockerup.schema_problems(dockerup.schema_validator("container"), doc, "x.json")
    return [str(p) for p in problems or dockerup.check_spec(dockerup.Spec(normalized(doc), "x.json", "confdir"))]


def test_label_key_with_equals_sign_is_rejected():
    """docker splits --label at the first '=': the key "a=b" would arrive as label
    "a" with value "b=c". Only validation can stop that."""
    assert run_argv(dockerLabels={"a=b": "c"})[2:4] == ["--label", "a=b=c"]
    assert spec_problems({"image": IMAGE, "dockerLabels": {"a=b": "c"}}) == [
        "x.json: dockerLabels: key \"a=b\" must not contain '='"]


@pytest.mark.parametrize("key", ["interval", "timeout"])
def test_health_durations_below_one_millisecond_are_rejected(key):
    """docker refuses them: "Interval in Healthcheck cannot be less than 1ms"."""
    assert spec_problems({"image": IMAGE, "healthCheck": {"command": "true", key: 0.0005}}) == [
        f"x.json: healthCheck.{key}: 0.0005 is less than the minimum of 0.001"]


def test_memory_reservation_above_memory_is_rejected():
    """docker refuses it: "Minimum memory limit can not be less than memory reservation limit"."""
    assert spec_problems({"image": IMAGE, "memory": "64m", "memoryReservation": "128m"}) == [
        "x.json: memoryReservation: '128m' is above memory '64m'; docker refuses a reservation above the limit"]


# ---- fingerprint and changed_fields -------------------------------------------

BASE = {
    "name": "web", "image": IMAGE, "cpu": 512, "memory": "512m", "memoryReservation": "256m",
    "entrypoint": "/bin/sh -c", "command": "exec app", "privileged": True, "network": "bridge",
    "volumes": [{"containerPath": "/data", "hostPath": "/mnt/data"}, {"from": "store", "mode": "ro"}],
    "portMappings": [{"containerPort": 8080, "hostPort": 80}, {"containerPort": 53, "protocol": "udp"}],
    "env": {"A": "1", "B": "two"}, "restart": "always", "links": ["db:database"],
    "dockerLabels": {"team": "web", "tier": "front"}, "hostname": "web-1", "user": "nobody",
    "workingDirectory": "/srv", "extraHosts": [{"hostname": "db.local", "ipAddress": "10.0.0.5"}],
    "dnsServers": ["10.0.0.2"], "dnsSearchDomains": ["example.com"],
    "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m", "max-file": "2"}},
    "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5}, "stopTimeout": 10,
    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}], "readonlyRootFilesystem": True,
}
REMOVED = object()


def changed(**changes):
    doc = dict(BASE)
    for key, value in changes.items():
        if value is REMOVED:
            del doc[key]
        else:
            doc[key] = value
    return doc


SAME_CONTAINER = [
    pytest.param(dict(reversed(list(BASE.items()))), id="keys-reordered"),
    pytest.param(changed(env={"B": "two", "A": "1"}, dockerLabels={"tier": "front", "team": "web"},
                         logConfiguration={"options": {"max-file": "2", "max-size": "1m"}, "logDriver": "json-file"}),
                 id="nested-keys-reordered"),
    pytest.param(changed(portMappings=[{"hostPort": "80", "containerPort": "8080"},
                                       {"protocol": "udp", "containerPort": "53"}]), id="ports-as-strings"),
    pytest.param(changed(portMappings=[{"containerPort": 8080, "hostPort": 80, "protocol": "tcp"},
                                       {"containerPort": 53, "protocol": "udp"}]), id="explicit-tcp"),
    pytest.param(changed(env={"A": 1, "B": "two"}), id="env-number-vs-its-text"),
    pytest.param(changed(command=["exec", "app"], entrypoint=["/bin/sh", "-c"]), id="argv-string-vs-array"),
    pytest.param(changed(volumes=[{"containerPath": "/data", "hostPath": "/mnt/data", "mode": "rw"},
                                  {"from": "store", "mode": "ro"}]), id="explicit-rw"),
    pytest.param(changed(type="docker", update={"pull": False, "eager": True},
                         signal=[{"container": "p", "signal": "HUP"}]), id="control-fields-added"),
    pytest.param(changed(update={"eager": False}), id="update-changed"),
    # docker reads these in any order
    pytest.param(changed(portMappings=list(reversed(BASE["portMappings"]))), id="ports-reordered"),
    pytest.param(changed(volumes=list(reversed(BASE["volumes"]))), id="volumes-reordered"),
    pytest.param(changed(links={"db": "database"}), id="links-as-object"),
    pytest.param(changed(healthCheck={"command": "true", "interval": 5.0}), id="health-string-vs-cmd-shell"),
    # docker update applies these in place: they are compared with docker inspect, not hashed
    pytest.param(changed(cpu=1024, memory="1g", memoryReservation="128m", restart="never"), id="in-place-fields"),
]


@pytest.mark.parametrize("other", SAME_CONTAINER)
def test_fingerprint_ignores_form(other):
    assert dockerup.fingerprint(other) == dockerup.fingerprint(BASE)


@pytest.mark.parametrize("image, same", [
    ("nginx", "nginx:latest"),
    ("nginx", "docker.io/library/nginx:latest"),
    ("example/app:1", "docker.io/example/app:1"),
])
def test_fingerprint_image_spellings(image, same):
    assert dockerup.fingerprint({"image": image}) == dockerup.fingerprint({"image": same})


NO_FLAG_VALUES = [("privileged", False), ("readonlyRootFilesystem", False), ("env", {}), ("volumes", []),
                  ("portMappings", []), ("links", []), ("links", {}), ("dockerLabels", {}), ("extraHosts", []),
                  ("dnsServers", []), ("dnsSearchDomains", []), ("ulimits", [])]


@pytest.mark.parametrize("key, absent", NO_FLAG_VALUES, ids=[f"{k}={json.dumps(v)}" for k, v in NO_FLAG_VALUES])
def test_fingerprint_ignores_fields_that_add_no_flag(key, absent):
    """Writing out a default gives docker the very same argv: no reason to recreate."""
    doc = {"image": IMAGE, "name": "web"}
    assert run_argv(name="web", **{key: absent}) == run_argv(name="web")
    assert dockerup.fingerprint({**doc, key: absent}) == dockerup.fingerprint(doc)


REAL_CHANGES = [
    ("name", "api"),
    ("image", "registry.example.com/app:1.5"),
    ("entrypoint", "/bin/bash -c"),
    # The entrypoint's extra words go after the image, but they are still the entrypoint.
    ("entrypoint", "/bin/sh -e"),
    ("command", "exec app --debug"),
    ("command", REMOVED),
    ("privileged", False),
    ("network", "host"),
    ("volumes", [{"containerPath": "/data", "hostPath": "/mnt/data", "mode": "ro"}, {"from": "store", "mode": "ro"}]),
    ("volumes", [{"containerPath": "/data", "hostPath": "/mnt/data"}, {"from": "store"}]),
    ("portMappings", [{"containerPort": 8080, "hostPort": 81}, {"containerPort": 53, "protocol": "udp"}]),
    ("portMappings", [{"containerPort": 8080, "hostPort": 80}, {"containerPort": 53}]),
    ("portMappings", [{"containerPort": 8080, "hostPort": 80, "hostIp": "127.0.0.1"},
                      {"containerPort": 53, "protocol": "udp"}]),
    ("env", {"A": "1", "B": "three"}),
    ("env", {"A": "1", "B": "two", "C": ""}),
    ("links", {"db": "database", "cache": "cache"}),
    ("dockerLabels", {"team": "api", "tier": "front"}),
    ("hostname", "web-2"),
    ("user", "1000"),
    ("workingDirectory", "/"),
    ("extraHosts", [{"hostname": "db.local", "ipAddress": "10.0.0.6"}]),
    ("dnsServers", ["10.0.0.3"]),
    ("dnsSearchDomains", ["example.org"]),
    ("logConfiguration", {"logDriver": "json-file", "options": {"max-size": "2m", "max-file": "2"}}),
    ("healthCheck", {"command": ["CMD-SHELL", "true"], "interval": 6}),
    ("healthCheck", {"command": ["NONE"]}),
    ("stopTimeout", 11),
    ("ulimits", [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]),
    ("readonlyRootFilesystem", REMOVED),
]


@pytest.mark.parametrize("key, value", REAL_CHANGES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(REAL_CHANGES)])
def test_real_change_changes_fingerprint_and_is_named(key, value):
    old_hash, old_fields = dockerup.fingerprint(BASE)
    new_hash, new_fields = dockerup.fingerprint(changed(**{key: value}))
    assert new_hash != old_hash
    assert dockerup.changed_fields(old_fields, new_fields) == [key]


def test_changed_fields_lists_every_change_sorted():
    _, old = dockerup.fingerprint(BASE)
    _, new = dockerup.fingerprint(changed(user="root", stopTimeout=2, env={"A": "2", "B": "two"}))
    assert dockerup.changed_fields(old, new) == ["env", "stopTimeout", "user"]


@pytest.mark.parametrize("first, second", [("2g", "2048m"), ("1024k", "1m"), ("1.5g", "1536m")])
def test_sizes_are_compared_in_bytes(first, second):
    assert dockerup.resource_settings({"memory": first}) == dockerup.resource_settings({"memory": second})


def test_every_schema_field_is_hashed_applied_in_place_or_a_control():
    """...or an ECS spelling, which loading rewrites into one of those (or drops)."""
    schema = json.loads(dockerup.SCHEMA_TEXTS["container"])
    kinds = [set(dockerup.CANONICAL), set(dockerup.IN_PLACE_FIELDS), set(dockerup.CONTROL_FIELDS),
             set(dockerup.ECS_REWRITTEN)]
    assert set.union(*kinds) == set(schema["properties"])
    assert sum(map(len, kinds)) == len(schema["properties"])


def test_changed_fields_of_identical_specs_is_empty():
    _, fields = dockerup.fingerprint(BASE)
    assert dockerup.changed_fields(fields, fields) == []


def test_changed_fields_of_a_container_without_the_label():
    """A container made by an older dockerup has no dockerup.fields label."""
    _, fields = dockerup.fingerprint({"image": IMAGE, "name": "web"})
    assert dockerup.changed_fields(None, fields) == ["image", "name"]


# ---- display_command --------------------------------------------------------------

SECRET_SPEC = dockerup.Spec({"image": IMAGE, "name": "web",
                             "env": {"API_KEY": "XXX123", "GREETING": "hello world", "HOME": "/data"},
                             "logConfiguration": {"logDriver": "splunk", "options": {"splunk-token": "T0KEN"}},
                             "dockerLabels": {"team": "web"}}, "web.json", "confdir")


def test_display_command_masks_env_values_and_log_options():
    """Env values are not on the command line at all (docker reads them from its
    environment), except those the docker CLI reads itself: masked, like log options."""
    argv = ["docker", "-H", "unix:///var/run/docker.sock", *dockerup.run_argv(SECRET_SPEC)]
    environment = dockerup.run_environment(SECRET_SPEC)
    assert dockerup.display_command(argv, env=environment) == (
        "docker -H unix:///var/run/docker.sock run --detach --name web --env API_KEY --env GREETING "
        f"--env 'HOME=***' --label team=web --log-driver splunk --log-opt 'splunk-token=***' {IMAGE}")


def test_display_command_show_secrets():
    """Shown, the values docker gets in its environment become an `env` prefix."""
    argv = ["docker", *dockerup.run_argv(SECRET_SPEC)]
    assert dockerup.display_command(argv, show_secrets=True, env=dockerup.run_environment(SECRET_SPEC)) == (
        "env API_KEY=XXX123 'GREETING=hello world' docker run --detach --name web --env API_KEY --env GREETING "
        f"--env HOME=/data --label team=web --log-driver splunk --log-opt splunk-token=T0KEN {IMAGE}")


def test_display_command_is_a_shell_command_for_the_same_argv():
    """What the log shows, pasted into a shell, runs exactly the argv dockerup ran."""
    import shlex

    spec = dockerup.Spec({"image": IMAGE, "command": "sh -c 'echo \"$HOME\"; exit 3'", "env": {"A": "it's"}},
                         "x.json", "confdir")
    argv = ["docker", *dockerup.run_argv(spec)]
    shown = dockerup.display_command(argv, show_secrets=True, env=dockerup.run_environment(spec))
    assert shlex.split(shown) == ["env", "A=it's", *argv]


# Characters that break a line for splitlines() or a terminal: the ASCII controls, the C1
# controls (NEL, U+0085, among them) and the Unicode line and paragraph separators.
LINE_BREAKERS = ["\n", "\r", "\x0b", "\x1c", "\x85", "\u2028", "\u2029", "\x9f", "\x7f"]


@pytest.mark.parametrize("char", LINE_BREAKERS, ids=[f"U+{ord(c):04X}" for c in LINE_BREAKERS])
def test_a_line_breaking_character_keeps_messages_and_commands_on_one_line(char):
    word = f"a{char}b'c"
    assert len(dockerup.one_line(f"web.json: {word}").splitlines()) == 1
    quoted = dockerup.shell_quote(word)
    assert len(quoted.splitlines()) == 1
    pasted = subprocess.run(["bash", "-c", f"printf %s {quoted}"], capture_output=True, check=True).stdout
    assert pasted.decode() == word, "pasted into a shell, it is the word again, whatever the locale"
