"""ECS both ways against the real engine: a task definition (as registered, and as
describe-task-definition prints it) converges and docker inspect shows each setting;
refused fields give their lines in a real run; the ECS export passes botocore's
RegisterTaskDefinition model and, loaded back, keeps every container; the compose export
passes docker-compose config, and docker-compose up -d makes the same containers."""

import json
import shutil
import subprocess

import botocore.session
from botocore.validate import ParamValidator

import dockerup
from conftest import IMAGE, KEEP_RUNNING, docker
from test_ecs import describe_output, refused_case

REGISTER_INPUT = botocore.session.get_session().get_service_model("ecs").operation_model(
    "RegisterTaskDefinition").input_shape


def changing_commands(stderr):
    return [line.split("$ ", 1)[1] for line in stderr.splitlines() if " INFO $ docker" in line]


def write_task(host, filename, document):
    (host.confdir / filename).write_text(json.dumps(document, indent=2))


def capabilities(names):
    """The docker CLI names capabilities with their CAP_ prefix, the API as given."""
    return [name.removeprefix("CAP_") for name in names or ()]


def remove_volumes(*names):
    for name in names:
        docker("volume", "rm", "--force", name, check=False)


def shop(host, uploads):
    """A task definition of two containers: web waits for db to be healthy, mounts a host
    directory and a volume of the task, and has ECS's environment and Linux settings."""
    web, db = host.name("web"), host.name("db")
    return {
        "family": host.scope,
        "volumes": [{"name": "uploads", "host": {"sourcePath": str(uploads)}}, {"name": "cache"}],
        "containerDefinitions": [
            {"name": web, "image": IMAGE, "memory": 64, "cpu": 0, "essential": True,
             "entryPoint": ["sh", "-c"], "command": [KEEP_RUNNING],
             "environment": [{"name": "GREETING", "value": "hello world"}, {"name": "DB_HOST", "value": "db"}],
             "links": [f"{db}:db"],
             "mountPoints": [{"sourceVolume": "uploads", "containerPath": "/uploads", "readOnly": True},
                             {"sourceVolume": "cache", "containerPath": "/cache"}],
             "dependsOn": [{"containerName": db, "condition": "HEALTHY"}],
             "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                                 "initProcessEnabled": True, "sharedMemorySize": 32,
                                 "tmpfs": [{"containerPath": "/scratch", "size": 8, "mountOptions": ["noexec"]}]},
             "systemControls": [{"namespace": "net.core.somaxconn", "value": "512"}],
             "dockerSecurityOptions": ["no-new-privileges"], "pseudoTerminal": True, "interactive": True,
             "ulimits": [{"name": "nofile", "softLimit": 512, "hardLimit": 1024}],
             "dockerLabels": {"team": "shop"}, "stopTimeout": 5},
            {"name": db, "image": IMAGE, "memoryReservation": 16, "startTimeout": 60,
             "command": ["sh", "-c", f"sleep 1; touch /tmp/ready; {KEEP_RUNNING}"],
             "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 0.3, "timeout": 2,
                             "retries": 20}},
        ]}


def test_a_task_definition_converges_and_docker_inspect_shows_each_setting(host, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "hello.txt").write_text("hi")
    web, db, cache = host.name("web"), host.name("db"), f"{host.scope}_cache"
    write_task(host, "shop.json", shop(host, uploads))
    try:
        first = host.converge()
        assert f"{web}: waiting for {db} to become healthy (dependsOn HEALTHY)" in first.stderr
        # db is created first, and web only once db is healthy.
        runs = [command.split(" --name ")[1].split()[0] for command in changing_commands(first.stderr)]
        assert runs == [db, web]
        inspected_db, inspected_web = host.inspect(db), host.inspect(web)
        healthy_at = min(dockerup.parse_docker_time(entry["End"]) for entry in inspected_db["State"]["Health"]["Log"]
                         if entry["ExitCode"] == 0)
        assert dockerup.parse_docker_time(inspected_web["State"]["StartedAt"]) >= healthy_at

        config, host_config = inspected_web["Config"], inspected_web["HostConfig"]
        assert {"GREETING=hello world", "DB_HOST=db"} <= set(config["Env"])
        assert (config["Entrypoint"], config["Cmd"]) == (["sh"], ["-c", KEEP_RUNNING])
        assert (config["Tty"], config["OpenStdin"], config["StopTimeout"]) == (True, True, 5)
        assert config["Labels"]["team"] == "shop" and config["Labels"]["dockerup.id"] == web
        assert host_config["Memory"] == 64 * 2 ** 20 and host_config["CpuShares"] == 0
        assert sorted((m["Type"], m.get("Name") or m["Source"], m["Destination"], m["RW"])
                      for m in inspected_web["Mounts"]) == [("bind", str(uploads), "/uploads", False),
                                                            ("volume", cache, "/cache", True)]
        assert host_config["Links"] == [f"/{db}:/{web}/db"]
        assert (capabilities(host_config["CapAdd"]), capabilities(host_config["CapDrop"]), host_config["Init"]) == (
            ["NET_ADMIN"], ["MKNOD"], True)
        assert host_config["ShmSize"] == 32 * 2 ** 20 and host_config["Tmpfs"] == {"/scratch": "size=8m,noexec"}
        assert host_config["Sysctls"] == {"net.core.somaxconn": "512"}
        assert host_config["SecurityOpt"] == ["no-new-privileges"]
        assert host_config["Ulimits"] == [{"Name": "nofile", "Soft": 512, "Hard": 1024}]
        assert docker("exec", web, "cat", "/uploads/hello.txt") == "hi"
        assert docker("exec", web, "sh", "-c", "echo $GREETING") == "hello world\n"
        assert inspected_db["HostConfig"]["MemoryReservation"] == 16 * 2 ** 20
        assert inspected_db["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "test -f /tmp/ready"]

        second = host.converge()
        assert changing_commands(second.stderr) == [] and "waiting" not in second.stderr
        assert host.running_ids() == {web: inspected_web["Id"], db: inspected_db["Id"]}
    finally:
        host.remove_containers()
        remove_volumes(cache)


def test_describe_task_definition_output_runs_the_same_containers(host, tmp_path):
    """The same task, first as `aws ecs describe-task-definition` prints it (with the
    empty fields the ECS console writes), then as registered: nothing changes."""
    (tmp_path / "uploads").mkdir()
    definition = shop(host, tmp_path / "uploads")
    described = describe_output(definition)
    for container in described["taskDefinition"]["containerDefinitions"]:
        container.update({"environmentFiles": [], "secrets": [], "volumesFrom": [], "systemControls":
                          container.get("systemControls", []), "versionConsistency": "disabled",
                          "portMappings": [{"containerPort": 8080, "name": "http", "appProtocol": "http",
                                            "hostPort": 18080 + len(container["name"]) % 10}]
                          if container["name"] == host.name("web") else []})
    try:
        write_task(host, "shop.json", described)
        host.converge()
        before = host.running_ids()
        assert sorted(before) == sorted([host.name("web"), host.name("db")])
        # The registered form (without the Service Connect names, which change nothing).
        for container in definition["containerDefinitions"]:
            if container["name"] == host.name("web"):
                container["portMappings"] = [{"containerPort": 8080, "hostPort": 18080 + len(container["name"]) % 10}]
        write_task(host, "shop.json", definition)
        again = host.converge()
        assert changing_commands(again.stderr) == []
        assert host.running_ids() == before
    finally:
        host.remove_containers()
        remove_volumes(f"{host.scope}_cache")


def test_every_refused_field_gives_its_line_in_a_run(host):
    """One run over a file for each refused field and a valid spec: one line each, exit
    1, and the valid spec converges."""
    expected = {}
    for index, key in enumerate(sorted(dockerup.ECS_REFUSED)):
        document, where = refused_case(key)
        document["containerDefinitions"][0]["name"] = host.name(f"r{index}")
        write_task(host, f"refused-{index}.json", document)
        expected[f"refused-{index}.json"] = f"{where}: refused: {dockerup.ECS_REFUSED[key]}"
    host.spec("good.json", name=host.name("good"), command=["sh", "-c", KEEP_RUNNING])
    result = host.run()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line.split(" ERROR ", 1)[1] for line in result.stderr.splitlines() if " ERROR " in line]
    assert sorted(errors) == sorted(f"{host.confdir}/{name}: {line}" for name, line in expected.items())
    assert list(host.running_ids()) == [host.name("good")]


# ---- Export ----------------------------------------------------------------------------------------

def specs_to_export(host, tmp_path):
    """Plain dockerup specs of two containers, with most settings both exports carry."""
    data = tmp_path / "data"
    data.mkdir()
    web, db = host.name("web"), host.name("db")
    return {
        "db.json": {"name": db, "image": IMAGE, "command": ["sh", "-c", f"touch /tmp/ready; {KEEP_RUNNING}"],
                    "memory": "48m", "restart": "on-failure", "volumes": [{"containerPath": "/var/db",
                                                                             "volume": f"{host.scope}_db"}],
                    "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 5, "timeout": 3,
                                    "retries": 3}},
        "web.json": {"name": web, "image": IMAGE, "entrypoint": ["sh", "-c"], "command": [KEEP_RUNNING],
                     "env": {"GREETING": "hello $USER", "WORKERS": 4}, "links": {db: "database"},
                     "volumes": [{"containerPath": "/data", "hostPath": str(data), "mode": "ro"}, {"from": db}],
                     "dependsOn": [{"containerName": db, "condition": "HEALTHY"}],
                     "portMappings": [{"containerPort": 8080}], "memory": "32m", "memoryReservation": "16m",
                     "cpu": 256, "restart": "always", "dockerLabels": {"team": "shop"}, "hostname": "web1",
                     "user": "nobody", "workingDirectory": "/tmp", "dnsServers": ["10.0.0.2"],
                     "dnsSearchDomains": ["example.com"], "extraHosts": [{"hostname": "api.local",
                                                                          "ipAddress": "10.0.0.5"}],
                     "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m"}},
                     "ulimits": [{"name": "nofile", "softLimit": 256, "hardLimit": 512}], "stopTimeout": 3,
                     "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}, "initProcessEnabled": True,
                                         "sharedMemorySize": 16},
                     "systemControls": [{"namespace": "net.core.somaxconn", "value": "256"}],
                     "dockerSecurityOptions": ["no-new-privileges"], "pseudoTerminal": True},
    }


def export(host, export_format, *args):
    result = host.run("export", "--format", export_format, *args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout), result.stderr.splitlines()


def test_the_ecs_export_is_accepted_by_ecs_s_model_and_runs_the_same_containers(host, tmp_path):
    for filename, document in specs_to_export(host, tmp_path).items():
        (host.confdir / filename).write_text(json.dumps(document))
    try:
        host.converge()
        before = {name: (c["Id"], c["Config"]["Labels"]["dockerup.hash"]) for name, c in host.managed().items()}
        task_definition, lines = export(host, "ecs", "--family", host.scope)
        report = ParamValidator().validate(task_definition, REGISTER_INPUT)
        assert not report.has_errors(), report.generate_report()
        assert "hello $USER" in json.dumps(task_definition)  # env values are the user's configuration
        assert lines == []
        for path in host.confdir.iterdir():
            path.unlink()
        write_task(host, "task.json", task_definition)
        again = host.converge()
        assert changing_commands(again.stderr) == []
        assert {name: (c["Id"], c["Config"]["Labels"]["dockerup.hash"]) for name, c in host.managed().items()} == before
    finally:
        host.remove_containers()
        remove_volumes(f"{host.scope}_db")


def volumes_from(references):
    """--volumes-from as container names and modes: compose gives ids, and ":rw"."""
    named = []
    for reference in references or ():
        container, _, mode = reference.partition(":")
        name = docker("inspect", "--format", "{{.Name}}", container).strip().lstrip("/")
        named.append(f"{name}:{mode or 'rw'}")
    return named or None


def comparable(inspected):
    """The settings of a container that both dockerup and compose give it. compose also
    links each service under its own name: dockerup's links are among compose's."""
    config, host_config = inspected["Config"], inspected["HostConfig"]
    labels = {key: value for key, value in config["Labels"].items()
              if not key.startswith(("dockerup.", "com.docker.compose."))}
    return {
        "Image": config["Image"], "Env": sorted(config["Env"] or ()), "Entrypoint": config["Entrypoint"],
        "Cmd": config["Cmd"], "Labels": labels, "Healthcheck": config.get("Healthcheck"),
        "Hostname": None if inspected["Id"].startswith(config["Hostname"]) else config["Hostname"],
        "User": config["User"], "WorkingDir": config["WorkingDir"],
        "Tty": config["Tty"], "StopTimeout": config.get("StopTimeout"),
        "Mounts": sorted((m["Type"], m.get("Name") or m["Source"], m["Destination"], m["RW"])
                         for m in inspected["Mounts"]),
        "NetworkMode": "bridge" if host_config["NetworkMode"] == "default" else host_config["NetworkMode"],
        **{key: host_config.get(key) or None for key in (
            "Memory", "MemoryReservation", "CpuShares", "RestartPolicy", "PortBindings",
            "ExtraHosts", "Dns", "DnsSearch", "LogConfig", "Ulimits", "Init", "ShmSize", "Sysctls",
            "SecurityOpt", "Privileged", "ReadonlyRootfs")},
        "CapAdd": capabilities(host_config["CapAdd"]), "VolumesFrom": volumes_from(host_config["VolumesFrom"]),
    }


def test_the_compose_export_runs_the_same_containers_under_compose(host, tmp_path):
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is not installed (Debian's docker-compose; see .ci/setup)"
    for filename, document in specs_to_export(host, tmp_path).items():
        (host.confdir / filename).write_text(json.dumps(document))
    project = f"{host.scope}compose"
    compose_file = tmp_path / "compose.json"

    def run_compose(*args):
        return subprocess.run([compose, "--project-name", project, "--file", str(compose_file), *args],
                              capture_output=True, text=True, timeout=300)

    try:
        host.converge()
        made_by_dockerup = {name: comparable(c) for name, c in host.managed().items()}
        host_links = {name: c["HostConfig"]["Links"] for name, c in host.managed().items()}
        assert host_links[host.name("web")]
        document, lines = export(host, "compose")
        assert lines == []
        compose_file.write_text(json.dumps(document, indent=2))
        checked = run_compose("config")
        assert checked.returncode == 0, checked.stderr
        host.remove_containers()  # they hold the names compose gives its containers
        started = run_compose("up", "--detach")
        assert started.returncode == 0, started.stderr
        made_by_compose = {name: comparable(json.loads(docker("inspect", name))[0]) for name in made_by_dockerup}
        differences = {name: {key: (value, made_by_compose[name][key]) for key, value in settings.items()
                              if made_by_compose[name][key] != value}
                       for name, settings in made_by_dockerup.items()}
        for name in made_by_dockerup:
            links = json.loads(docker("inspect", "--format", "{{json .HostConfig.Links}}", name))
            assert set(host_links[name] or ()) <= set(links or ()), name
        assert differences == {name: {} for name in made_by_dockerup}, "(dockerup's, compose's)"
    finally:
        run_compose("down", "--timeout", "1")
        host.remove_containers()
        remove_volumes(f"{host.scope}_db")


def test_shared_namespaces_a_device_and_a_job_the_task_waits_for(host):
    """pidMode and ipcMode task share the first essential container's namespaces; a
    container that is not essential is a job, which its dependent waits to succeed, and
    which stays exited."""
    main, job, app = host.name("main"), host.name("job"), host.name("app")
    write_task(host, "ns.json", {
        "family": host.scope, "pidMode": "task", "ipcMode": "task",
        "containerDefinitions": [
            {"name": job, "image": IMAGE, "essential": False, "command": ["sh", "-c", "sleep 1; exit 0"]},
            {"name": app, "image": IMAGE, "command": ["sh", "-c", KEEP_RUNNING], "disableNetworking": True,
             "dependsOn": [{"containerName": job, "condition": "SUCCESS"}],
             "linuxParameters": {"devices": [{"hostPath": "/dev/null", "containerPath": "/dev/nothing",
                                              "permissions": ["read", "write"]}]}},
            {"name": main, "image": IMAGE, "command": ["sh", "-c", KEEP_RUNNING]}]})
    first = host.converge()
    assert f"{app}: waiting for {job} to exit with code 0 (dependsOn SUCCESS)" in first.stderr
    runs = [command.split(" --name ")[1].split()[0] for command in changing_commands(first.stderr)]
    assert runs == [main, job, app]
    inspected = {name: host.inspect(name) for name in (main, job, app)}
    assert inspected[main]["HostConfig"]["IpcMode"] == "shareable"
    for name in (job, app):
        assert inspected[name]["HostConfig"]["PidMode"] in (f"container:{main}", f"container:{inspected[main]['Id']}")
        assert inspected[name]["HostConfig"]["IpcMode"] in (f"container:{main}", f"container:{inspected[main]['Id']}")
    assert dockerup.parse_docker_time(inspected[app]["State"]["StartedAt"]) >= dockerup.parse_docker_time(
        inspected[job]["State"]["FinishedAt"])
    assert inspected[job]["State"]["Status"] == "exited" and inspected[job]["State"]["ExitCode"] == 0
    assert inspected[app]["HostConfig"]["NetworkMode"] == "none"
    assert inspected[app]["HostConfig"]["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/nothing",
                                                        "CgroupPermissions": "rw"}]
    # app's processes are in main's process namespace: main sees app's shell beside its own.
    assert docker("exec", main, "ps").count("sh -c trap") == 2
    second = host.converge()
    assert changing_commands(second.stderr) == []
    assert host.inspect(job)["State"]["Status"] == "exited"


def test_an_essential_container_that_cannot_start_keeps_the_task_s_others_from_starting(host):
    db, web = host.name("db"), host.name("web")
    missing = "localhost:1/dockerup-test/missing:1"
    write_task(host, "shop.json", {"family": host.scope, "containerDefinitions": [
        {"name": db, "image": missing}, {"name": web, "image": IMAGE, "command": ["sh", "-c", KEEP_RUNNING]}]})
    result = host.run()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line.split(" ERROR ", 1)[1] for line in result.stderr.splitlines() if " ERROR " in line]
    assert errors[1:] == [f"{host.confdir}/shop.json: containerDefinitions[1]: not started: {db}, essential to task "
                          f"{host.scope}, cannot be started"]
    assert errors[0].startswith(f"{host.confdir}/shop.json: containerDefinitions[0].image: {missing} is not available")
    assert host.managed() == {}
