"""ECS both ways, without an engine: ECS spellings and task definitions load into the one
form dockerup plans with; every refused ECS field gives its line; dependsOn and essential
reach the plan and the executor; the exports fit ECS's own API model (botocore's) and
load back into the same containers. tests/test_ecs_engine.py runs them for real."""

import json
import re
import subprocess
import sys

import botocore.session
import pytest
from botocore.validate import ParamValidator

import dockerup
from conftest import DOCKERUP, ROOT, write_files
from dockerup import (Await, Container, CreateContainer, Declared, HostState, Images, Memory, ReplaceContainer,
                      StartContainer)

IMAGE = "registry.example.com/app:1.4"
IMAGE_ID = "sha256:" + "a" * 64
ECS = botocore.session.get_session().get_service_model("ecs")
REGISTER_INPUT = ECS.operation_model("RegisterTaskDefinition").input_shape


def fail(path, message):
    raise AssertionError(f"{path}: {message}")


def normalized(doc):
    return dockerup.normalize_container({"image": IMAGE, **doc}, None, fail)[0]


def load(tmp_path, files, directory="containers.d"):
    """load_declared over a confdir of these files: (specs by name, problem lines)."""
    confdir = tmp_path / directory
    confdir.mkdir(exist_ok=True)
    write_files(confdir, files)
    declared = dockerup.load_declared(dockerup.default_config(confdir=str(confdir)))
    lines = [str(problem).replace(str(confdir), "<dir>") for problem in declared.problems]
    return {spec.label: spec for spec in declared.specs}, lines


def validate(tmp_path, files):
    """`dockerup validate` over a confdir of these files: (exit code, stdout lines)."""
    confdir = tmp_path / "containers.d"
    confdir.mkdir(exist_ok=True)
    write_files(confdir, files)
    config = tmp_path / "dockerup.conf"
    config.write_text(f"confdir={confdir}\ncache={tmp_path / 'cache'}\n")
    result = subprocess.run([sys.executable, str(DOCKERUP), "validate", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout.replace(str(confdir), "<dir>").splitlines()


# ---- One form: an ECS spelling is the dockerup spelling it stands for ---------------------

SPELLINGS = [
    pytest.param({"environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}, {"name": "E"}]},
                 {"env": {"A": "1", "B": "2", "E": ""}}, id="environment"),
    pytest.param({"entryPoint": ["/bin/sh", "-c"], "command": ["echo hi"]},
                 {"entrypoint": "/bin/sh -c", "command": "'echo hi'"}, id="entryPoint"),
    pytest.param({"memory": 512, "memoryReservation": 256}, {"memory": "512m", "memoryReservation": "256m"},
                 id="memory-in-MiB"),
    pytest.param({"memory": 1024}, {"memory": "1g"}, id="memory-compared-in-bytes"),
    pytest.param({"cpu": 0}, {}, id="cpu-0-is-docker's-default"),
    pytest.param({"volumesFrom": [{"sourceContainer": "store", "readOnly": True}, {"sourceContainer": "logs"}]},
                 {"volumes": [{"from": "store", "mode": "ro"}, {"from": "logs"}]}, id="volumesFrom"),
    pytest.param({"restartPolicy": {"enabled": True}}, {"restart": "always"}, id="restartPolicy-enabled"),
    pytest.param({"restartPolicy": {"enabled": True, "ignoredExitCodes": [0], "restartAttemptPeriod": 60}},
                 {"restart": "on-failure"}, id="restartPolicy-on-failure"),
    pytest.param({"restartPolicy": {"enabled": False}}, {"restart": "never"}, id="restartPolicy-disabled"),
    pytest.param({"disableNetworking": True}, {"network": "none"}, id="disableNetworking"),
    pytest.param({"disableNetworking": False}, {}, id="disableNetworking-false"),
    pytest.param({"healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5}},
                 {"healthCheck": {"command": "true", "interval": 5}}, id="healthCheck-CMD-SHELL"),
    pytest.param({"dockerSecurityOptions": ["apparmor:unconfined", "no-new-privileges"]},
                 {"dockerSecurityOptions": ["no-new-privileges", "apparmor=unconfined"]}, id="security-option-colon"),
    pytest.param({"portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp", "name": "web-80-tcp",
                                    "appProtocol": "http"}]},
                 {"portMappings": [{"containerPort": "80", "hostPort": "8080"}]}, id="portMappings-service-connect"),
    # What the ECS console writes for fields left unused asks for nothing.
    pytest.param({"environmentFiles": [], "secrets": [], "mountPoints": [], "volumesFrom": [], "ulimits": [],
                  "systemControls": [], "versionConsistency": "disabled", "repositoryCredentials": {},
                  "resourceRequirements": [], "firelensConfiguration": None, "credentialSpecs": [],
                  "linuxParameters": {"maxSwap": None, "swappiness": None}, "essential": True},
                 {}, id="console-empties"),
]


@pytest.mark.parametrize("ecs, spelled", SPELLINGS)
def test_an_ecs_spelling_makes_the_same_container(ecs, spelled):
    as_ecs, as_dockerup = normalized(ecs), normalized(spelled)
    assert dockerup.fingerprint(as_ecs) == dockerup.fingerprint(as_dockerup)
    assert dockerup.resource_settings(as_ecs) == dockerup.resource_settings(as_dockerup)
    argv = [dockerup.run_argv(dockerup.Spec(doc, "x.json", "confdir")) for doc in (as_ecs, as_dockerup)]
    assert docker_view(argv[0]) == docker_view(argv[1])


def docker_view(argv):
    """What docker makes of an argv, as far as these cases go: flags in any order, sizes in bytes."""
    sizes = [dockerup.parse_size(word) if argv[index - 1].startswith("--memory") else word
             for index, word in enumerate(argv)]
    return sorted(map(str, sizes))


@pytest.mark.parametrize("ecs, spelled", SPELLINGS)
def test_a_spelled_spec_is_a_valid_spec(ecs, spelled):
    """Normalization gives a spec the container schema accepts, in dockerup's fields only."""
    doc = normalized(ecs)
    assert list(dockerup.schema_validator("container").iter_errors(doc)) == []
    assert not set(doc) & set(dockerup.ECS_REWRITTEN)


@pytest.mark.parametrize("ecs, field", sorted(dockerup.ECS_SPELLINGS.items()))
def test_both_spellings_of_one_setting_is_an_error(tmp_path, ecs, field):
    values = {"environment": [], "entryPoint": ["sh"], "mountPoints": [], "volumesFrom": [],
              "restartPolicy": {"enabled": True}, "disableNetworking": True, "env": {}, "entrypoint": "sh",
              "volumes": [], "restart": "always", "network": "none"}
    _, lines = load(tmp_path, {"web.json": {"image": IMAGE, ecs: values[ecs], field: values[field]}})
    assert lines == [f"<dir>/web.json: {ecs}: {field!r} says the same in dockerup's spelling; give one of the two"]


def test_ecs_spellings_are_reported_where_they_are_written(tmp_path):
    """A problem found after normalization names the field as the file spells it."""
    _, lines = load(tmp_path, {"web.json": {"image": IMAGE, "name": "web",
                                            "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "x\0"}],
                                            "volumesFrom": [{"sourceContainer": "web"}]}})
    assert lines == ["<dir>/web.json: environment[1]: contains a NUL character, which no command line can carry"]
    _, lines = load(tmp_path, {"web.json": {"image": IMAGE, "name": "web", "volumesFrom": [{"sourceContainer": "web"}]}})
    assert lines == ["<dir>/web.json: volumesFrom[0].sourceContainer: a container cannot take volumes from itself"]


@pytest.mark.parametrize("doc, line", [
    ({"environment": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
     'environment[1].name: "A" is set twice (also in environment[0])'),
    ({"mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]},
     'mountPoints[0].sourceVolume: "data" names no volume of the task: a spec outside a task definition has none '
     '(use volumes)'),
    ({"cpu": 1}, "cpu: 1 is below docker's minimum of 2; 0 (or no cpu) means docker's default"),
    ({"memory": 4}, "memory: 4 is less than the minimum of 6"),
    ({"volumes": [{"containerPath": "/d", "hostPath": "/h", "volume": "v1"}]},
     "volumes[0]: give hostPath (a host directory) or volume (a named volume), not both"),
])
def test_ecs_spellings_checked(tmp_path, doc, line):
    _, lines = load(tmp_path, {"web.json": {"image": IMAGE, **doc}})
    assert lines == [f"<dir>/web.json: {line}"]


# ---- Task definitions -------------------------------------------------------------------------

def task(family="shop", **body):
    body.setdefault("containerDefinitions", [
        {"name": "db", "image": IMAGE, "healthCheck": {"command": ["CMD-SHELL", "true"]}},
        {"name": "web", "image": IMAGE, "links": ["db"], "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}],
         "environment": [{"name": "DB", "value": "db"}],
         "mountPoints": [{"sourceVolume": "uploads", "containerPath": "/uploads", "readOnly": True},
                         {"sourceVolume": "cache", "containerPath": "/cache"},
                         {"sourceVolume": "shared", "containerPath": "/shared"}]}])
    body.setdefault("volumes", [{"name": "uploads", "host": {"sourcePath": "/srv/uploads"}}, {"name": "cache", "host": {}},
                                {"name": "shared", "dockerVolumeConfiguration": {"scope": "shared",
                                                                                 "autoprovision": True}}])
    return {"family": family, **body} if family else body


def describe_output(definition):
    """What `aws ecs describe-task-definition` prints for a registered definition."""
    return {"taskDefinition": {
        "taskDefinitionArn": f"arn:aws:ecs:eu-west-1:123456789012:task-definition/{definition['family']}:7",
        **definition, "revision": 7, "status": "ACTIVE", "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.29"}],
        "placementConstraints": [], "compatibilities": ["EXTERNAL", "EC2"], "requiresCompatibilities": ["EC2"],
        "registeredAt": "2026-11-20T10:00:00.000000+00:00", "registeredBy": "arn:aws:iam::123456789012:user/ops"},
        "tags": [{"key": "team", "value": "shop"}]}


def test_a_task_declares_each_container_in_dockerup_spelling(tmp_path):
    specs, lines = load(tmp_path, {"shop.json": task()})
    assert lines == []
    assert list(specs) == ["db", "web"]
    web = specs["web"]
    assert web.doc == {"name": "web", "image": IMAGE, "links": ["db"],
                       "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}], "env": {"DB": "db"},
                       "volumes": [{"containerPath": "/uploads", "hostPath": "/srv/uploads", "mode": "ro"},
                                   {"containerPath": "/cache", "volume": "shop_cache"},
                                   {"containerPath": "/shared", "volume": "shared"}]}
    assert (web.identity, web.task, web.task_essentials, web.path) == ("web", "shop", ("db", "web"),
                                                                       "containerDefinitions[1]")


def test_describe_task_definition_output_declares_the_same_containers(tmp_path):
    plain, _ = load(tmp_path, {"shop.json": task()}, "plain")
    described, lines = load(tmp_path, {"shop.json": describe_output(task())}, "described")
    assert lines == []
    assert {name: spec.doc for name, spec in described.items()} == {name: spec.doc for name, spec in plain.items()}
    assert described["web"].path == "taskDefinition.containerDefinitions[1]"


def test_without_a_family_the_task_is_named_after_its_file(tmp_path):
    specs, _ = load(tmp_path, {"my.shop.json": task(family=None)})
    assert specs["web"].task == "my-shop"
    assert {"containerPath": "/cache", "volume": "my-shop_cache"} in specs["web"].doc["volumes"]


@pytest.mark.parametrize("mode", ["bridge", "host", "none"])
def test_network_mode_applies_to_every_container(tmp_path, mode):
    definitions = [{"name": "a1", "image": IMAGE}, {"name": "b1", "image": IMAGE}]
    specs, lines = load(tmp_path, {"t.json": {"networkMode": mode, "containerDefinitions": definitions}})
    assert lines == [] and {spec.doc["network"] for spec in specs.values()} == {mode}


def test_task_namespaces_are_the_first_essential_container_s(tmp_path):
    definitions = [{"name": "job", "image": IMAGE, "essential": False},
                   {"name": "app", "image": IMAGE, "dependsOn": [{"containerName": "job", "condition": "SUCCESS"}]},
                   {"name": "main", "image": IMAGE}, {"name": "side", "image": IMAGE}]
    specs, lines = load(tmp_path, {"t.json": {"pidMode": "task", "ipcMode": "task", "containerDefinitions": definitions}})
    assert lines == []
    assert {name: (spec.doc.get("pidMode"), spec.doc.get("ipcMode")) for name, spec in specs.items()} == {
        "job": ("container:main", "container:main"), "app": ("container:main", "container:main"),
        "main": (None, "shareable"), "side": ("container:main", "container:main")}
    assert specs["side"].attachments == ["main"] and specs["side"].shared_namespaces == ["main", "main"]


def test_essential_containers_come_first_as_far_as_depends_on_allows(tmp_path):
    definitions = [{"name": "job", "image": IMAGE, "essential": False},
                   {"name": "web", "image": IMAGE, "dependsOn": [{"containerName": "db", "condition": "START"}]},
                   {"name": "db", "image": IMAGE}]
    specs, _ = load(tmp_path, {"t.json": {"containerDefinitions": definitions}})
    assert list(specs) == ["db", "web", "job"]


TASK_PROBLEMS = [
    pytest.param({"containerDefinitions": [{"name": "web", "image": IMAGE, "essential": False}]},
                 "containerDefinitions: no container is essential; a task needs at least one (essential is true "
                 "unless it says false)", id="no essential container"),
    pytest.param({"containerDefinitions": [{"image": IMAGE}]},
                 "containerDefinitions[0]: missing required field 'name'", id="unnamed container"),
    pytest.param({"containerDefinitions": [{"name": "web", "image": IMAGE,
                                            "mountPoints": [{"sourceVolume": "nope", "containerPath": "/d"}]}]},
                 'containerDefinitions[0].mountPoints[0].sourceVolume: "nope" names no volume of the task',
                 id="unknown volume"),
    pytest.param({"networkMode": "host", "containerDefinitions": [{"name": "web", "image": IMAGE, "network": "none"}]},
                 "containerDefinitions[0].network: the task's networkMode sets this for every container; remove one "
                 "of the two", id="network twice"),
    pytest.param({"volumes": [{"name": "v", "host": {}}, {"name": "v"}],
                  "containerDefinitions": [{"name": "web", "image": IMAGE}]},
                 'volumes[1].name: "v" is also the name of an earlier volume', id="volume twice"),
    pytest.param({"volumes": [{"name": "v", "host": {}, "dockerVolumeConfiguration": {}}],
                  "containerDefinitions": [{"name": "web", "image": IMAGE}]},
                 "volumes[0]: give host (a host directory) or dockerVolumeConfiguration (a docker volume), not both",
                 id="host and docker volume"),
    pytest.param({"pidMode": "task", "containerDefinitions": [
        {"name": "web", "image": IMAGE, "dependsOn": [{"containerName": "db", "condition": "START"}]},
        {"name": "db", "image": IMAGE, "essential": False}]},
        "pidMode: task needs an essential container without dependsOn, whose namespace the others join",
        id="no namespace leader"),
    pytest.param({"networkMode": "nat", "containerDefinitions": [{"name": "web", "image": IMAGE}]},
                 'networkMode: "nat" is not one of "bridge", "host", "none"', id="nat"),
]


@pytest.mark.parametrize("body, line", TASK_PROBLEMS)
def test_a_task_problem_is_one_line_and_the_task_declares_nothing(tmp_path, body, line):
    body.setdefault("family", "t")
    specs, lines = load(tmp_path, {"t.json": body, "other.json": {"image": IMAGE, "name": "other"}})
    assert lines == [f"<dir>/t.json: {line}"]
    assert list(specs) == ["other"]


@pytest.mark.parametrize("files, line", [
    ({"a.json": {"image": IMAGE, "name": "web", "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
      "b.json": {"image": IMAGE, "name": "db"}},
     "<dir>/a.json: dependsOn[0].condition: HEALTHY needs a healthCheck on 'db', which has none"),
    ({"a.json": {"image": IMAGE, "name": "web", "dependsOn": [{"containerName": "db", "condition": "SUCCESS"}]},
      "b.json": {"image": IMAGE, "name": "db"}},
     "<dir>/a.json: dependsOn[0].condition: SUCCESS waits for 'db' to exit, but it is kept running: make it a job "
     "(essential false, or restart never or on-failure)"),
    ({"a.json": {"image": IMAGE, "name": "web", "dependsOn": [{"containerName": "db", "condition": "START"}]}},
     "<dir>/a.json: dependsOn[0].containerName: 'db' names no declared container"),
    ({"a.json": {"image": IMAGE, "name": "web", "dependsOn": [{"containerName": "web", "condition": "START"}]}},
     "<dir>/a.json: dependsOn[0].containerName: a container cannot wait for itself"),
    ({"a.json": {"image": IMAGE, "name": "web", "ipcMode": "container:db"}, "b.json": {"image": IMAGE, "name": "db"}},
     "<dir>/a.json: ipcMode: 'db' must have ipcMode \"shareable\" for others to join its IPC namespace"),
])
def test_depends_on_and_namespaces_across_specs(tmp_path, files, line):
    _, lines = load(tmp_path, files)
    assert lines == [line]


def test_depends_on_orders_and_cycles(tmp_path):
    specs, lines = load(tmp_path, {
        "a.json": {"image": IMAGE, "name": "web", "dependsOn": [{"containerName": "db", "condition": "START"}]},
        "b.json": {"image": IMAGE, "name": "db"}})
    assert lines == [] and list(specs) == ["db", "web"]
    _, lines = load(tmp_path, {"b.json": {"image": IMAGE, "name": "db", "links": ["web"]}})
    assert lines == ["<dir>/a.json: dependency cycle: web -> db -> web", "<dir>/b.json: dependency cycle: web -> db -> web"]


# ---- Every refused field gives its line ---------------------------------------------------------

def refused_case(key):
    """A confdir holding one document with a value at the ECS_REFUSED key, and the path
    its line names."""
    value = {"task.networkMode=awsvpc": "awsvpc", "logConfiguration.logDriver=awsfirelens": "awsfirelens",
             "dockerSecurityOptions=credentialspec": ["credentialspec:file://gmsa.json"],
             "restartPolicy.ignoredExitCodes": [1, 2],
             "task.volumes.dockerVolumeConfiguration.driver": "rexray/ebs"}.get(key, ["something"])
    path = key.split("=")[0].removeprefix("task.").split(".")
    if key.startswith("task.volumes."):
        nested = {path[-1]: value}
        for part in reversed(path[1:-1]):
            nested = {part: nested}
        body = {"volumes": [{"name": "v1", **nested}]}
        where = ".".join(["volumes[0]", *path[1:]])
    elif key.startswith("task."):
        body, where = {path[0]: value}, path[0]
    else:
        container = {"name": "web", "image": IMAGE}
        if key == "restartPolicy.ignoredExitCodes":
            container["restartPolicy"] = {"enabled": True, "ignoredExitCodes": value}
        elif len(path) == 2 and path[0] in ("logConfiguration", "linuxParameters", "portMappings"):
            inner = {"logConfiguration": {"logDriver": "json-file"}, "linuxParameters": {},
                     "portMappings": {"containerPort": 80}}[path[0]]
            inner = {**inner, path[1]: value}
            container[path[0]] = [inner] if path[0] == "portMappings" else inner
        else:
            container[path[0]] = value
        body = {"containerDefinitions": [container]}
        where = "containerDefinitions[0]." + ".".join(
            ["portMappings[0]", path[1]] if path[0] == "portMappings" else
            ["dockerSecurityOptions[0]"] if path[0] == "dockerSecurityOptions" else path)
    body.setdefault("containerDefinitions", [{"name": "web", "image": IMAGE}])
    return {"family": "t", **body}, where


@pytest.mark.parametrize("key", sorted(dockerup.ECS_REFUSED))
def test_every_refused_field_gives_its_line(tmp_path, key):
    document, where = refused_case(key)
    code, lines = validate(tmp_path, {"t.json": document})
    assert (code, lines) == (1, [f"<dir>/t.json: {where}: refused: {dockerup.ECS_REFUSED[key]}"])


@pytest.mark.parametrize("key", sorted(key for key in dockerup.ECS_REFUSED if not key.startswith("task.")))
def test_a_refused_field_of_a_spec_file_gives_its_line(tmp_path, key):
    """The same line for a container definition copied into a spec file of its own."""
    document, where = refused_case(key)
    code, lines = validate(tmp_path, {"web.json": document["containerDefinitions"][0]})
    assert (code, lines) == (1, [f"<dir>/web.json: {where.removeprefix('containerDefinitions[0].')}: refused: "
                                 f"{dockerup.ECS_REFUSED[key]}"])


def test_the_issue_s_four_complaints_are_gone(tmp_path):
    """A container definition written as the ECS documentation writes one is a valid spec."""
    code, lines = validate(tmp_path, {"web.json": {"name": "web", "image": IMAGE, "essential": True, "memory": 512,
                                                   "entryPoint": ["/bin/sh", "-c"], "command": ["exec app"],
                                                   "environment": [{"name": "TZ", "value": "UTC"}]}})
    assert (code, lines) == (0, [])


# ---- dependsOn and essential in the plan and the executor ------------------------------------------

def state(*containers):
    return HostState(list(containers), Images({dockerup.normalize_image_ref(IMAGE): IMAGE_ID}, {IMAGE_ID: [IMAGE]},
                                              set()))


def task_declared(tmp_path, body):
    specs, lines = load(tmp_path, {"t.json": {"family": "t", **body}})
    assert lines == []
    return Declared(list(specs.values()), [], set())


def test_the_actions_that_start_a_container_wait_for_its_conditions(tmp_path):
    declared = task_declared(tmp_path, {"containerDefinitions": [
        {"name": "db", "image": IMAGE, "startTimeout": 30, "healthCheck": {"command": ["CMD-SHELL", "true"]}},
        {"name": "web", "image": IMAGE, "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]}]})
    plan = dockerup.plan_changes(declared, state(), Memory(), dockerup.default_config(probation=0), now=0)
    create_db, create_web = plan.actions
    assert (create_db.spec.name, create_db.awaits) == ("db", ())
    assert (create_web.spec.name, create_web.awaits) == ("web", (Await("db", "HEALTHY", 30),))


def test_an_essential_container_that_cannot_start_keeps_the_rest_of_its_task_from_starting(tmp_path):
    declared = task_declared(tmp_path, {"containerDefinitions": [
        {"name": "db", "image": "registry.example.com/missing:1"},
        {"name": "web", "image": IMAGE}, {"name": "cache", "image": IMAGE, "essential": False}]})
    plan = dockerup.plan_changes(declared, state(), Memory(), dockerup.default_config(probation=0), now=0,
                                 pull_errors={"registry.example.com/missing:1": "not found"})
    assert plan.actions == []
    assert [str(p) for p in plan.problems][1:] == [
        f"{declared.specs[1].where}: containerDefinitions[1]: not started: db, essential to task t, cannot be started",
        f"{declared.specs[2].where}: containerDefinitions[2]: not started: db, web, essential to task t, cannot be "
        "started"]


def test_a_job_that_is_not_essential_is_left_stopped(tmp_path):
    declared = task_declared(tmp_path, {"containerDefinitions": [
        {"name": "main", "image": IMAGE}, {"name": "job", "image": IMAGE, "essential": False}]})
    job = declared.specs[1]
    labels = dockerup.spec_labels(job)
    exited = [Container(c * 64, "job", IMAGE_ID, "exited", "", code, labels) for c, code in (("1", 0), ("2", 3))]
    for container, outcome in zip(exited, (dockerup.Outcome.FINISHED, dockerup.Outcome.FAILED)):
        main = Container("f" * 64, "main", IMAGE_ID, "running", "", 0, dockerup.spec_labels(declared.specs[0]))
        plan = dockerup.plan_changes(declared, state(main, container), Memory(),
                                     dockerup.default_config(probation=0), now=0)
        assert plan.actions == [] and plan.outcomes["job"] == outcome
    assert [str(p).split(": ", 2)[2] for p in plan.problems] == [
        f"job ({'2' * 12}) exited with code 3; it is not essential, so it stays stopped"]


def inspected(status="running", health=None, code=0, started=True):
    return {"Status": status, "ExitCode": code, "StartedAt": "2026-11-27T10:00:00.5Z" if started else
            "0001-01-01T00:00:00Z", **({"Health": {"Status": health}} if health else {})}


@pytest.mark.parametrize("condition, state, expected", [
    ("START", inspected(), (True, "")),
    ("START", inspected("created", started=False), (False, "")),
    ("START", inspected("exited"), (True, "")),
    ("HEALTHY", inspected(health="starting"), (False, "")),
    ("HEALTHY", inspected(health="healthy"), (True, "")),
    ("HEALTHY", inspected(health="unhealthy"), (False, "is unhealthy")),
    ("HEALTHY", inspected("exited", code=2), (False, "exited with code 2")),
    ("HEALTHY", inspected(), (False, "has no health check")),
    ("COMPLETE", inspected(), (False, "")),
    ("COMPLETE", inspected("exited", code=3), (True, "")),
    ("SUCCESS", inspected("exited"), (True, "")),
    ("SUCCESS", inspected("exited", code=1), (False, "exited with code 1")),
    ("SUCCESS", inspected("created", started=False), (False, "")),
    ("START", None, (False, "does not exist")),
])
def test_condition_met(condition, state, expected):
    assert dockerup.condition_met(condition, state) == expected


class InspectingDocker:
    """Answers `docker inspect` of a container with the states given, in turn."""

    dry_run, timeout = False, 30

    def __init__(self, states):
        self.states, self.commands = list(states), []

    def read(self, *args, **kwargs):
        self.commands.append(("read", *args))
        return json.dumps(self.states.pop(0) if len(self.states) > 1 else self.states[0])

    def change(self, *args, reason, env=None):
        self.commands.append(("change", *args))
        return "f" * 64


def create_web(awaits):
    web = dockerup.assign_identities([dockerup.Spec({"image": IMAGE, "name": "web"}, "web.json", "confdir")])[0]
    want = dockerup.Want(dockerup.spec_labels(web), IMAGE_ID, IMAGE)
    return web, CreateContainer(web, want, "absent", awaits=awaits)


def test_the_executor_creates_once_the_condition_is_met():
    docker = InspectingDocker([inspected(health="starting"), inspected(health="starting"), inspected(health="healthy")])
    _, action = create_web((Await("db", "HEALTHY", 30),))
    assert dockerup.Executor(docker, settle=0).execute([action]) == []
    assert [command[:2] for command in docker.commands] == [("read", "inspect")] * 3 + [("change", "run")]


@pytest.mark.parametrize("states, timeout, message", [
    ([inspected(health="unhealthy")], 30, "db is unhealthy (dependsOn HEALTHY)"),
    ([inspected(health="starting")], 0.3,
     "db did not become healthy within 0.3 seconds (dependsOn HEALTHY; its startTimeout)"),
])
def test_a_condition_not_met_fails_the_container_and_its_dependents(states, timeout, message):
    docker = InspectingDocker(states)
    web, action = create_web((Await("db", "HEALTHY", timeout),))
    proxy = dockerup.assign_identities([dockerup.Spec({"image": IMAGE, "name": "proxy", "links": ["web"]}, "p.json",
                                                      "confdir")])[0]
    then = CreateContainer(proxy, dockerup.Want(dockerup.spec_labels(proxy), IMAGE_ID, IMAGE), "absent")
    memory = Memory()
    problems = dockerup.Executor(docker, settle=0, memory=memory).execute([action, then])
    assert [str(p) for p in problems] == [f"web.json: {message}",
                                          "p.json: not converged: it depends on web, which failed"]
    assert not any(command[1] == "run" for command in docker.commands)
    assert memory.failures == {}


def test_a_replacement_waits_before_it_stops_the_old_container():
    docker = InspectingDocker([inspected(health="unhealthy")])
    web, _ = create_web(())
    old = Container("c" * 64, "web", IMAGE_ID, "running", "", 0, {})
    action = ReplaceContainer(web, old, dockerup.Want(dockerup.spec_labels(web), IMAGE_ID, IMAGE), "spec changed: env",
                              awaits=(Await("db", "HEALTHY", 30),))
    memory = Memory()
    problems = dockerup.Executor(docker, settle=0, memory=memory).execute([action])
    assert [str(p) for p in problems] == ["web.json: db is unhealthy (dependsOn HEALTHY)"]
    assert [command for command in docker.commands if command[0] == "change"] == []
    assert memory.failures == {}  # the update itself never ran: nothing held back


def test_a_dry_run_does_not_wait():
    docker = InspectingDocker([inspected(health="starting")])
    docker.dry_run = True
    _, action = create_web((Await("db", "HEALTHY", 30),))
    assert dockerup.Executor(docker, settle=0).execute([action]) == []
    assert [command[:2] for command in docker.commands] == [("change", "run")]


def test_a_start_waits_too():
    docker = InspectingDocker([inspected("exited", code=1)])
    web, _ = create_web(())
    action = StartContainer(web, Container("c" * 64, "web", IMAGE_ID, "exited", "", 0, {}), "container is exited",
                            awaits=(Await("job", "SUCCESS", 30),))
    problems = dockerup.Executor(docker, settle=0).execute([action])
    assert [str(p) for p in problems] == ["web.json: job exited with code 1 (dependsOn SUCCESS)"]


# ---- Export ----------------------------------------------------------------------------------------

RICH = {
    "db.json": {"name": "db", "image": IMAGE, "memory": "256m", "cpu": 512, "restart": "always",
                "healthCheck": {"command": ["CMD-SHELL", "pg_isready"], "interval": 5, "timeout": 3, "retries": 3,
                                "startPeriod": 10},
                "volumes": [{"containerPath": "/var/lib/db", "volume": "shop_db"}], "stopTimeout": 20,
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}]},
    "web.json": {"name": "web", "image": IMAGE, "memory": 512, "memoryReservation": "128m",
                 "entrypoint": "/bin/sh -c", "command": ["exec app --port 8080"],
                 "env": {"TOKEN": "s3cret", "WORKERS": 4, "DEBUG": False}, "links": {"db": "database"},
                 "portMappings": [{"containerPort": 8080, "hostPort": 80}, {"containerPort": "53", "protocol": "udp"}],
                 "volumes": [{"containerPath": "/uploads", "hostPath": "/srv/uploads", "mode": "ro"},
                             {"containerPath": "/cache", "volume": "cache"}, {"from": "db", "mode": "ro"}],
                 "dependsOn": [{"containerName": "db", "condition": "HEALTHY"},
                               {"containerName": "migrate", "condition": "SUCCESS"}],
                 "dockerLabels": {"team": "shop"}, "hostname": "web-1", "user": "1000:1000",
                 "workingDirectory": "/srv", "extraHosts": [{"hostname": "api.local", "ipAddress": "10.0.0.5"}],
                 "dnsServers": ["10.0.0.2"], "dnsSearchDomains": ["example.com"], "privileged": False,
                 "readonlyRootFilesystem": True,
                 "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
                 "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                                     "devices": [{"hostPath": "/dev/fuse", "permissions": ["read", "write"]}],
                                     "initProcessEnabled": True, "sharedMemorySize": 64,
                                     "tmpfs": [{"containerPath": "/run", "size": 16, "mountOptions": ["noexec"]}]},
                 "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
                 "dockerSecurityOptions": ["no-new-privileges"], "pseudoTerminal": True, "interactive": True,
                 "startTimeout": 60, "restart": "on-failure"},
    "migrate.json": {"name": "migrate", "image": IMAGE, "command": "migrate --all", "restart": "never"},
}


def export_of(tmp_path, files, export_format="ecs", family="shop"):
    """(the export, its lines with the confdir as <dir>), and the specs it came from."""
    specs, lines = load(tmp_path, files)
    assert lines == []
    ordered = list(specs.values())
    document, notes = dockerup.export_ecs(ordered, family) if export_format == "ecs" else \
        dockerup.export_compose(ordered)
    return (document, [line.replace(str(tmp_path / "containers.d"), "<dir>") for line in notes]), specs


def test_the_ecs_export_is_what_register_task_definition_takes(tmp_path):
    (task_definition, notes), _ = export_of(tmp_path, RICH)
    report = ParamValidator().validate(task_definition, REGISTER_INPUT)
    assert not report.has_errors(), report.generate_report()
    assert notes == []
    web = next(d for d in task_definition["containerDefinitions"] if d["name"] == "web")
    assert web["environment"] == [{"name": "DEBUG", "value": "false"}, {"name": "TOKEN", "value": "s3cret"},
                                  {"name": "WORKERS", "value": "4"}]
    assert web["entryPoint"] == ["/bin/sh", "-c"] and web["memory"] == 512 and web["memoryReservation"] == 128
    assert web["restartPolicy"] == {"enabled": True, "ignoredExitCodes": [0]}
    assert web["links"] == ["db:database"] and web["volumesFrom"] == [{"sourceContainer": "db", "readOnly": True}]
    migrate = next(d for d in task_definition["containerDefinitions"] if d["name"] == "migrate")
    assert migrate["essential"] is False and migrate["restartPolicy"] == {"enabled": False}
    assert task_definition["family"] == "shop" and "networkMode" not in task_definition
    assert {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in task_definition["volumes"]} == {
        "db": {"dockerVolumeConfiguration": {"scope": "task"}},
        "srv_uploads": {"host": {"sourcePath": "/srv/uploads"}},
        "cache": {"dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True}}}


def reimported(tmp_path, task_definition):
    specs, lines = load(tmp_path, {"task.json": task_definition}, "again")
    assert lines == []
    return specs


def test_the_ecs_export_loads_back_into_the_same_containers(tmp_path):
    (task_definition, _), specs = export_of(tmp_path, RICH)
    again = reimported(tmp_path, task_definition)
    assert sorted(again) == sorted(specs)
    for name, spec in specs.items():
        assert dockerup.fingerprint(again[name].doc) == dockerup.fingerprint(spec.doc), name
        assert dockerup.resource_settings(again[name].doc) == dockerup.resource_settings(spec.doc), name


@pytest.mark.parametrize("doc, lines", [
    ({"update": {"eager": True}, "signal": [{"container": "proxy", "signal": "HUP"}]},
     ["update: dockerup's own setting, with no equivalent there: left out",
      "signal: dockerup's own setting, with no equivalent there: left out"]),
    ({"portMappings": [{"containerPort": 80, "hostIp": "127.0.0.1"}]},
     ["portMappings[0].hostIp: ECS publishes on every address of the host: left out"]),
    ({"volumes": [{"containerPath": "/scratch"}]},
     ["volumes[0]: an anonymous volume has no ECS form: exported as the task volume 'web_scratch' (the docker "
      "volume shop_web_scratch on one host)"]),
    ({"network": "host"}, ["network: 'host': a task has one networkMode for all its containers, and theirs differ: "
                           "left out"]),
    ({"restart": "unless-stopped"}, ["restart: ECS has no \"unless-stopped\": exported as always"]),
    ({"healthCheck": {"command": ["NONE"]}},
     ["healthCheck: [\"NONE\"] has no ECS form: left out (the image's own check may apply)"]),
    ({"healthCheck": {"command": "true", "interval": 0.5, "timeout": 5}},
     ["healthCheck.interval: ECS takes a whole number from 5 to 300: exported as 5"]),
    ({"healthCheck": {"command": "true"}}, ["healthCheck.timeout: not set: docker's default is 30 seconds, ECS's 5"]),
    ({"logConfiguration": {"logDriver": "local"}},
     ["logConfiguration.logDriver: ECS has no 'local' log driver: left out (ECS's default applies)"]),
    ({"memory": "100.5m"}, ["memory: ECS takes whole MiB: exported as 101"]),
    ({"volumes": [{"containerPath": "/x", "volume": "my.data"}]},
     ["volumes[0].volume: ECS volume names have only letters, digits, '_' and '-': exported as 'my_data', a volume "
      "of that name"]),
])
def test_what_does_not_translate_to_ecs_is_said(tmp_path, doc, lines):
    (task_definition, notes), _ = export_of(tmp_path, {"web.json": {"image": IMAGE, "name": "web", **doc},
                                                       "db.json": {"image": IMAGE, "name": "db"}})
    assert notes == [f"<dir>/web.json: {line}" for line in lines]
    assert not ParamValidator().validate(task_definition, REGISTER_INPUT).has_errors()


def test_unnamed_and_dotted_names_are_renamed_and_said(tmp_path):
    (task_definition, notes), _ = export_of(tmp_path, {"my-worker.json": {"image": IMAGE},
                                                       "a.json": {"image": IMAGE, "name": "api.v2"}})
    assert [d["name"] for d in task_definition["containerDefinitions"]] == ["api-v2", "my-worker"]
    assert notes == ["<dir>/a.json: name: ECS container names have no dot: exported as 'api-v2'",
                     "<dir>/my-worker.json: name: no name: exported as 'my-worker'"]


def test_what_does_not_translate_to_compose_is_said(tmp_path):
    (compose, notes), _ = export_of(tmp_path, {
        "web.json": {"image": IMAGE, "name": "web", "essential": True, "startTimeout": 5,
                     "dependsOn": [{"containerName": "job", "condition": "COMPLETE"}]},
        "job.json": {"image": IMAGE, "name": "job", "restart": "never"}}, "compose")
    assert notes == ["<dir>/web.json: essential: compose has no tasks: left out",
                     "<dir>/web.json: startTimeout: compose waits for dependencies without a time limit: left out",
                     "<dir>/web.json: dependsOn[0].condition: compose waits only for a successful exit: exported as "
                     "service_completed_successfully"]
    assert compose["services"]["web"]["depends_on"] == {"job": {"condition": "service_completed_successfully"}}


def test_the_compose_export_escapes_dollars_and_says_docker_run_s_argv(tmp_path):
    (compose, _), _ = export_of(tmp_path, RICH, "compose")
    web = compose["services"]["web"]
    assert web["environment"] == {"DEBUG": "false", "TOKEN": "s3cret", "WORKERS": "4"}
    assert (web["entrypoint"], web["command"]) == (["/bin/sh"], ["-c", "exec app --port 8080"])
    (tmp_path / "x").mkdir()
    (compose, _), _ = export_of(tmp_path / "x", {"a.json": {"image": IMAGE, "name": "a1", "env": {"P": "$HOME"},
                                                          "command": ["echo", "$$x"]}}, "compose")
    assert compose["services"]["a1"]["environment"] == {"P": "$$HOME"}
    assert compose["services"]["a1"]["command"] == ["echo", "$$$$x"]
    assert compose["services"]["a1"]["network_mode"] == "bridge"


def internal_fields():
    return set(dockerup.CANONICAL) | set(dockerup.IN_PLACE_FIELDS) | set(dockerup.CONTROL_FIELDS)


def test_every_field_has_an_ecs_and_a_compose_translation():
    assert set(dockerup.ECS_EXPORT) == internal_fields()
    assert set(dockerup.COMPOSE_EXPORT) == internal_fields()


def test_env_values_are_exported_but_never_logged(tmp_path):
    (tmp_path / "containers.d").mkdir()
    write_files(tmp_path / "containers.d", {"web.json": {"image": IMAGE, "name": "web", "env": {"TOKEN": "s3cret"},
                                                         "signal": [{"container": "web", "signal": "HUP"}]}})
    config = tmp_path / "dockerup.conf"
    config.write_text(f"confdir={tmp_path / 'containers.d'}\ncache={tmp_path / 'cache'}\n")
    for export_format in ("ecs", "compose"):
        result = subprocess.run([sys.executable, str(DOCKERUP), "export", "--config", str(config), "--format",
                                 export_format, "--family", "shop"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "s3cret" in result.stdout and "s3cret" not in result.stderr
        assert result.stderr.splitlines() == [f"{tmp_path}/containers.d/web.json: signal: dockerup's own setting, "
                                              "with no equivalent there: left out"]
        json.loads(result.stdout)


@pytest.mark.parametrize("args, line", [
    (["--format", "yaml"], "--format: expected ecs or compose, got 'yaml'"),
    (["--format", "ecs", "--family", "my shop"],
     "--family: 'my shop' is not a task family: up to 255 letters, digits, '_' and '-'"),
])
def test_export_usage_mistakes(tmp_path, args, line):
    (tmp_path / "containers.d").mkdir()
    config = tmp_path / "dockerup.conf"
    config.write_text(f"confdir={tmp_path / 'containers.d'}\ncache={tmp_path / 'cache'}\n")
    result = subprocess.run([sys.executable, str(DOCKERUP), "export", "--config", str(config), *args],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1].endswith(f" ERROR {line}")


def test_invalid_specs_export_nothing(tmp_path):
    (tmp_path / "containers.d").mkdir()
    write_files(tmp_path / "containers.d", {"web.json": {"image": IMAGE, "secrets": ["x"]},
                                            "db.json": {"image": IMAGE, "name": "db"}})
    config = tmp_path / "dockerup.conf"
    config.write_text(f"confdir={tmp_path / 'containers.d'}\ncache={tmp_path / 'cache'}\n")
    result = subprocess.run([sys.executable, str(DOCKERUP), "export", "--config", str(config), "--format", "ecs"],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    errors = [line.split(" ERROR ", 1)[1] for line in result.stderr.splitlines()]
    assert errors == [f"{tmp_path}/containers.d/web.json: secrets: refused: {dockerup.ECS_REFUSED['secrets']}",
                      "nothing exported: 1 problem"]


# ---- docs/ecs.md names every ECS field -------------------------------------------------------------

def documented():
    """docs/ecs.md's field tables: dotted field name ("task." and the name for the task
    definition's table) -> what dockerup does with it."""
    rows, prefix = {}, ""
    for line in (ROOT / "docs" / "ecs.md").read_text().splitlines():
        if line.startswith("### "):
            prefix = "task." if line == "### Task definition" else ""
        cells = [cell.strip() for cell in line.strip("|").split("|")] if line.startswith("| `") else None
        if cells and len(cells) == 3:
            for name in re.findall(r"`([\w.]+)`", cells[0]):
                rows[prefix + name] = cells[1]
            for name in re.findall(r"`([\w.]+)`", cells[2]):  # sub-fields named in the remark
                rows.setdefault(prefix + name, cells[1])
    return rows


def ecs_fields(shape, prefix="", accepted=lambda path: True):
    """Dotted names of a botocore shape's members, and of the members of the members
    dockerup accepts."""
    names = []
    for name, member in shape.members.items():
        path = prefix + name
        names.append(path)
        inner = member.member if member.type_name == "list" else member
        if inner.type_name == "structure" and accepted(path):
            names += ecs_fields(inner, path + ".", accepted)
    return names


def accepted_by_dockerup(kind):
    schema = json.loads(dockerup.SCHEMA_TEXTS["container"])
    refused = {key.split("=")[0] for key in dockerup.ECS_REFUSED}

    def accepted(path):
        return (kind + path) not in refused and f"{kind}{path}" not in dockerup.ECS_NO_EFFECT and (
            kind == "task." or path.split(".")[0] in schema["properties"])
    return accepted


def test_docs_name_every_ecs_field():
    rows = documented()
    container = ecs_fields(ECS.shape_for("ContainerDefinition"), accepted=accepted_by_dockerup(""))
    task_fields = ["task." + name for name in ecs_fields(REGISTER_INPUT, accepted=accepted_by_dockerup("task."))
                   + ecs_fields(ECS.shape_for("TaskDefinition"), accepted=accepted_by_dockerup("task."))
                   if not name.startswith("containerDefinitions.")]
    missing = sorted(set(name for name in container + task_fields if name not in rows))
    assert missing == []


def test_docs_say_what_the_code_refuses_and_ignores():
    rows = documented()
    text = (ROOT / "docs" / "ecs.md").read_text()
    for key in dockerup.ECS_REFUSED:
        name, _, value = key.partition("=")
        if value:  # one value of an accepted field: its row says the value is refused
            assert re.search(rf"^\| `{name.removeprefix('task.').split('.')[0]}`.*`{value}.*refused", text, re.M), key
        elif key in ("task.volumes.dockerVolumeConfiguration.driver", "restartPolicy.ignoredExitCodes"):
            assert re.search(rf"^\| `{name.removeprefix('task.')}` \|.*refused", text, re.M), key
        else:
            assert rows[name] == "refused", key
    for key in dockerup.ECS_NO_EFFECT:
        assert rows[key] == "no effect", key


def test_a_task_that_loses_a_container_to_another_file_declares_nothing(tmp_path):
    specs, lines = load(tmp_path, {"t.json": task(), "web.json": {"image": IMAGE, "name": "web"}})
    assert lines == ["<dir>/web.json: name: 'web' is also declared in <dir>/t.json: containerDefinitions[1]",
                     "<dir>/t.json: containerDefinitions[1].name: 'web' is also declared in <dir>/web.json",
                     "<dir>/t.json: task shop declares nothing: web cannot be converged"]
    assert specs == {}


def test_user_data_containers_take_ecs_spellings_too():
    specs, problems = dockerup.validate_user_data({"containers": [
        {"name": "web", "image": IMAGE, "environment": [{"name": "A", "value": "1"}], "memory": 64},
        {"name": "db", "image": IMAGE, "secrets": [{"name": "PW", "valueFrom": "arn"}]}]})
    assert [str(p) for p in problems] == [f"user-data: containers[1].secrets: refused: {dockerup.ECS_REFUSED['secrets']}"]
    specs, problems = dockerup.validate_user_data({"containers": [
        {"name": "web", "image": IMAGE, "environment": [{"name": "A", "value": "1"}], "memory": 64}]})
    assert problems == [] and specs[0].doc == {"name": "web", "image": IMAGE, "env": {"A": "1"}, "memory": "64m"}
    assert str(specs[0].problem("env.A", "x")) == "user-data: containers[0].environment[0]: x"


def test_depends_on_never_recreates_a_container_namespaces_do(tmp_path):
    """A container follows the containers it refers to by id (links, volumes, shared
    namespaces) when they are recreated; a dependsOn target only orders the start."""
    specs, _ = load(tmp_path, {
        "db.json": {"image": IMAGE, "name": "db"},
        "web.json": {"image": IMAGE, "name": "web", "dependsOn": [{"containerName": "db", "condition": "START"}]},
        "side.json": {"image": IMAGE, "name": "side", "pidMode": "container:db"}})
    declared = Declared(list(specs.values()), [], set())
    db, web, side = (specs[name] for name in ("db", "web", "side"))
    old_db = Container("d" * 64, "db", IMAGE_ID, "running", "", 0, {**dockerup.spec_labels(db), "dockerup.hash": "x"},
                       created=10, started_at=10)
    containers = [old_db] + [Container(c * 64, spec.name, IMAGE_ID, "running", "", 0, dockerup.spec_labels(spec),
                                       created=20, started_at=20) for c, spec in (("e", web), ("f", side))]
    plan = dockerup.plan_changes(declared, state(*containers), Memory(), dockerup.default_config(probation=0), now=30)
    assert [(type(a).__name__, a.spec.name, a.reason) for a in plan.actions] == [
        ("ReplaceContainer", "db", "spec changed: image, name"),
        ("ReplaceContainer", "side", "db is being recreated, and this container refers to it")]
