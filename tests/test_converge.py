"""Convergence against the real engine: what a run does to the host, and what it
must never do."""

import fcntl
import json
import os
import signal
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import ENGINE, IMAGE, IMAGE_2, KEEP_RUNNING, LOCAL, Host, build_image, docker, free_port, made, wait_until


def changing_commands(stderr):
    """The state-changing docker command lines dockerup logged."""
    return [line.split("$ ", 1)[1] for line in stderr.splitlines() if " INFO $ docker" in line]


def unique_image(name):
    """An image no other test uses, so cleanup tests cannot disturb each other."""
    tag = f"{LOCAL}/{name}-{uuid.uuid4().hex[:8]}:1"
    return tag, build_image(tag, tag)


# --- create, keep, replace, remove -----------------------------------------------


def test_first_run_creates_and_second_run_changes_nothing(host):
    host.spec("web.json", name=host.name("web"), env={"A": "1"})
    host.spec("worker.json", command=["sh", "-c", KEEP_RUNNING])
    first = host.converge()
    assert [c.split(" run ")[0] for c in changing_commands(first.stderr)] == [f"docker -H {ENGINE}"] * 2
    before = host.running_ids()
    assert set(before) >= {host.name("web")} and len(before) == 2

    second = host.converge()
    assert changing_commands(second.stderr) == []
    assert host.running_ids() == before


def test_reformatted_json_is_a_no_op(host):
    path = host.spec("web.json", name=host.name("web"), env={"A": "1", "B": "2"},
                     portMappings=[{"containerPort": 8080}], restart="always")
    host.converge()
    before = host.running_ids()
    # Same spec: keys reordered, other whitespace, a port given as a string.
    path.write_text('{"restart":"always","portMappings":[{"containerPort":"8080"}],\n\n'
                    f'  "env": {{"B": "2", "A": "1"}}, "image": "{IMAGE}", "name": "{host.name("web")}"}}')
    result = host.converge()
    assert changing_commands(result.stderr) == []
    assert host.running_ids() == before


def test_changed_env_replaces_the_container_and_says_why(host):
    web = host.name("web")
    path = host.spec("web.json", name=web, env={"A": "1"})
    host.converge()
    old = host.inspect(web)["Id"]
    path.write_text(json.dumps({"name": web, "image": IMAGE, "env": {"A": "2"}}))
    result = host.converge()
    new = host.inspect(web)
    assert new["Id"] != old
    assert "A=2" in new["Config"]["Env"]
    assert "spec changed: env" in result.stderr
    assert host.leftovers() == []


def test_changing_only_update_settings_does_not_recreate(host):
    path = host.spec("web.json", name=host.name("web"))
    host.converge()
    before = host.running_ids()
    path.write_text(json.dumps({"name": host.name("web"), "image": IMAGE, "update": {"eager": True, "pull": False}}))
    host.converge()
    assert host.running_ids() == before


def test_deleted_spec_file_removes_its_container(host):
    host.spec("web.json", name=host.name("web"))
    path = host.spec("gone.json", name=host.name("gone"))
    host.converge()
    path.unlink()
    result = host.converge()
    assert set(host.managed()) == {host.name("web")}
    assert f"{host.name('gone')} is no longer declared" in result.stderr


def test_stopped_container_is_started_again(host):
    web = host.name("web")
    host.spec("web.json", name=web)
    host.converge()
    before = host.inspect(web)["Id"]
    docker("stop", web)
    result = host.converge()
    after = host.inspect(web)
    assert after["Id"] == before and after["State"]["Running"]
    assert any(c.endswith(f"start {web}  # container is exited ({web})") for c in changing_commands(result.stderr))


def test_unnamed_spec_keeps_its_identity(host):
    host.spec("worker.json", command=["sh", "-c", KEEP_RUNNING])
    host.spec("worker2.json", command=["sh", "-c", KEEP_RUNNING], env={"N": "2"})
    host.converge()
    labels = sorted(c["Config"]["Labels"]["dockerup.id"] for c in host.managed().values())
    assert labels == ["file:worker.json", "file:worker2.json"]
    before = host.running_ids()
    host.converge()
    assert host.running_ids() == before


def test_deleting_the_cache_forgets_nothing(host):
    host.spec("web.json", name=host.name("web"))
    host.spec("worker.json", command=["sh", "-c", KEEP_RUNNING])
    host.converge()
    before = host.running_ids()
    subprocess.run(["rm", "-rf", str(host.cache)], check=True)
    result = host.converge()
    assert changing_commands(result.stderr) == []
    assert host.running_ids() == before


# --- containers dockerup did not make ---------------------------------------------


def test_unmanaged_containers_are_left_alone(host):
    docker("run", "-d", "--name", host.name("bystander"), "--label", host.label, IMAGE)
    host.spec("web.json", name=host.name("web"))
    host.converge()
    assert host.inspect(host.name("bystander"))["State"]["Running"]


def test_unmanaged_container_holding_a_declared_name_is_reported(host):
    web = host.name("web")
    docker("run", "-d", "--name", web, "--label", host.label, IMAGE)
    host.spec("web.json", name=web)
    host.spec("other.json", name=host.name("other"))
    result = host.run()
    assert result.returncode == 1
    assert f"web.json: name: container {web} (" in result.stderr
    assert "was not created by dockerup; remove or rename it, or set exclusive=true" in result.stderr
    assert "dockerup.id" not in host.inspect(web)["Config"]["Labels"]
    assert host.inspect(host.name("other"))["State"]["Running"]  # the rest still converged


def test_exclusive_mode_removes_every_undeclared_container(private_host):
    # On a private engine: on a shared one it would remove other tests' containers.
    host = private_host
    host.docker("run", "-d", "--name", "bystander", IMAGE)
    host.docker("create", "--name", "stopped", IMAGE)
    host.docker("run", "-d", "--name", "web", IMAGE)
    (host.root / "other").mkdir()
    others = Host(host.root / "other", scope=f"{host.scope}-b", remote=host.remote)
    others.spec("api.json", name="api")
    others.converge()
    host.spec("web.json", name="web")
    host.configure(exclusive="true")
    result = host.converge()
    assert "not declared, and exclusive=true" in result.stderr
    assert set(host.engine.containers()) == {"web", "api"}
    assert "dockerup.id" in host.inspect("web")["Config"]["Labels"]


# --- images and pulls -----------------------------------------------------------


def publish_without_local_update(registry, source, name, keep_local):
    """Push `source` as NAME to the registry while this host's tag keeps pointing
    at `keep_local`: a registry-side update only a pull can discover."""
    reference = registry.push(source, name)
    docker("tag", keep_local, reference)
    return reference


def test_image_update_in_the_registry_replaces_the_container(host, registry):
    name = f"update-{uuid.uuid4().hex[:6]}:latest"
    reference = registry.push(IMAGE, name)
    web = host.name("web")
    host.spec("web.json", name=web, image=reference)
    host.configure(pull="true")
    host.converge()
    old = host.inspect(web)
    publish_without_local_update(registry, IMAGE_2, name, keep_local=IMAGE)

    result = host.converge()
    new = host.inspect(web)
    assert new["Id"] != old["Id"]
    assert new["Image"] == docker("image", "inspect", "--format", "{{.Id}}", IMAGE_2).strip()
    assert "image updated" in result.stderr


def test_no_pull_and_update_pull_false_keep_the_old_image(host, registry):
    name = f"nopull-{uuid.uuid4().hex[:6]}:latest"
    reference = registry.push(IMAGE, name)
    web = host.name("web")
    host.spec("web.json", name=web, image=reference, update={"pull": False})
    host.configure(pull="true")
    host.converge()
    old = host.inspect(web)["Id"]
    publish_without_local_update(registry, IMAGE_2, name, keep_local=IMAGE)

    host.converge()  # update.pull false
    host.spec("web.json", name=web, image=reference)
    host.converge("--no-pull")
    assert host.inspect(web)["Id"] == old


def test_spec_that_may_not_pull_follows_a_tag_another_spec_pulled(host, registry):
    name = f"shared-{uuid.uuid4().hex[:6]}:latest"
    reference = registry.push(IMAGE, name)
    host.spec("puller.json", name=host.name("puller"), image=reference)
    host.spec("holder.json", name=host.name("holder"), image=reference, update={"pull": False})
    host.configure(pull="true")
    host.converge()
    publish_without_local_update(registry, IMAGE_2, name, keep_local=IMAGE)
    host.converge()
    new_id = docker("image", "inspect", "--format", "{{.Id}}", IMAGE_2).strip()
    assert host.inspect(host.name("puller"))["Image"] == new_id
    assert host.inspect(host.name("holder"))["Image"] == new_id  # the tag is the truth


def test_missing_image_that_cannot_be_pulled_fails_only_its_spec(host):
    host.spec("broken.json", name=host.name("broken"), image="localhost:1/nothing-here:1")
    host.spec("web.json", name=host.name("web"))
    result = host.run()
    assert result.returncode == 1
    assert "broken.json: image: localhost:1/nothing-here:1 is not available locally and pulling it failed" in result.stderr
    assert f"cannot start {host.name('broken')}" in result.stderr
    assert host.inspect(host.name("web"))["State"]["Running"]


def test_failed_pull_of_a_present_image_keeps_the_container(host):
    reference = made(f"localhost:1/offline-{uuid.uuid4().hex[:8]}:1")  # no registry listens on port 1
    docker("tag", IMAGE, reference)
    host.spec("web.json", name=host.name("web"), image=reference)
    host.configure(pull="true")
    host.converge()
    before = host.running_ids()
    result = host.converge()
    assert f"pull of {reference} failed; keeping the local image" in result.stderr
    assert host.running_ids() == before
    docker("rmi", reference)


def test_cleanup_removes_the_image_a_replaced_container_used(host):
    old_tag, old_id = unique_image("cleanup-old")
    new_tag, new_id = unique_image("cleanup-new")
    path = host.spec("web.json", name=host.name("web"), image=old_tag)
    host.converge()
    path.write_text(json.dumps({"name": host.name("web"), "image": new_tag}))
    result = host.converge()
    assert "rmi " + old_tag in result.stderr
    assert subprocess.run(["docker", "image", "inspect", old_id], capture_output=True).returncode != 0
    assert docker("image", "inspect", "--format", "{{.Id}}", new_tag).strip() == new_id
    docker("rmi", new_tag, check=False)


def test_cleanup_never_removes_an_image_a_spec_names(host):
    tag, image_id = unique_image("declared")
    host.spec("web.json", name=host.name("web"), image=tag)
    host.converge()
    docker("rm", "--force", host.name("web"))  # nothing runs it now, but a spec still names it
    host.converge()
    assert docker("image", "inspect", "--format", "{{.Id}}", tag).strip() == image_id
    host.spec("web.json", name=host.name("web"), image=IMAGE)
    host.converge()
    docker("rmi", tag, check=False)


# --- eager updates and dependencies ------------------------------------------------


def running_count(host, identity):
    return len(docker("ps", "-q", "--filter", f"label=dockerup.scope={host.scope}", "--filter",
                      f"label=dockerup.id={identity}", "--filter", "status=running").split())


def test_eager_update_never_leaves_the_spec_without_a_running_container(host):
    web = host.name("web")
    path = host.spec("web.json", name=web, env={"V": "1"}, update={"eager": True})
    host.converge()
    seen, done = [], threading.Event()

    def watch():
        while not done.is_set():
            seen.append(running_count(host, web))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        path.write_text(json.dumps({"name": web, "image": IMAGE, "env": {"V": "2"}, "update": {"eager": True}}))
        result = host.converge()
    finally:
        done.set()
        watcher.join()
    assert len(seen) > 10 and min(seen) >= 1, seen
    assert f"rename {web}.dockerup-new-" in result.stderr
    assert "V=2" in host.inspect(web)["Config"]["Env"]
    assert host.leftovers() == []


def test_failed_eager_update_keeps_the_old_container(host):
    web = host.name("web")
    path = host.spec("web.json", name=web, update={"eager": True})
    host.converge()
    old = host.inspect(web)["Id"]
    path.write_text(json.dumps({"name": web, "image": IMAGE, "command": ["sh", "-c", "echo bad config; exit 3"],
                                "update": {"eager": True}}))
    result = host.run()
    assert result.returncode == 1
    assert f"replacement of {web} exited with exit code 3; its last output: 'bad config'" in result.stderr
    assert f"{web} ({old[:12]}) keeps running" in result.stderr
    assert host.inspect(web)["Id"] == old and host.inspect(web)["State"]["Running"]
    assert host.leftovers() == []


def test_unhealthy_eager_replacement_keeps_the_old_container(host):
    healthy = {"command": ["CMD-SHELL", "test -e /tmp/ok || touch /tmp/ok"], "interval": 0.2, "retries": 1}
    web = host.name("web")
    path = host.spec("web.json", name=web, update={"eager": True}, healthCheck=healthy)
    host.converge()
    old = host.inspect(web)["Id"]
    sick = {"command": ["CMD-SHELL", "echo never healthy; exit 1"], "interval": 0.2, "retries": 2}
    path.write_text(json.dumps({"name": web, "image": IMAGE, "update": {"eager": True}, "healthCheck": sick}))
    result = host.run()
    assert result.returncode == 1
    assert f"replacement of {web} is unhealthy: never healthy" in result.stderr
    assert host.inspect(web)["Id"] == old
    assert host.leftovers() == []


def test_eager_update_with_a_fixed_host_port_falls_back_to_stop_first(host):
    port, web = free_port(), host.name("web")
    path = host.spec("web.json", name=web, portMappings=[{"containerPort": 80, "hostPort": port}],
                     update={"eager": True})
    host.converge()
    path.write_text(json.dumps({"name": web, "image": IMAGE, "env": {"V": "2"}, "update": {"eager": True},
                                "portMappings": [{"containerPort": 80, "hostPort": port}]}))
    result = host.converge()
    assert f"replacing without update.eager: host port {port}/tcp cannot be bound by two containers at once" in result.stderr
    assert host.inspect(web)["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == str(port)


def test_failed_replacement_puts_the_old_container_back(host):
    port, web = free_port(), host.name("web")
    path = host.spec("web.json", name=web)
    host.converge()
    old = host.inspect(web)["Id"]
    docker("run", "-d", "--name", host.name("squatter"), "--label", host.label, "-p", f"{port}:80", IMAGE)
    path.write_text(json.dumps({"name": web, "image": IMAGE,
                                "portMappings": [{"containerPort": 80, "hostPort": port}]}))
    result = host.run()
    assert result.returncode == 1
    assert f"replacement of {web} failed:" in result.stderr and f"put back {web} (" in result.stderr
    restored = host.inspect(web)
    assert restored["Id"] == old and restored["State"]["Running"]
    assert host.leftovers() == []
    assert len(docker("ps", "-aq", "--filter", f"label=dockerup.scope={host.scope}", "--filter",
                      f"label=dockerup.id={web}").split()) == 1


def test_dependents_are_recreated_after_their_dependency(host):
    data, app, sidecar = host.name("data"), host.name("app"), host.name("sidecar")
    path = host.spec("data.json", name=data, volumes=[{"containerPath": "/shared"}])
    host.spec("app.json", name=app, volumes=[{"from": data}], links=[f"{data}:db"])
    host.spec("sidecar.json", name=sidecar, network=f"container:{app}")
    host.converge()
    before = host.running_ids()
    path.write_text(json.dumps({"name": data, "image": IMAGE, "env": {"V": "2"},
                                "volumes": [{"containerPath": "/shared"}]}))
    result = host.converge()
    after = host.running_ids()
    assert all(after[name] != before[name] for name in (data, app, sidecar)), (before, after)
    commands = [c for c in changing_commands(result.stderr) if " run " in c]
    order = [next(n for n in (data, app, sidecar) if f"--name {n} " in c) for c in commands]
    assert order == [data, app, sidecar]
    assert f"{data} is being recreated, and this container refers to it" in result.stderr
    assert host.inspect(app)["HostConfig"]["VolumesFrom"] == [data]
    assert host.inspect(sidecar)["HostConfig"]["NetworkMode"] == f"container:{after[app]}"


def test_interrupted_update_leftovers_are_finished(host):
    web = host.name("web")
    host.spec("web.json", name=web)
    host.converge()
    current = host.inspect(web)
    # What a crash between "run the replacement" and "rename it" leaves behind:
    # the old container renamed aside, the new one under its temporary name.
    labels = current["Config"]["Labels"]
    docker("rename", web, f"{web}.dockerup-old-{current['Id'][:12]}")
    args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    docker("run", "-d", "--name", f"{web}.dockerup-new-{labels['dockerup.hash'][-8:]}", *args, IMAGE)
    host.converge()
    assert set(host.managed()) == {web}
    assert host.leftovers() == []


# --- modes, locking and output -----------------------------------------------------


def test_a_held_lock_makes_a_second_run_exit_at_once(host):
    host.spec("web.json", name=host.name("web"))
    host.cache.mkdir(mode=0o700)
    fd = os.open(host.cache, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        result = host.run()
        assert time.monotonic() - started < 5
    finally:
        os.close(fd)
    assert result.returncode == 3
    assert f"another dockerup run is converging this host (it holds the lock on {host.cache})" in result.stderr
    assert host.managed() == {}


def test_server_picks_up_a_new_spec_and_exits_on_sigterm(host):
    host.spec("web.json", name=host.name("web"))
    server = subprocess.Popen(host.command("--server"), stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: host.name("web") in host.running_ids(), timeout=30)
        host.spec("late.json", name=host.name("late"))
        wait_until(lambda: host.name("late") in host.running_ids(), timeout=30)
        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert server.wait(timeout=15) == 0
        assert time.monotonic() - started < 5
    finally:
        server.kill()
        server.wait()
    assert "stopping on signal" in server.stderr.read()


def test_server_survives_an_unreachable_daemon(host):
    host.spec("web.json", name=host.name("web"))
    server = subprocess.Popen(host.command("--server", "--remote", "unix:///nonexistent/docker.sock"),
                              stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    assert server.poll() is None, "the server exited on a failed sync"
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0
    assert server.stderr.read().count("Cannot connect to the Docker daemon") >= 2


# Docker Hub names as people write them, and tags with capitals: each must be the
# image `docker images` lists, with no pull (there is no registry to pull from). The
# names are this test run's own: a run beside it tags and removes its own.
RUN = uuid.uuid4().hex[:8]
HUB_IMAGE = f"dockerup-hub-test-{RUN}:1"  # an official image's name, as docker lists it


@pytest.mark.parametrize("local, written", [
    (HUB_IMAGE, f"library/{HUB_IMAGE}"),
    (HUB_IMAGE, f"docker.io/library/{HUB_IMAGE}"),
    (HUB_IMAGE, f"index.docker.io/{HUB_IMAGE}"),
    (f"dockerup-test/app-{RUN}:V2", f"dockerup-test/app-{RUN}:V2"),
], ids=["library/", "docker.io/library/", "index.docker.io/", "capitals in the tag"])
def test_an_image_is_found_however_its_name_is_written(host, local, written):
    web = host.name("web")
    docker("tag", IMAGE, local)
    try:
        host.spec("web.json", name=web, image=written)
        result = host.converge()
        assert [c.split(" #")[0].split()[-1] for c in changing_commands(result.stderr)] == [written]
        assert " pull " not in result.stderr
        assert host.inspect(web)["Image"] == docker("image", "inspect", "--format", "{{.Id}}", IMAGE).strip()
        assert changing_commands(host.converge().stderr) == []
    finally:
        docker("rmi", local, check=False)


def test_dry_run_prints_commands_and_changes_nothing(host):
    web = host.name("web")
    host.spec("web.json", name=web, env={"TOKEN": "s3cret"})
    result = host.run("--dry-run")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"docker -H {ENGINE} run --detach --name {web} --label dockerup.id={web} ")
    assert " --env TOKEN " in lines[0] and lines[0].endswith(f"{IMAGE}  # absent ({web})")
    assert "s3cret" not in result.stdout + result.stderr
    assert host.managed() == {}
    shown = host.run("--dry-run", "--show-secrets")
    assert shown.stdout.startswith("env TOKEN=s3cret docker -H ")


def test_dry_run_lines_run_as_printed(host):
    host.spec("web.json", name=host.name("web"), command="sh -c 'echo \"a b\"; sleep 1000'", env={"X": "1"})
    printed = host.run("--dry-run", "--show-secrets").stdout
    subprocess.run(["bash", "-c", printed], check=True, capture_output=True)
    # What the printed line made is exactly what dockerup would make: nothing to do.
    assert changing_commands(host.converge().stderr) == []


def test_dry_run_lines_without_secrets_run_as_printed_with_the_variables_exported(host):
    web = host.name("web")
    host.spec("web.json", name=web, env={"TOKEN": "s3cret", "N": 2})
    printed = host.run("--dry-run").stdout
    assert "s3cret" not in printed
    subprocess.run(["bash", "-c", printed], check=True, capture_output=True,
                   env={**os.environ, "TOKEN": "s3cret", "N": "2"})
    assert env_of(host.inspect(web))["TOKEN"] == "s3cret"
    assert changing_commands(host.converge().stderr) == []


def test_secrets_never_reach_the_log(host):
    web = host.name("web")
    host.spec("web.json", name=web, env={"PASSWORD": "hunter2", "HTTPS_PROXY": "http://u:hunter3@proxy:3128"})
    result = host.converge("-v")
    assert "hunter2" not in result.stderr and "hunter3" not in result.stderr
    assert " --env PASSWORD " in result.stderr and " --env 'HTTPS_PROXY=***' " in result.stderr
    assert {key: value for key, value in env_of(host.inspect(web)).items() if key in ("PASSWORD", "HTTPS_PROXY")} \
        == {"PASSWORD": "hunter2", "HTTPS_PROXY": "http://u:hunter3@proxy:3128"}


def env_of(inspect):
    return dict(item.split("=", 1) for item in inspect["Config"]["Env"] or [])


def command_lines():
    """What ps shows every user of the host: every process's command line."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass  # the process ended meanwhile
    return lines


def test_env_values_are_on_no_command_line(host, tmp_path):
    """A docker stand-in waits before running the real `docker run`, so the test can
    read every command line while it is on one: the values are in none of them."""
    secret = f"s3cret-{uuid.uuid4().hex}"
    web = host.name("web")
    host.spec("web.json", name=web, env={"TOKEN": secret, "MOTTO": f"also {secret}"})
    stand_in = tmp_path / "bin" / "docker"
    stand_in.parent.mkdir()
    stand_in.write_text(f'#!/bin/sh\ncase " $* " in *" run "*) sleep 2;; esac\nexec {shutil.which("docker")} "$@"\n')
    stand_in.chmod(0o755)
    run = subprocess.Popen(host.command(), stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PATH": f"{stand_in.parent}:{os.environ['PATH']}"})
    waiting = wait_until(lambda: [line for line in command_lines() if " run --detach " in line and str(stand_in) in line],
                         what="the docker run")
    seen = command_lines()
    assert run.wait(timeout=60) == 0, run.stderr.read()
    assert " --env MOTTO --env TOKEN " in waiting[0]
    assert [line for line in seen if secret in line] == []
    assert env_of(host.inspect(web))["TOKEN"] == secret


def test_log_option_values_are_masked_unless_shown(host):
    secret = f"T0KEN-{uuid.uuid4().hex}"
    web = host.name("web")
    host.spec("web.json", name=web, logConfiguration={"logDriver": "splunk", "options": {
        "splunk-url": "http://127.0.0.1:1", "splunk-token": secret, "splunk-verify-connection": "false"}})
    dry = host.run("--dry-run")
    assert "--log-opt 'splunk-token=***'" in dry.stdout and secret not in dry.stdout + dry.stderr
    shown = host.run("--dry-run", "--show-secrets")
    assert f"--log-opt splunk-token={secret}" in shown.stdout
    ran = host.converge("-v")
    assert "--log-opt 'splunk-token=***'" in ran.stderr and secret not in ran.stderr
    assert host.inspect(web)["HostConfig"]["LogConfig"]["Config"]["splunk-token"] == secret


def test_relative_original_default_remote_works_from_any_directory(host, tmp_path):
    """The original documented `unix://var/run/docker.sock`, a relative path to the docker
    CLI. Written that way for the engine under test: never the system engine when
    DOCKER_HOST names another, whose containers this run would remove."""
    host.spec("web.json", name=host.name("web"))
    host.configure(remote=ENGINE.replace("unix:///", "unix://", 1))
    result = subprocess.run(host.command(), capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"docker -H {ENGINE} run" in result.stderr


def test_unreachable_daemon_exits_2_with_one_line(host):
    host.spec("web.json", name=host.name("web"))
    result = host.run("--remote", "unix:///nonexistent/docker.sock")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Cannot connect to the Docker daemon" in errors[0]
    assert "Traceback" not in result.stderr
