"""Timing, against the real engine: a server reacts to its spec files and its
configuration file within seconds, syncs fully on SIGHUP and every interval, and makes
no docker call while idle; update.rolling holds a new image until the host's turn,
remembers when it first saw it across runs, and then applies it."""

import json
import os
import re
import signal
import subprocess
import time
import uuid

import pytest

import dockerup
from conftest import IMAGE, IMAGE_2, LOCAL, build_image, docker, wait_until
from faults_support import Wrapper, assert_clean_output

REACTION_LIMIT = 5.0  # seconds from a file written to its container running, or removed
SUMMARY = re.compile(r" dockerup (?:INFO|ERROR) (?:converged|ran) in [0-9.]+s: ")


class Server:
    """`dockerup --server` run by a test, its log in a file."""

    def __init__(self, host, *args, env=None):
        self.log_path = host.root / f"server-{uuid.uuid4().hex[:6]}.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(host.command("--server", *args), stdout=subprocess.DEVNULL,
                                            stderr=log, env={**os.environ, **(env or {})})

    def log(self):
        return self.log_path.read_text()

    def syncs(self):
        return len(SUMMARY.findall(self.log()))

    def wait_for_syncs(self, count, timeout=30):
        wait_until(lambda: self.syncs() >= count, timeout=timeout, what=f"sync number {count} of the server")

    def stop(self):
        """SIGTERM; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@pytest.fixture
def serve(host):
    """Start servers for the host; each must exit 0 on SIGTERM at the end."""
    servers = []

    def start(*args, env=None):
        server = Server(host, *args, env=env)
        servers.append(server)
        return server

    yield start
    codes = [server.stop() for server in servers]
    for server in servers:
        assert_clean_output(subprocess.CompletedProcess([], 0, "", server.log()))
    assert codes == [0] * len(servers)


def running_image(name):
    """The image id of the running container `name`, or None."""
    found = docker("ps", "--filter", f"name=^{name}$", "--format", "{{.ID}}").split()
    return docker("inspect", "--format", "{{.Image}}", found[0]).strip() if found else None


def env_of(name):
    """The env of container `name`, "" while there is none (mid-replacement)."""
    return docker("inspect", "--format", "{{.Config.Env}}", name, check=False)


def exists(name):
    return bool(docker("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.ID}}").split())


def reaction(predicate, what):
    """Seconds until predicate() holds (polled every 50 ms), at most REACTION_LIMIT."""
    started = time.monotonic()
    wait_until(predicate, timeout=REACTION_LIMIT, interval=0.05, what=what)
    seconds = time.monotonic() - started
    print(f"{what}: {seconds:.2f}s")
    return seconds


# ---- a server that reacts at once -----------------------------------------------------

def test_a_new_spec_file_runs_and_a_deleted_one_goes_within_seconds(host, serve):
    web, db = host.name("web"), host.name("db")
    host.spec("db.json", name=db)
    server = serve("--interval", "300")
    server.wait_for_syncs(1)
    assert running_image(db)

    host.spec("web.json", name=web)
    reaction(lambda: running_image(web), "new spec file -> container running")
    path = host.spec("web.json", name=web, env={"V": "2"})
    reaction(lambda: "V=2" in env_of(web), "edited spec -> replaced")
    os.unlink(path)
    reaction(lambda: not exists(web), "deleted spec file -> container removed")
    assert running_image(db), "the other spec's container stays"
    log = server.log()
    assert log.count("web.json changed: syncing now, without pulls") == 3
    assert server.syncs() == 4 and " pull " not in log


def test_a_renamed_spec_file_keeps_its_container(host, serve):
    web = host.name("web")
    host.spec("web.json", name=web)
    server = serve("--interval", "300")
    server.wait_for_syncs(1)
    before = host.inspect(web)["Id"]
    os.rename(host.confdir / "web.json", host.confdir / "site.json")
    server.wait_for_syncs(2, timeout=REACTION_LIMIT)
    assert "site.json, web.json changed: syncing now" in server.log()
    assert host.inspect(web)["Id"] == before


def test_a_half_saved_spec_file_removes_nothing_and_the_rest_of_the_save_is_applied(host, serve):
    web = host.name("web")
    host.spec("web.json", name=web, env={"V": "1"})
    server = serve("--interval", "300")
    server.wait_for_syncs(1)
    before = host.inspect(web)["Id"]
    whole = json.dumps({"name": web, "image": IMAGE, "env": {"V": "2"}})
    (host.confdir / "web.json").write_text(whole[:20])
    server.wait_for_syncs(2, timeout=REACTION_LIMIT)
    assert re.search(r"ERROR .*/web\.json: line 1, column 10: invalid JSON: ", server.log())
    assert host.inspect(web)["Id"] == before and host.inspect(web)["State"]["Running"]
    (host.confdir / "web.json").write_text(whole)
    reaction(lambda: "V=2" in env_of(web), "rest of the save -> replaced")


def test_an_idle_server_makes_no_docker_call_between_intervals(host, serve, tmp_path):
    wrapper = Wrapper(tmp_path / "wrapper", match="no-such-subcommand")
    web = host.name("web")
    host.spec("web.json", name=web)
    server = serve("--interval", "300", env=wrapper.env)
    server.wait_for_syncs(1)
    calls = len(wrapper.calls())
    assert calls > 0 and running_image(web)
    time.sleep(4)
    assert len(wrapper.calls()) == calls, wrapper.calls()[calls:]
    host.spec("db.json", name=host.name("db"))
    server.wait_for_syncs(2, timeout=REACTION_LIMIT)
    synced = wrapper.calls()[calls:]
    assert not [call for call in synced if " pull " in f" {call} "], "a sync after a file change pulls nothing"
    assert len(synced) >= 4  # the three reads, and the docker run


def test_the_configuration_file_is_read_again_and_a_broken_one_changes_nothing(host, serve, tmp_path):
    web, db = host.name("web"), host.name("db")
    host.spec("web.json", name=web)
    other = tmp_path / "other.d"
    other.mkdir()
    (other / "db.json").write_text(json.dumps({"name": db, "image": IMAGE}))
    server = serve("--interval", "300")
    server.wait_for_syncs(1)

    host.config.write_text(host.config.read_text() + "settle=oops\n")
    wait_until(lambda: "keeping the configuration in use" in server.log(), timeout=REACTION_LIMIT)
    assert f"{host.config}:9: settle='oops': expected a number; keeping the configuration in use" in server.log()
    assert running_image(web) and server.syncs() == 1

    host.configure(confdir=other)
    reaction(lambda: running_image(db) and not exists(web), "configuration file changed -> other confdir applied")
    assert f"{host.config}: configuration changed (confdir): a full sync with it now" in server.log()
    (other / "web.json").write_text(json.dumps({"name": web, "image": IMAGE}))
    reaction(lambda: running_image(web), "spec file in the new confdir -> container running")


def test_sighup_pulls_and_applies_a_pushed_image_at_once(host, serve, registry):
    repository = f"hup-{uuid.uuid4().hex[:6]}"
    reference = registry.push(IMAGE, f"{repository}:latest")
    old = docker("image", "inspect", "--format", "{{.Id}}", IMAGE).strip()
    web = host.name("web")
    host.configure(pull="true")
    host.spec("web.json", name=web, image=reference)
    server = serve("--interval", "300")
    server.wait_for_syncs(1)
    assert running_image(web) == old

    registry.push(IMAGE_2, f"{repository}:latest")
    new = docker("image", "inspect", "--format", "{{.Id}}", IMAGE_2).strip()
    docker("tag", IMAGE, reference)  # this host still has the old image under the tag
    mark = len(registry.requests())
    time.sleep(2.5)
    assert running_image(web) == old and registry.downloads(repository, mark) == [], "nothing pulls between intervals"

    server.process.send_signal(signal.SIGHUP)
    reaction(lambda: running_image(web) == new, "SIGHUP -> pushed image running")
    log = server.log()
    assert "SIGHUP: a full sync now" in log and f" pull {reference}  # look for a newer image" in log


def test_sigterm_ends_a_server_with_exit_0(host):
    host.spec("web.json", name=host.name("web"))
    server = Server(host, "--interval", "300")
    server.wait_for_syncs(1)
    assert server.stop() == 0
    assert server.log().rstrip().endswith("dockerup INFO stopping on signal")


# ---- update.rolling --------------------------------------------------------------------

@pytest.fixture
def made_images():
    tags = []
    yield tags
    for tag in tags:
        docker("rmi", "-f", tag, check=False)


def image_with_turn(made_images, low, high=1.0):
    """A new image whose delay on this host is between `low` and `high` of any window:
    a delay is a fixed fraction of the window for one host and image."""
    while True:
        tag = f"{LOCAL}/rolling-{uuid.uuid4().hex[:8]}:1"
        made_images.append(tag)
        image_id = build_image(tag, tag)
        fraction = dockerup.rolling_delay(dockerup.host_identity(), image_id, 1.0)
        if low <= fraction < high:
            return tag, image_id, fraction


def rolling_service(host, registry, rolling):
    """A container of a rolling spec from the registry, converged; returns (name,
    reference, repository, the image it runs)."""
    repository = f"rolling-{uuid.uuid4().hex[:6]}"
    reference = registry.push(IMAGE, f"{repository}:latest")
    web = host.name("web")
    host.configure(pull="true")
    host.spec("web.json", name=web, image=reference, update={"rolling": rolling})
    host.converge()
    return web, reference, repository, running_image(web)


def push_newer(registry, reference, repository, newer):
    registry.push(newer, f"{repository}:latest")
    docker("tag", IMAGE, reference)  # the host has the old image under the tag until it pulls


def held_notes(stderr):
    return re.findall(r"WARNING (update of .* held until (.*) \(rolling: this host's turn in a .*s window\))$",
                      stderr, re.M)


def test_a_one_day_window_keeps_the_old_container_and_says_so_once(host, registry, made_images):
    web, reference, repository, old = rolling_service(host, registry, {"window": 86400})
    newer, new_id, fraction = image_with_turn(made_images, 0.01)  # at least 14 minutes
    push_newer(registry, reference, repository, newer)

    first = host.converge()
    assert_clean_output(first)
    ((note, until),) = held_notes(first.stderr)
    assert note.startswith(f"update of {web} to {reference} ({new_id[7:19]}) held until ")
    assert "a 86400s window" in first.stderr
    assert running_image(web) == old and not re.search(r"\$ docker .* (stop|rm|run) ", first.stderr)

    again = host.converge()
    assert held_notes(again.stderr) == [] and running_image(web) == old
    assert held_notes(host.converge("--dry-run").stderr) == [(note, until)]
    status = host.run("status", "--format", "json")
    (row,) = [row for row in json.loads(status.stdout)["containers"] if row["name"] == web]
    expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.mktime(time.strptime(until, "%Y-%m-%d %H:%M:%S"))))
    assert row["held"] == {"until": expected, "reason": "update.rolling: this host's turn in the window comes then"}


def test_a_short_window_applies_the_image_once_the_hosts_turn_comes(host, registry, made_images):
    newer, new_id, fraction = image_with_turn(made_images, 0.05)
    window = 4.0 / fraction  # this host's delay for the image: 4 seconds
    web, reference, repository, old = rolling_service(host, registry, {"window": window})
    push_newer(registry, reference, repository, newer)

    seen = time.time()
    first = host.converge()
    assert len(held_notes(first.stderr)) == 1 and running_image(web) == old
    state = json.loads((host.cache / f"state.{host.scope}.json").read_text())
    first_seen = state["sightings"][web]["at"]
    assert seen <= first_seen <= time.time()

    # A new dockerup process: the first-seen time is remembered, the note not repeated.
    time.sleep(max(0.0, first_seen + 2 - time.time()))
    held = host.converge()
    assert held_notes(held.stderr) == [] and running_image(web) == old
    state = json.loads((host.cache / f"state.{host.scope}.json").read_text())
    assert state["sightings"][web] == {"image_id": new_id, "at": first_seen}

    time.sleep(max(0.0, first_seen + 4 - time.time()))
    landed = host.converge()
    assert f"image updated: {old[7:19]} -> {new_id[7:19]}" in landed.stderr
    assert running_image(web) == new_id


def test_the_first_sighting_survives_a_restart_of_a_server(host, registry, made_images, serve):
    web, reference, repository, old = rolling_service(host, registry, True)
    newer, new_id, fraction = image_with_turn(made_images, 0.01)
    push_newer(registry, reference, repository, newer)
    first = serve("--interval", "300")
    first.wait_for_syncs(1)
    ((_, until),) = held_notes(first.log())
    assert first.stop() == 0
    second = serve("--interval", "300")
    second.wait_for_syncs(1)
    assert held_notes(second.log()) == [] and running_image(web) == old
    assert held_notes(host.converge("--dry-run").stderr)[0][1] == until
