"""Every spec field, through dockerup and the real engine, read back with docker inspect.

One dockerup run creates one container per row of CASES (plus the containers the
rows refer to); each test then compares that container's inspect output with what
the spec asked for. tests/test_translate.py holds the argv side of the same fields."""

import os
import socket
import subprocess

import pytest

import dockerup
from conftest import IMAGE, Host, docker, free_port, remove_test_containers

TARGET = "fe-target"  # what links, volumes[].from and network container: point at
DATA = "fe-data"
SUPPORT = {
    TARGET: {"volumes": [{"containerPath": "/shared"}]},
    DATA: {"volumes": [{"containerPath": "/data2"}]},
}
IMAGE_CMD = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
NANOSECONDS = 1_000_000_000


class SomePort:
    """Matches the host port docker picked."""

    def __eq__(self, other):
        return isinstance(other, str) and other.isdigit() and 0 < int(other) < 65536

    def __repr__(self):
        return "<some port>"


SOME_PORT = SomePort()


def case(id, fragment, expected):
    """A container "fe-<id>" made from `fragment`, and {inspect path: value} it must show.
    "{tmp}", "{tcp_port}", "{udp_port}", "{local_port}", "{shared_port}" and "{target_id}" are filled in
    at run time. An expected set compares with the inspect list in any order."""
    return pytest.param(f"fe-{id}", fragment, expected, id=id)


CASES = [
    case("name", {}, {"Name": "/fe-name"}),
    case("control-fields", {"type": "docker", "update": {"pull": False, "eager": True},
                            "signal": [{"container": DATA, "signal": "CONT"}]},
         {"Config.Image": IMAGE, "Config.Entrypoint": None, "Config.Cmd": IMAGE_CMD}),
    case("cpu", {"cpu": 512}, {"HostConfig.CpuShares": 512}),
    case("memory", {"memory": "64m", "memoryReservation": "32m"},
         {"HostConfig.Memory": 64 << 20, "HostConfig.MemoryReservation": 32 << 20}),
    case("memory-units", {"memory": "0.5g", "memoryReservation": "65536k"},
         {"HostConfig.Memory": 512 << 20, "HostConfig.MemoryReservation": 64 << 20}),

    # --entrypoint holds one word and clears the image's CMD; the other words are Cmd.
    case("entrypoint-string", {"entrypoint": "/bin/sh -c 'sleep 30'"},
         {"Config.Entrypoint": ["/bin/sh"], "Config.Cmd": ["-c", "sleep 30"]}),
    case("entrypoint-array", {"entrypoint": ["/bin/sh", "-c", "sleep 30 # $0 $1"], "command": ["a  b", "'c'"]},
         {"Config.Entrypoint": ["/bin/sh"], "Config.Cmd": ["-c", "sleep 30 # $0 $1", "a  b", "'c'"]}),
    case("entrypoint-alone", {"entrypoint": "/bin/true"}, {"Config.Entrypoint": ["/bin/true"], "Config.Cmd": None}),
    case("command-string", {"command": "/bin/sh -c 'echo \"two words\" $HOME; sleep 30'"},
         {"Config.Entrypoint": None, "Config.Cmd": ["/bin/sh", "-c", 'echo "two words" $HOME; sleep 30']}),
    case("command-array", {"command": ["/bin/sh", "-c", "sleep 30", "it's", "a  b", ""]},
         {"Config.Entrypoint": None, "Config.Cmd": ["/bin/sh", "-c", "sleep 30", "it's", "a  b", ""]}),

    case("network-bridge", {"network": "bridge"}, {"HostConfig.NetworkMode": "bridge"}),
    case("network-none", {"network": "none"}, {"HostConfig.NetworkMode": "none"}),
    case("network-host", {"network": "host"}, {"HostConfig.NetworkMode": "host"}),
    # docker records the id of the container named, not its name.
    case("network-container", {"network": f"container:{TARGET}"}, {"HostConfig.NetworkMode": "container:{target_id}"}),

    case("volumes", {"volumes": [{"containerPath": "/srv/rw", "hostPath": "{tmp}/rw"},
                                 {"containerPath": "/srv/ro", "hostPath": "{tmp}/ro", "mode": "ro"},
                                 {"containerPath": "/srv/rw2", "hostPath": "{tmp}/rw", "mode": "rw"},
                                 {"containerPath": "/cache"}]},
         # A set: docker does not keep the order of --volume flags.
         {"HostConfig.Binds": {"{tmp}/rw:/srv/rw", "{tmp}/ro:/srv/ro:ro", "{tmp}/rw:/srv/rw2"},
          "Config.Volumes": {"/cache": {}},
          "Mounts./srv/ro.RW": False, "Mounts./srv/rw.RW": True, "Mounts./cache.Type": "volume"}),
    case("volumes-from", {"volumes": [{"from": TARGET}, {"from": DATA, "mode": "ro"}]},
         {"HostConfig.VolumesFrom": [TARGET, f"{DATA}:ro"],
          "Mounts./shared.RW": True, "Mounts./data2.RW": False}),

    case("ports", {"portMappings": [{"containerPort": 8080},
                                    {"containerPort": "8081", "hostPort": "{tcp_port}"},
                                    {"containerPort": 53, "hostPort": "{udp_port}", "protocol": "udp"},
                                    {"containerPort": 9090, "hostPort": "{local_port}", "hostIp": "127.0.0.1"},
                                    {"containerPort": 9091, "hostIp": "127.0.0.1", "protocol": "tcp"}]},
         {"HostConfig.PortBindings": {
             "8080/tcp": [{"HostIp": "", "HostPort": ""}],
             "8081/tcp": [{"HostIp": "", "HostPort": "{tcp_port}"}],
             "53/udp": [{"HostIp": "", "HostPort": "{udp_port}"}],
             "9090/tcp": [{"HostIp": "127.0.0.1", "HostPort": "{local_port}"}],
             "9091/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
          # What docker actually bound: a random host port is some free port.
          "NetworkSettings.Ports.8080/tcp.0.HostPort": SOME_PORT,
          "NetworkSettings.Ports.9091/tcp": [{"HostIp": "127.0.0.1", "HostPort": SOME_PORT}],
          "NetworkSettings.Ports.9090/tcp": [{"HostIp": "127.0.0.1", "HostPort": "{local_port}"}],
          "NetworkSettings.Ports.53/udp.0.HostPort": "{udp_port}"}),

    # Values reach docker in its environment, except those the docker CLI reads itself
    # (HOME, DOCKER_*, proxies, LD_*), which are on its command line.
    case("env", {"env": {"GREETING": "hello world", "COUNT": 3, "RATIO": 0.5, "DEBUG": True, "QUIET": False,
                         "EMPTY": "", "URL": "a=b", "my.key-1": "v", "HOME": "/data", "DOCKER_MODE": "x",
                         "https_proxy": "http://proxy:3128", "LD_LIBRARY_PATH": "/opt/lib"}},
         # A set: docker does not keep the order of --env flags.
         {"Config.Env": {"COUNT=3", "DEBUG=true", "EMPTY=", "GREETING=hello world", "QUIET=false", "RATIO=0.5",
                         "URL=a=b", "my.key-1=v", "HOME=/data", "DOCKER_MODE=x", "https_proxy=http://proxy:3128",
                         "LD_LIBRARY_PATH=/opt/lib"}}),

    case("restart-always", {"restart": "always"},
         {"HostConfig.RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}),
    case("restart-unless-stopped", {"restart": "unless-stopped"}, {"HostConfig.RestartPolicy.Name": "unless-stopped"}),
    case("restart-on-failure", {"restart": "on-failure"}, {"HostConfig.RestartPolicy.Name": "on-failure"}),
    case("restart-never", {"restart": "never"}, {"HostConfig.RestartPolicy.Name": "no"}),

    # A set: links have no order that matters.
    case("links-array", {"links": [TARGET, f"{DATA}:store"]},
         {"HostConfig.Links": {f"/{TARGET}:/fe-links-array/{TARGET}", f"/{DATA}:/fe-links-array/store"}}),
    case("links-object", {"links": {TARGET: "db"}}, {"HostConfig.Links": [f"/{TARGET}:/fe-links-object/db"]}),

    case("labels", {"dockerLabels": {"team": "web", "tier": "front end", "empty": ""}},
         {"Config.Labels.team": "web", "Config.Labels.tier": "front end", "Config.Labels.empty": ""}),
    case("identity", {"hostname": "web-1", "user": "nobody", "workingDirectory": "/tmp"},
         {"Config.Hostname": "web-1", "Config.User": "nobody", "Config.WorkingDir": "/tmp"}),
    case("user-uid-gid", {"user": "65534:65534"}, {"Config.User": "65534:65534"}),
    # One host port on two addresses is two bindings, not a duplicate.
    case("ports-two-addresses", {"portMappings": [
        {"containerPort": 80, "hostPort": "{shared_port}", "hostIp": "127.0.0.1"},
        {"containerPort": 81, "hostPort": "{shared_port}", "hostIp": "127.0.0.2"}]},
         {"NetworkSettings.Ports.80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "{shared_port}"}],
          "NetworkSettings.Ports.81/tcp": [{"HostIp": "127.0.0.2", "HostPort": "{shared_port}"}]}),
    case("host-gateway", {"extraHosts": [{"hostname": "gw.local", "ipAddress": "host-gateway"}]},
         {"HostConfig.ExtraHosts": ["gw.local:host-gateway"]}),
    case("name-resolution", {"extraHosts": [{"hostname": "db.local", "ipAddress": "10.0.0.5"},
                                            {"hostname": "v6.local", "ipAddress": "fd00::5"}],
                             "dnsServers": ["10.0.0.2", "fd00::2"], "dnsSearchDomains": ["example.com", "corp"]},
         {"HostConfig.ExtraHosts": ["db.local:10.0.0.5", "v6.local:fd00::5"],
          "HostConfig.Dns": ["10.0.0.2", "fd00::2"], "HostConfig.DnsSearch": ["example.com", "corp"]}),
    case("log", {"logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m", "max-file": "2"}}},
         {"HostConfig.LogConfig": {"Type": "json-file", "Config": {"max-file": "2", "max-size": "1m"}}}),
    case("log-none", {"logConfiguration": {"logDriver": "none"}},
         {"HostConfig.LogConfig": {"Type": "none", "Config": {}}}),

    case("health-shell", {"healthCheck": {"command": ["CMD-SHELL", "test -d /tmp || exit 1"], "interval": 1.5,
                                          "timeout": 2, "retries": 4, "startPeriod": 0.25}},
         {"Config.Healthcheck": {"Test": ["CMD-SHELL", "test -d /tmp || exit 1"], "Interval": 3 * NANOSECONDS // 2,
                                 "Timeout": 2 * NANOSECONDS, "StartPeriod": NANOSECONDS // 4, "Retries": 4}}),
    # The exec form arrives as a shell command: docker run has no flag for the exec form.
    case("health-exec", {"healthCheck": {"command": ["CMD", "test", "-d", "/tmp dir"]}},
         {"Config.Healthcheck": {"Test": ["CMD-SHELL", "test -d '/tmp dir'"]}}),
    case("health-none", {"healthCheck": {"command": ["NONE"]}}, {"Config.Healthcheck": {"Test": ["NONE"]}}),
    case("health-string", {"healthCheck": {"command": "test -d /tmp"}},
         {"Config.Healthcheck": {"Test": ["CMD-SHELL", "test -d /tmp"]}}),

    case("stop-timeout", {"stopTimeout": 7}, {"Config.StopTimeout": 7}),
    # docker lists ulimits by name, not in the order given.
    case("ulimits", {"ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048},
                                 {"name": "core", "softLimit": 0, "hardLimit": -1}]},
         {"HostConfig.Ulimits": [{"Name": "core", "Soft": 0, "Hard": -1},
                                 {"Name": "nofile", "Soft": 1024, "Hard": 2048}]}),
    case("readonly", {"readonlyRootFilesystem": True}, {"HostConfig.ReadonlyRootfs": True}),
]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(value, places):
    if isinstance(value, str):
        for key, text in places.items():
            value = value.replace("{%s}" % key, text)
        return value
    if isinstance(value, dict):
        return {fill(k, places): fill(v, places) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return type(value)(fill(item, places) for item in value)
    return value


def dig(container, path):
    """An inspect value by dotted path; in "Mounts./data.RW", /data picks the mount."""
    value = container
    for step in path.split("."):
        if step.startswith("/"):
            value = next(mount for mount in value if mount["Destination"] == step)
        elif isinstance(value, list):
            value = value[int(step)]
        else:
            value = value[step]
    return value


@pytest.fixture(scope="module")
def converged(engine, tmp_path_factory):
    """One dockerup run for every case: (its result, inspect output by name, placeholders)."""
    remove_test_containers()
    root = tmp_path_factory.mktemp("fields")
    for directory in ("rw", "ro", "host"):
        (root / directory).mkdir()
    places = {"tmp": str(root), "tcp_port": str(free_port()), "udp_port": str(free_udp_port()),
              "local_port": str(free_port()), "shared_port": str(free_port())}
    host = Host(root / "host")
    for name, fragment in SUPPORT.items():
        # First in the confdir, so they exist before any case signals them.
        host.spec(f"0-{name}.json", name=name, **fragment)
    for param in CASES:
        name, fragment, _ = param.values
        host.spec(f"{name}.json", name=name, **fill(fragment, places))
    result = host.run()
    containers = host.managed()
    places["target_id"] = containers[TARGET]["Id"] if TARGET in containers else "(missing)"
    volumes = [m["Name"] for c in containers.values() for m in c["Mounts"] if m["Type"] == "volume"]
    yield result, containers, places
    remove_test_containers()
    if volumes:
        # Anonymous volumes outlive `docker rm`; these are ours alone.
        docker("volume", "rm", "--force", *volumes, check=False)


def test_dockerup_created_every_container(converged):
    result, containers, _ = converged
    assert result.returncode == 0, result.stderr
    assert sorted(containers) == sorted([*SUPPORT, *(param.values[0] for param in CASES)])


@pytest.mark.parametrize("name, fragment, expected", CASES)
def test_engine_got_the_setting(converged, name, fragment, expected):
    _, containers, places = converged
    assert name in containers, f"dockerup did not create {name}: {converged[0].stderr}"
    container = containers[name]
    expected = fill(expected, places)
    found = {path: dig(container, path) for path in expected}
    found = {path: set(value) if isinstance(expected[path], set) else value for path, value in found.items()}
    assert found == expected


def test_host_gateway_is_the_hosts_address(converged):
    """docker 20.10 and later write the host's address on the default bridge."""
    hosts = docker("exec", "fe-host-gateway", "cat", "/etc/hosts").splitlines()
    addresses = [line.split()[0] for line in hosts if line.split()[1:] == ["gw.local"]]
    assert len(addresses) == 1 and dockerup.is_ip_address(addresses[0]), hosts


def test_privileged(host):
    """Privileged containers cannot start on every machine (a sandboxed engine lacking a
    capability fails with "unable to apply caps"), so this one is only created, from
    the argv dockerup generates: what matters is what the engine recorded."""
    spec = dockerup.Spec({"image": IMAGE, "name": "fe-privileged", "privileged": True}, "x.json", "confdir")
    argv = dockerup.run_argv(spec, labels={"dockerup-test": "1"})
    assert argv[:2] == ["run", "--detach"]
    docker("create", *argv[2:])
    assert host.inspect("fe-privileged")["HostConfig"]["Privileged"] is True


def test_docker_takes_env_values_from_its_environment(host):
    """What dockerup relies on to keep values off command lines: `--env NAME` takes
    the value docker itself was given, even empty, and leaves a NAME it lacks unset."""
    environment = {**os.environ, "FE_PRESENT": "s3cret value", "FE_EMPTY": ""}
    environment.pop("FE_ABSENT", None)
    result = subprocess.run(["docker", "run", "--rm", "--label", "dockerup-test=1", "--env", "FE_PRESENT", "--env",
                             "FE_EMPTY", "--env", "FE_ABSENT", IMAGE, "env"], env=environment, check=True,
                            capture_output=True, text=True)
    assert sorted(line for line in result.stdout.splitlines() if line.startswith("FE_")) == [
        "FE_EMPTY=", "FE_PRESENT=s3cret value"]


def test_health_duration_docker_can_parse(host):
    """The schema allows any positive number of seconds; docker must accept what it is given."""
    host.spec("slow.json", name="fe-slow-health", healthCheck={"command": "true", "interval": 1000000})
    host.converge()
    assert host.inspect("fe-slow-health")["Config"]["Healthcheck"]["Interval"] == 1000000 * NANOSECONDS
