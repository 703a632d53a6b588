"""Properties, with hypothesis: every schema-valid spec translates; a sample of
them, run for real, is what docker inspect reports; invalid documents only ever
give handled, one-line problems; hostile strings reach docker as single argv
items and never run in a shell; env values never reach output.

In CI (CI=true) the examples are derandomized so that a run is reproducible;
elsewhere each run explores new examples."""

import ipaddress
import json
import os
import shlex
import string
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dockerup
from conftest import IMAGE, KEEP_RUNNING, Host
from faults_support import assert_clean_output, changing_commands

SCHEMA = json.loads(dockerup.SCHEMA_TEXTS["container"])
VALIDATOR = dockerup.schema_validator("container")
IN_CI = os.environ.get("CI") == "true"


def examples(count, **kwargs):
    return settings(max_examples=count, deadline=None, derandomize=IN_CI, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large], **kwargs)


# ---- Strategies: schema-valid specs ------------------------------------------------------

# Everything a shell would treat specially, and a sentence that would leave a trace
# on the host if any of it ever ran there.
CANARY = Path(tempfile.gettempdir()) / f"dockerup-injected-{uuid.uuid4().hex[:8]}"
HOSTILE = [f"$(touch {CANARY})", f"`touch {CANARY}`", f"; touch {CANARY}", f"' ; touch {CANARY} ; '",
           f'" ; touch {CANARY} ; "', f"\ntouch {CANARY}\n", f"| touch {CANARY}", f"&& touch {CANARY}",
           "$HOME", "${PATH}", "a b", "*", "~", "!!", "\\", "'", '"', "#", "--", "-e", "=", "%s", "\t"]
NASTY_ALPHABET = string.ascii_letters + string.digits + " '\"$`;()|&<>*?~!#\\{}[]\n\t=-_./%"
nasty = st.one_of(st.sampled_from(HOSTILE), st.text(NASTY_ALPHABET, max_size=24),
                  st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12))

names = st.from_regex(r"\A[a-zA-Z0-9][a-zA-Z0-9_.-]{1,30}\Z")
ports = st.integers(1, 65535)
ip_addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
host_names = st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9.-]{0,30}[a-zA-Z0-9])?\Z")
domains = st.from_regex(r"\A[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,10}){0,3}\Z")
path_parts = st.text(NASTY_ALPHABET.replace(":", "").replace(",", "").replace("/", ""), min_size=1, max_size=10)
paths = st.lists(path_parts.filter(lambda p: p not in (".", "..")), min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts))
sizes = st.integers(6, 8192).map(lambda n: f"{n}m") | st.integers(1, 8).map(lambda n: f"{n}g")
seconds = st.one_of(st.integers(1, 3600), st.floats(0.001, 1e6, allow_nan=False, allow_infinity=False))
env_keys = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="=\0"), min_size=1, max_size=12)
env_values = st.one_of(nasty, st.integers(-10**12, 10**12), st.booleans(),
                       st.floats(allow_nan=False, allow_infinity=False))
argv = st.lists(nasty, min_size=1, max_size=4)
label_keys = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0="), min_size=1,
                     max_size=12).filter(lambda k: not k.startswith("dockerup."))


@st.composite
def port_mappings(draw):
    mappings, used = [], set()
    for container_port in draw(st.lists(ports, max_size=3, unique=True)):
        mapping = {"containerPort": draw(st.sampled_from([container_port, str(container_port)]))}
        protocol = draw(st.sampled_from([None, "tcp", "udp"]))
        if protocol:
            mapping["protocol"] = protocol
        if draw(st.booleans()):
            host_port = draw(ports)
            if (host_port, protocol or "tcp") not in used:
                used.add((host_port, protocol or "tcp"))
                mapping["hostPort"] = host_port
        if draw(st.booleans()):
            mapping["hostIp"] = draw(ip_addresses)
        mappings.append(mapping)
    return mappings


@st.composite
def volumes(draw):
    volume = {"containerPath": draw(paths)}
    if draw(st.booleans()):
        volume["hostPath"] = draw(paths)
        if draw(st.booleans()):
            volume["mode"] = draw(st.sampled_from(["ro", "rw"]))
    return volume


@st.composite
def health_checks(draw):
    check = {"command": draw(st.one_of(
        nasty.filter(str.strip), st.just(["NONE"]),
        st.tuples(st.sampled_from(["CMD", "CMD-SHELL"]), argv).map(lambda t: [t[0], *t[1]])))}
    for key in ("interval", "timeout", "startPeriod"):
        if draw(st.booleans()):
            check[key] = draw(seconds)
    if draw(st.booleans()):
        check["retries"] = draw(st.integers(1, 100))
    return check


@st.composite
def ulimits(draw):
    name = draw(st.sampled_from(SCHEMA["properties"]["ulimits"]["items"]["properties"]["name"]["enum"]))
    hard = draw(st.integers(-1, 10**6))
    soft = draw(st.integers(0, hard) if hard >= 0 else st.integers(-1, 10**6))
    return {"name": name, "softLimit": soft, "hardLimit": hard}


# Every schema field, each with a strategy for its valid values. Links and
# references to other containers are valid only with those declared: added below.
FIELDS = {
    "type": st.just("docker"),
    "cpu": st.integers(2, 262144),
    "memory": sizes,
    "entrypoint": st.one_of(argv, argv.map(shlex.join)),
    "command": st.one_of(argv, argv.map(shlex.join)),
    "privileged": st.booleans(),
    "network": st.sampled_from(["bridge", "none", "host"]),
    "volumes": st.lists(volumes(), max_size=3),
    "portMappings": port_mappings(),
    "env": st.dictionaries(env_keys, env_values, max_size=5),
    "restart": st.sampled_from(["always", "unless-stopped", "on-failure", "never"]),
    "update": st.fixed_dictionaries({}, optional={"pull": st.booleans(), "eager": st.booleans()}),
    "signal": st.lists(st.fixed_dictionaries({"container": names, "signal": st.from_regex(r"\A(SIG)?[A-Z0-9]{1,8}\Z")}),
                       max_size=2),
    "dockerLabels": st.dictionaries(label_keys, nasty, max_size=4),
    "hostname": host_names,
    "user": st.from_regex(r"\A[a-z0-9_$`;'\"()]{1,12}(:[a-z0-9_]{1,8})?\Z"),
    "workingDirectory": paths,
    "extraHosts": st.lists(st.fixed_dictionaries({"hostname": host_names, "ipAddress": ip_addresses}), max_size=3),
    "dnsServers": st.lists(ip_addresses, max_size=3),
    "dnsSearchDomains": st.lists(domains, max_size=3),
    "logConfiguration": st.fixed_dictionaries(
        {"logDriver": st.sampled_from(["json-file", "local", "none", "syslog", "journald"])},
        optional={"options": st.dictionaries(st.sampled_from(["max-size", "max-file", "tag", "mode"]), nasty,
                                             max_size=2)}),
    "healthCheck": health_checks(),
    "stopTimeout": st.integers(0, 3600),
    "ulimits": st.lists(ulimits(), max_size=3, unique_by=lambda u: u["name"]),
    "readonlyRootFilesystem": st.booleans(),
    "linuxParameters": st.fixed_dictionaries({}, optional={
        "capabilities": st.fixed_dictionaries({}, optional={
            "add": st.lists(st.sampled_from(["NET_ADMIN", "SYS_PTRACE", "ALL"]), max_size=2),
            "drop": st.lists(st.sampled_from(["MKNOD", "CHOWN"]), max_size=2)}),
        "devices": st.lists(st.fixed_dictionaries({"hostPath": paths}, optional={
            "containerPath": paths, "permissions": st.lists(st.sampled_from(["read", "write", "mknod"]), max_size=3,
                                                            unique=True)}), max_size=2),
        "initProcessEnabled": st.booleans(), "sharedMemorySize": st.integers(1, 1024),
        "tmpfs": st.lists(st.fixed_dictionaries({"containerPath": paths, "size": st.integers(1, 512)}, optional={
            "mountOptions": st.lists(st.sampled_from(["noexec", "nosuid", "mode=1777"]), max_size=2)}), max_size=2)}),
    "systemControls": st.lists(st.fixed_dictionaries({"namespace": st.sampled_from(["net.core.somaxconn",
                                                                                     "kernel.msgmax"]),
                                                      "value": nasty}), max_size=2),
    "dockerSecurityOptions": st.lists(st.sampled_from(["no-new-privileges", "apparmor:unconfined", "label=disable",
                                                       "seccomp:unconfined"]), max_size=3),
    "pseudoTerminal": st.booleans(),
    "interactive": st.booleans(),
    "pidMode": st.just("host"),
    "ipcMode": st.sampled_from(["host", "none", "private", "shareable"]),
    "essential": st.booleans(),
    "startTimeout": st.integers(1, 86400),
}
LATER = {"name", "image", "memoryReservation", "links", "dependsOn"}  # drawn in valid_specs: they depend on others


def test_the_strategies_cover_every_schema_field():
    """ECS's spellings are rewritten into these fields as specs load (tests/test_ecs.py)."""
    assert sorted(set(FIELDS) | LATER | set(dockerup.ECS_REWRITTEN)) == sorted(SCHEMA["properties"])


@st.composite
def valid_specs(draw, fields=FIELDS):
    doc = {"image": draw(st.sampled_from([IMAGE, "app:1", "registry.example.com:5000/team/app@sha256:" + "a" * 64]))}
    if draw(st.booleans()):
        doc["name"] = draw(names)
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)))
    for key in chosen:
        doc[key] = draw(fields[key])
    if "memory" in doc and draw(st.booleans()):
        doc["memoryReservation"] = f"{draw(st.integers(6, dockerup.parse_size(doc['memory']) >> 20))}m"
    if doc.get("network", "bridge") != "bridge":
        doc.pop("portMappings", None)
    if doc.get("network") == "host" or "name" not in doc:
        return doc
    if draw(st.booleans()):
        targets = draw(st.lists(names.filter(lambda n: n != doc["name"]), min_size=1, max_size=2, unique=True))
        doc["links"] = draw(st.sampled_from([targets, {t: "alias" for t in targets}]))
    if draw(st.booleans()):
        targets = draw(st.lists(names.filter(lambda n: n != doc["name"]), min_size=1, max_size=2, unique=True))
        doc["dependsOn"] = [{"containerName": t, "condition": draw(st.sampled_from(["START", "HEALTHY", "COMPLETE",
                                                                                     "SUCCESS"]))} for t in targets]
    return doc


def shell_words(line):
    """The words bash makes of a command line, as a list."""
    result = subprocess.run(["bash", "-c", f"printf '%s\\0' {line}"], capture_output=True, check=True)
    return result.stdout.decode().split("\0")[:-1]


def spec_of(doc, where="web.json"):
    return dockerup.Spec(doc, where, dockerup.SOURCE_CONFDIR, identity=doc.get("name") or "image:x")


# ---- Translation -----------------------------------------------------------------------------

@examples(400)
@given(valid_specs())
def test_every_valid_spec_translates_to_an_argv_the_log_shows_exactly(doc):
    assert list(VALIDATOR.iter_errors(doc)) == [], "the strategy made an invalid spec"
    spec = spec_of(doc)
    assert dockerup.check_spec(spec) == []
    argv = dockerup.run_argv(spec, labels=dockerup.spec_labels(spec))
    assert all(isinstance(item, str) and "\0" not in item for item in argv)
    # Everything after the image is the container's argv, item for item.
    image_at = len(argv) - len(dockerup.container_arguments(doc)) - 1
    assert argv[image_at] == doc["image"]
    words = dockerup.split_argv(doc.get("entrypoint"))[1:] + dockerup.split_argv(doc.get("command"))
    assert argv[image_at + 1:] == words
    # The logged command line is one line, and pasted into a shell it is exactly this argv.
    line = dockerup.display_command(["docker", *argv], show_secrets=True)
    assert "\n" not in line and shell_words(line) == ["docker", *argv]
    # A second translation of the same spec is the same container.
    assert dockerup.fingerprint(json.loads(json.dumps(doc))) == dockerup.fingerprint(doc)


@examples(300)
@given(valid_specs(), st.data())
def test_hostile_strings_reach_docker_as_single_items(doc, data):
    value, arg = data.draw(nasty, "env value"), data.draw(nasty, "command argument")
    doc = {**doc, "env": {**doc.get("env", {}), "HOSTILE": value}, "command": ["echo", arg, value]}
    doc.pop("entrypoint", None)
    spec = spec_of(doc)
    argv, environment = dockerup.run_argv(spec), dockerup.run_environment(spec)
    assert environment["HOSTILE"] == value and "HOSTILE" in argv
    assert argv[-3:] == ["echo", arg, value]
    shown = shell_words(dockerup.display_command(argv, show_secrets=True, env=environment))
    assert shown == ["env", *(f"{key}={value}" for key, value in sorted(environment.items())), *argv]


@examples(300)
@given(valid_specs(), st.data())
def test_env_values_never_reach_the_displayed_command(doc, data):
    secret = f"S3CRET{uuid.uuid4().hex}" + data.draw(nasty)
    env = {**doc.get("env", {}), "TOKEN": secret, "OTHER": data.draw(env_values)}
    spec = spec_of({**doc, "env": env})
    argv = dockerup.run_argv(spec)
    shown = shell_words(dockerup.display_command(argv, env=dockerup.run_environment(spec)))
    assert "TOKEN" in shown and "OTHER" in shown
    assert not any(secret in item for item in shown)


# ---- Invalid documents ---------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | nasty,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty, inner, max_size=3), max_leaves=12)


@st.composite
def invalid_documents(draw):
    """A valid spec with one thing broken, or any JSON value at all."""
    doc = draw(valid_specs())
    how = draw(st.sampled_from(["replace", "nest", "add", "drop image", "anything"]))
    if how == "anything":
        return draw(json_values)
    if how == "drop image":
        doc.pop("image")
    elif how == "add":
        doc[draw(nasty.filter(lambda k: k not in SCHEMA["properties"]))] = draw(json_values)
    else:
        key = draw(st.sampled_from(sorted(SCHEMA["properties"])))
        value = draw(json_values)
        if how == "nest" and isinstance(doc.get(key), (list, dict)) and doc[key]:
            inner = doc[key]
            slot = draw(st.sampled_from(list(range(len(inner))) if isinstance(inner, list) else sorted(inner)))
            inner[slot] = value
        else:
            doc[key] = value
    return doc


@examples(400)
@given(invalid_documents())
def test_invalid_documents_only_give_handled_one_line_problems(tmp_path_factory, document):
    confdir = tmp_path_factory.mktemp("confdir")
    (confdir / "web.json").write_text(json.dumps(document))
    declared = dockerup.load_declared(dockerup.default_config(confdir=str(confdir)))
    schema_valid = isinstance(document, dict) and not list(VALIDATOR.iter_errors(document))
    if not schema_valid:
        assert declared.problems and not declared.specs
    for problem in declared.problems:
        line = str(problem)
        assert line.startswith(f"{confdir}/web.json: ") and "\n" not in line and "\r" not in line, line


@examples(3)
@given(st.lists(invalid_documents().filter(lambda d: not isinstance(d, dict) or list(VALIDATOR.iter_errors(d))),
                min_size=20, max_size=20))
def test_invalid_documents_through_the_command_line(tmp_path_factory, documents):
    """The same kind of documents through `dockerup validate`: exit 1, a line for each file."""
    tmp_path = tmp_path_factory.mktemp("cli")
    confdir = tmp_path / "containers.d"
    confdir.mkdir()
    for index, document in enumerate(documents):
        (confdir / f"bad-{index}.json").write_text(json.dumps(document))
    config = tmp_path / "dockerup.conf"
    config.write_text(f"confdir={confdir}\n")
    result = subprocess.run([sys.executable, str(dockerup.__file__), "validate", "--config", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    named = {line.split(": ")[0] for line in result.stdout.splitlines()}
    assert named == {f"{confdir}/bad-{index}.json" for index in range(len(documents))}


# ---- A sample, run for real ------------------------------------------------------------------

RUNNABLE = {
    **{key: FIELDS[key] for key in ("cpu", "restart", "stopTimeout", "readonlyRootFilesystem", "dnsServers",
                                    "dnsSearchDomains", "extraHosts", "hostname", "update")},
    "memory": st.integers(16, 512).map(lambda n: f"{n}m"),
    "env": st.dictionaries(st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,8}\Z"), env_values, max_size=4),
    "dockerLabels": st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9.-]{0,8}\Z").filter(
        lambda k: not k.startswith("dockerup.")), nasty, max_size=3),
    "network": st.sampled_from(["bridge", "none", "host"]),
    "user": st.sampled_from(["root", "0", "0:0", "nobody", "65534:65534"]),
    "workingDirectory": paths,
    # Loopback only: docker's choice of a free host port does not look at what
    # else listens on the machine's other addresses.
    "portMappings": st.lists(st.fixed_dictionaries({"containerPort": ports, "hostIp": st.just("127.0.0.1")},
                                                   optional={"protocol": st.sampled_from(["tcp", "udp"])}),
                             max_size=2, unique_by=lambda m: (m["containerPort"], m.get("protocol", "tcp"))),
    "volumes": st.lists(st.fixed_dictionaries({"containerPath": paths}), max_size=2,
                        unique_by=lambda v: v["containerPath"]),
    "logConfiguration": st.sampled_from([{"logDriver": "json-file", "options": {"max-size": "1m"}},
                                         {"logDriver": "local"}, {"logDriver": "none"}]),
    "healthCheck": st.fixed_dictionaries({"command": st.sampled_from(["true", ["CMD", "true"], ["NONE"]])},
                                         optional={"interval": st.integers(1, 600), "retries": st.integers(1, 10)}),
    "ulimits": st.lists(st.fixed_dictionaries({"name": st.just("nofile"), "softLimit": st.integers(64, 1024),
                                               "hardLimit": st.just(1024)}), max_size=1),
}


@st.composite
def runnable_specs(draw):
    doc = draw(valid_specs(RUNNABLE))
    doc["image"] = IMAGE
    doc["name"] = "prop-" + draw(st.from_regex(r"\A[a-z0-9]{6}\Z"))
    doc["command"] = ["sh", "-c", KEEP_RUNNING]
    doc.pop("links", None)  # one spec alone: nothing to link to or wait for
    doc.pop("dependsOn", None)
    doc.pop("memoryReservation", None)
    if doc.get("network", "bridge") != "bridge":
        doc.pop("portMappings", None)
    return doc


# spec field, where docker inspect shows it, and how the spec's value looks there
def docker_dns(servers):
    """--dns as docker keeps it: Go writes an IPv4-mapped IPv6 address as IPv4 (::ffff:0:0 -> 0.0.0.0)."""
    def one(text):
        address = ipaddress.ip_address(text)
        return str(getattr(address, "ipv4_mapped", None) or address)
    return [one(server) for server in servers]


INSPECTED = [
    ("hostname", "Config.Hostname", str), ("user", "Config.User", str),
    ("workingDirectory", "Config.WorkingDir", str), ("stopTimeout", "Config.StopTimeout", int),
    ("cpu", "HostConfig.CpuShares", int), ("network", "HostConfig.NetworkMode", str),
    ("readonlyRootFilesystem", "HostConfig.ReadonlyRootfs", bool), ("memory", "HostConfig.Memory", dockerup.parse_size),
    ("dnsServers", "HostConfig.Dns", docker_dns), ("dnsSearchDomains", "HostConfig.DnsSearch", list),
    ("restart", "HostConfig.RestartPolicy.Name", dockerup.RESTART_POLICIES.get),
]


def expected_inspect(doc):
    """The inspect values (path -> value) the spec asks for."""
    config = {}
    if "env" in doc:
        config["Env"] = {f"{k}={dockerup.env_text(v)}" for k, v in doc["env"].items()}
    for key, path, convert in INSPECTED:
        if key in doc:
            config[path] = convert(doc[key])
    if "dockerLabels" in doc:
        config["Labels"] = set(f"{k}={v}" for k, v in doc["dockerLabels"].items())
    if doc.get("extraHosts"):
        config["HostConfig.ExtraHosts"] = [f"{h['hostname']}:{h['ipAddress']}" for h in doc["extraHosts"]]
    if doc.get("portMappings"):
        config["HostConfig.PortBindings"] = {
            f"{m['containerPort']}/{m.get('protocol', 'tcp')}": [{"HostIp": m.get("hostIp", ""), "HostPort": ""}]
            for m in doc["portMappings"]}
    if doc.get("volumes"):
        config["Volumes"] = {v["containerPath"] for v in doc["volumes"]}
    if "logConfiguration" in doc:
        config["HostConfig.LogConfig"] = {"Type": doc["logConfiguration"]["logDriver"],
                                          "Config": doc["logConfiguration"].get("options", {})}
    if "healthCheck" in doc:
        command = dockerup.health_command(doc["healthCheck"])
        config["Healthcheck.Test"] = ["NONE"] if command is None else ["CMD-SHELL", command]
    if doc.get("ulimits"):
        config["HostConfig.Ulimits"] = [{"Name": u["name"], "Soft": u["softLimit"], "Hard": u["hardLimit"]}
                                        for u in doc["ulimits"]]
    config["Config.Cmd"] = doc["command"]
    return config


def actual_inspect(container, expected):
    found = {}
    for path in expected:
        if path == "Env":
            found[path] = set(container["Config"]["Env"] or []) & expected[path]
        elif path == "Labels":
            found[path] = {f"{k}={v}" for k, v in (container["Config"]["Labels"] or {}).items()} & expected[path]
        elif path == "Volumes":
            found[path] = set(container["Config"]["Volumes"] or {})
        elif path == "Healthcheck.Test":
            found[path] = (container["Config"].get("Healthcheck") or {}).get("Test")
        else:
            value = container
            for part in path.split("."):
                value = value[part]
            found[path] = value
    return found


@examples(12)
@given(runnable_specs())
def test_a_sample_of_valid_specs_runs_as_declared(engine, tmp_path_factory, doc):
    host = Host(tmp_path_factory.mktemp("prop"))
    doc = {**doc, "name": host.name(doc["name"])}  # derandomized runs side by side draw the same names
    (host.confdir / "spec.json").write_text(json.dumps(doc))
    try:
        first = host.run()
        # (Whether each log line stays one line is test_a_newline_in_a_value_keeps_one_line_per_command's.)
        assert "Traceback" not in first.stderr and "internal error" not in first.stderr
        assert first.returncode == 0, first.stderr
        container = host.inspect(doc["name"])
        assert container["State"]["Running"]
        expected = expected_inspect(doc)
        assert actual_inspect(container, expected) == expected
        second = host.run()
        assert second.returncode == 0 and changing_commands(second.stderr) == [], second.stderr
    finally:
        host.remove_containers()
    assert not CANARY.exists()


# ---- Shell injection and secrets, end to end -----------------------------------------------

def hostile_spec(tmp_path, name):
    mounted = tmp_path / "a b'c\"d;$(x)`y`"
    mounted.mkdir()
    return {
        "name": name, "image": IMAGE,
        "env": {f"V{index}": value for index, value in enumerate(HOSTILE)},
        "dockerLabels": {f"l{index}": value for index, value in enumerate(HOSTILE)},
        "command": ["sh", "-c", KEEP_RUNNING, *HOSTILE],
        "workingDirectory": f"/srv/$(touch {CANARY})/`x` y",
        "volumes": [{"containerPath": "/data/a b;$(touch x)", "hostPath": str(mounted)}],
        "healthCheck": {"command": ["CMD", "test", "!", "-e", f"$(touch {CANARY})"]},
        "logConfiguration": {"logDriver": "json-file", "options": {"tag": f"$(touch {CANARY})"}},
    }


def test_hostile_strings_arrive_intact_and_nothing_runs_on_the_host(host, tmp_path):
    doc = hostile_spec(tmp_path, host.name("hostile"))
    (host.confdir / "hostile.json").write_text(json.dumps(doc))
    host.converge()
    container = host.inspect(doc["name"])
    assert container["Config"]["Cmd"] == doc["command"]
    assert set(container["Config"]["Env"]) >= {f"V{i}={v}" for i, v in enumerate(HOSTILE)}
    assert {k: container["Config"]["Labels"][k] for k in doc["dockerLabels"]} == doc["dockerLabels"]
    assert container["Config"]["WorkingDir"] == doc["workingDirectory"]
    assert container["HostConfig"]["Binds"] == [f"{doc['volumes'][0]['hostPath']}:{doc['volumes'][0]['containerPath']}"]
    assert container["HostConfig"]["LogConfig"]["Config"] == doc["logConfiguration"]["options"]
    assert not CANARY.exists()


def test_a_newline_in_a_value_keeps_one_line_per_command(host, tmp_path):
    """Logs are read line by line (syslog, journald, grep): a value holding a
    newline must not split a logged command, or forge a line of its own."""
    forged = "a\n2030-01-01 00:00:00 dockerup ERROR forged"
    doc = {"name": host.name("newline"), "image": IMAGE, "dockerLabels": {"note": forged},
           "workingDirectory": "/srv/a\nb", "command": ["sh", "-c", KEEP_RUNNING, "x\ny"]}
    (host.confdir / "newline.json").write_text(json.dumps(doc))
    dry = host.run("--dry-run")
    assert dry.returncode == 0
    assert len(dry.stdout.splitlines()) == 1 and dry.stdout.startswith("docker ")
    result = host.converge()
    assert_clean_output(result)
    assert not any(line.endswith(" ERROR forged") for line in result.stderr.splitlines())
    assert host.inspect(doc["name"])["Config"]["Labels"]["note"] == doc["dockerLabels"]["note"]


def test_dry_run_lines_of_hostile_specs_run_in_a_shell_as_dockerup_would(host, tmp_path):
    doc = hostile_spec(tmp_path, host.name("hostile"))
    (host.confdir / "hostile.json").write_text(json.dumps(doc))
    printed = host.run("--dry-run", "--show-secrets")
    assert printed.returncode == 0, printed.stderr
    subprocess.run(["bash", "-c", printed.stdout], check=True, capture_output=True)
    assert not CANARY.exists()
    # What the pasted lines made is exactly what dockerup makes: nothing to do.
    assert changing_commands(host.converge().stderr) == []


SECRET = "hunter2-" + uuid.uuid4().hex


def secret_outputs(host):
    """Everything dockerup prints in the runs a secret goes through."""
    path = host.confdir / "web.json"
    spec = {"name": host.name("secret"), "image": IMAGE, "env": {"TOKEN": SECRET, "N": 1}}
    path.write_text(json.dumps(spec))
    yield host.run("--dry-run", "-v")
    yield host.run("-v")
    path.write_text(json.dumps({**spec, "env": {"TOKEN": SECRET, "N": 2}}))  # a replace
    yield host.run("-v")
    # A replacement that fails, so its error and the put-back are logged too.
    path.write_text(json.dumps({**spec, "env": {"TOKEN": SECRET, "N": 3}, "command": ["false"]}))
    yield host.run("-v")
    path.unlink()
    yield host.run("-v")  # a removal


def test_secrets_never_reach_any_output(host):
    for result in secret_outputs(host):
        assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("env", [
    pytest.param({"TOKEN": [SECRET]}, id="an array"),
    pytest.param({"TOKEN": {"value": SECRET}}, id="an object"),
    pytest.param({"TOKEN": None, "PASSWORD": [SECRET, 1]}, id="mixed"),
])
def test_a_mistyped_env_value_is_not_printed_in_its_error(host, env):
    """A validation error must not quote a secret that was given the wrong type."""
    (host.confdir / "web.json").write_text(json.dumps({"name": host.name("secret"), "image": IMAGE, "env": env}))
    for result in (host.run(), host.run("validate"), host.run("--dry-run")):
        assert result.returncode == 1
        assert "env." in result.stdout + result.stderr
        assert SECRET not in result.stdout + result.stderr
