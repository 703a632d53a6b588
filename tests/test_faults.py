"""Faults injected into real runs. Each ends the same way: the run that met the
fault says so in lines of its own (no traceback) and harms nothing that was
fine, and the next run converges the host with nothing declared lost.

Faults that stop the daemon use a private dockerd (the shared engine must never
stop); mid-run faults come from a `docker` stand-in on PATH (faults_support.Wrapper)
that kills dockerup, hangs, or breaks something at its Nth call of a subcommand."""

import json
import os
import socket
import stat
import subprocess
import time
import uuid

import pytest

from conftest import IMAGE, IMAGE_2, Host, Registry, docker
from faults_support import (HANG, KILL_DOCKERUP, WITHOUT_FILE_ACCESS, PrivateEngine, Wrapper, all_names,
                            assert_clean_output, assert_one_problem, changing_commands, error_lines, leftovers,
                            stop_process_command)

TIMEOUT = 3  # the `timeout` setting for the hang faults


def spec_doc(name, **fields):
    return {"name": name, "image": IMAGE, **fields}


def write_spec(host, name, **fields):
    path = host.confdir / f"{name}.json"
    path.write_text(json.dumps(spec_doc(name, **fields)))
    return path


def running(names=None):
    """name -> id of the running containers on the shared engine."""
    found = docker("ps", "--format", "{{.Names}} {{.ID}}").splitlines()
    ids = dict(line.split() for line in found)
    return {n: i for n, i in ids.items() if names is None or n in names}


def full_id(name):
    return docker("inspect", "--format", "{{.Id}}", name).strip()


def env_of(name):
    return json.loads(docker("inspect", "--format", "{{json .Config.Env}}", name))


def assert_converged_quietly(host, **kwargs):
    """A further run has nothing left to do."""
    result = host.converge(**kwargs)
    assert changing_commands(result.stderr) == [], result.stderr
    assert_clean_output(result)


# ---- The daemon stops (a private engine) -------------------------------------------------

@pytest.fixture(scope="module")
def private_engine(engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("dkf", numbered=True)
    private = PrivateEngine(root)
    try:
        private.start()
        private.load_test_images()
        yield private
    finally:
        private.close()


@pytest.fixture
def private(private_engine, tmp_path):
    """A host pointed at the private engine, which is running and empty."""
    private_engine.ensure_running()
    private_engine.clean()
    host = Host(tmp_path)
    host.configure(remote=private_engine.remote)
    host.engine = private_engine
    yield host
    private_engine.ensure_running()


def test_daemon_stopped_before_a_run(private):
    engine = private.engine
    for name in ("web", "api"):
        write_spec(private, name)
    private.converge()
    before = engine.running()
    engine.stop()
    write_spec(private, "late")

    started = time.monotonic()
    result = private.run()
    assert time.monotonic() - started < 10
    assert_one_problem(result, "Cannot connect to the Docker daemon", code=2)

    engine.start()
    private.converge()
    after = engine.running()
    assert set(after) == {"web", "api", "late"}
    # The same containers, started again: a stopped daemon loses nothing.
    assert {name: after[name] for name in before} == before
    assert_converged_quietly(private)


# (subcommand, nth call): where the daemon goes away during a run that creates
# one container and replaces another (stop-first).
DAEMON_STOPS = [
    pytest.param("run", 1, id="at the first docker run"),
    pytest.param("stop", 1, id="at the stop of the old container"),
    pytest.param("rename", 1, id="after the old container stopped"),
    pytest.param("run", 2, id="after the old container was put aside"),
    pytest.param("rm", 1, id="at the removal of the old container"),
]


@pytest.mark.parametrize("subcommand, nth", DAEMON_STOPS)
def test_daemon_stopped_in_the_middle_of_a_run(private, tmp_path, subcommand, nth):
    engine = private.engine
    write_spec(private, "web", env={"V": "1"})
    write_spec(private, "api")
    private.converge()
    api = engine.running()["api"]
    write_spec(private, "web", env={"V": "2"})
    write_spec(private, "new")
    wrapper = Wrapper(tmp_path / "bin", subcommand, nth, before=engine.stop_command)

    result = private.run(env=wrapper.env)
    assert wrapper.fired
    assert engine.process.wait(60) is not None
    assert_clean_output(result)
    assert result.returncode in (1, 2), result.stderr
    assert error_lines(result.stderr) and all("Cannot connect to the Docker daemon" in line
                                              for line in error_lines(result.stderr)), result.stderr

    engine.ensure_running()
    private.converge()
    containers = engine.containers()
    assert set(containers) == {"web", "api", "new"}, set(containers)
    assert all(c["State"]["Running"] for c in containers.values())
    assert "V=2" in containers["web"]["Config"]["Env"]
    assert containers["api"]["Id"] == api
    assert_converged_quietly(private)


# ---- dockerup killed (SIGKILL) in the middle of an update ---------------------------------

# (update.eager, subcommand, nth call, kill before or after that docker call)
KILLS = [
    pytest.param(False, "rename", 1, "before", id="stop-first: old stopped, not yet put aside"),
    pytest.param(False, "run", 1, "before", id="stop-first: old put aside, new not started"),
    pytest.param(False, "run", 1, "after", id="stop-first: new started, not yet settled"),
    pytest.param(False, "rm", 1, "before", id="stop-first: new settled, old not removed"),
    pytest.param(True, "run", 1, "after", id="eager: new started under its temporary name"),
    pytest.param(True, "rename", 1, "after", id="eager: old renamed aside, new not renamed"),
    pytest.param(True, "rename", 2, "after", id="eager: new renamed, old still running"),
    pytest.param(True, "stop", 1, "after", id="eager: old stopped, not removed"),
]


@pytest.mark.parametrize("eager, subcommand, nth, when", KILLS)
def test_sigkill_in_the_middle_of_a_replace(host, tmp_path, eager, subcommand, nth, when):
    write_spec(host, "web", env={"V": "1"}, update={"eager": eager})
    write_spec(host, "api")
    host.converge()
    api = full_id("api")
    write_spec(host, "web", env={"V": "2"}, update={"eager": eager})
    action = {"before": KILL_DOCKERUP, "after": ":"}[when], {"before": ":", "after": KILL_DOCKERUP}[when]
    wrapper = Wrapper(tmp_path / "bin", subcommand, nth, *action)

    killed = host.run(env=wrapper.env)
    assert killed.returncode == -9, killed.stderr
    assert wrapper.fired

    result = host.converge()
    assert_clean_output(result)
    names = all_names()
    assert leftovers(names) == []
    assert "web" in running() and "V=2" in env_of("web")
    assert full_id("api") == api
    assert_converged_quietly(host)


def test_sigkill_right_after_a_create(host, tmp_path):
    write_spec(host, "web")
    wrapper = Wrapper(tmp_path / "bin", "run", 1, after=KILL_DOCKERUP)
    assert host.run(env=wrapper.env).returncode == -9
    created = full_id("web")
    host.converge()
    assert full_id("web") == created  # adopted by its labels, not made twice
    assert_converged_quietly(host)


# ---- A docker command that hangs ------------------------------------------------------------

# (subcommand, nth, when the stand-in hangs): before docker ran, or after it did
# its work and never returned (the daemon acted; the client did not say so).
HANGS = [
    pytest.param("ps", 1, "before", id="reading the containers"),
    pytest.param("inspect", 1, "before", id="inspecting the containers"),
    pytest.param("images", 1, "before", id="listing the images"),
    pytest.param("run", 1, "before", id="creating a container"),
    pytest.param("run", 1, "after", id="creating a container, after the daemon did"),
    pytest.param("stop", 1, "before", id="stopping the old container of a replace"),
    pytest.param("run", 2, "before", id="starting the replacement"),
    pytest.param("run", 2, "after", id="starting the replacement, after the daemon did"),
    pytest.param("rm", 1, "before", id="removing the replaced container"),
]


@pytest.mark.parametrize("subcommand, nth, when", HANGS)
def test_a_hanging_docker_command_times_out(host, tmp_path, subcommand, nth, when):
    write_spec(host, "web", env={"V": "1"})
    write_spec(host, "api")
    host.converge()
    api = full_id("api")
    write_spec(host, "web", env={"V": "2"})
    write_spec(host, "new")
    host.configure(timeout=TIMEOUT)
    hang = (HANG, ":") if when == "before" else (":", HANG)
    wrapper = Wrapper(tmp_path / "bin", subcommand, nth, *hang)

    started = time.monotonic()
    result = host.run(env=wrapper.env, timeout=120)
    elapsed = time.monotonic() - started
    assert wrapper.fired
    # One timeout, plus the few seconds a run takes: never "forever".
    assert elapsed < TIMEOUT + 15, elapsed
    assert_clean_output(result)
    # A hung read leaves nothing to plan with: the run could not run (2). A hung
    # change fails that action, and the rest of the run goes on (1).
    assert result.returncode == (2 if subcommand in ("ps", "inspect", "images") else 1), result.stderr
    assert any(f"no answer within {TIMEOUT} seconds (the timeout setting); gave up" in line
               for line in error_lines(result.stderr)), result.stderr

    host.converge()
    assert leftovers(all_names()) == []
    assert set(running(["web", "api", "new"])) == {"web", "api", "new"}
    assert "V=2" in env_of("web")
    assert full_id("api") == api
    assert_converged_quietly(host)


def test_no_container_runs_twice_after_a_hang(host, tmp_path):
    """When `docker run` of a replacement did its work but never answered, the
    old container must not be started again beside the new one: with a fixed
    host port that is a conflict, without one two copies of the service run."""
    write_spec(host, "web", env={"V": "1"})
    host.converge()
    write_spec(host, "web", env={"V": "2"})
    host.configure(timeout=TIMEOUT)
    wrapper = Wrapper(tmp_path / "bin", "run", 1, after=HANG)
    host.run(env=wrapper.env)
    copies = [n for n in running() if n == "web" or n.startswith("web.dockerup-")]
    assert len(copies) == 1, copies


# ---- The registry, and images ------------------------------------------------------------------

@pytest.fixture
def own_registry(engine, tmp_path):
    """A registry of this test's own: stopping the session's would disturb others."""
    root = tmp_path / "registry"
    root.mkdir()
    registry = Registry(root)
    yield registry
    registry.stop()


def stop_registry_command(registry):
    return stop_process_command(registry.process.pid)


def restart(registry):
    registry.process.wait(10)
    registry.start()


def test_registry_down_during_a_pull(host, tmp_path, own_registry):
    present = own_registry.push(IMAGE, f"faults-present-{uuid.uuid4().hex[:6]}:1")
    missing = own_registry.push(IMAGE_2, f"faults-missing-{uuid.uuid4().hex[:6]}:1")
    docker("rmi", missing)
    host.configure(pull="true")
    write_spec(host, "web", image=present)
    write_spec(host, "local", update={"pull": False})
    host.converge()
    before = running(["web", "local"])
    write_spec(host, "fresh", image=missing)
    wrapper = Wrapper(tmp_path / "bin", "pull", 1, before=stop_registry_command(own_registry))

    result = host.run(env=wrapper.env)
    assert wrapper.fired
    assert_one_problem(result, f"{host.confdir}/fresh.json: image: {missing} is not available locally")
    assert f"pull of {present} failed; keeping the local image" in result.stderr
    assert running(["web", "local"]) == before

    restart(own_registry)
    host.converge()
    assert set(running(["web", "local", "fresh"])) == {"web", "local", "fresh"}
    assert running(["web", "local"]) == before
    docker("rmi", present, missing, check=False)


@pytest.mark.parametrize("registry_up", [True, False], ids=["registry up", "registry down until the next run"])
def test_image_deleted_between_runs(host, own_registry, registry_up):
    reference = own_registry.push(IMAGE, f"faults-deleted-{uuid.uuid4().hex[:6]}:1")
    write_spec(host, "web", image=reference)
    host.converge()
    before = full_id("web")
    docker("rmi", reference)
    if not registry_up:
        own_registry.stop()
        result = host.run()
        assert_one_problem(result, f"{host.confdir}/web.json: image: {reference} is not available locally",
                           "keeps running as it is")
        assert running(["web"]) and full_id("web") == before
        own_registry.start()
    host.converge()
    assert full_id("web") == before  # pulled back: the same image, nothing to replace
    assert_converged_quietly(host)
    docker("rmi", reference, check=False)


# ---- A host port taken outside docker ------------------------------------------------------

@pytest.fixture
def taken_port():
    """A TCP port a process outside docker listens on, on every address."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        yield listener


def free_port():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def test_declared_host_port_already_taken(host, taken_port):
    port = taken_port.getsockname()[1]
    write_spec(host, "web", portMappings=[{"containerPort": 80, "hostPort": port}])
    write_spec(host, "api")
    result = host.run()
    assert_one_problem(result, f"{host.confdir}/web.json: ", f"{port}", "address already in use")
    assert "web" not in all_names()  # the half-created container is gone
    assert "api" in running()

    taken_port.close()
    host.converge()
    assert "web" in running()
    assert_converged_quietly(host)


def test_replacement_whose_new_host_port_is_taken_puts_the_old_back(host, taken_port):
    port = taken_port.getsockname()[1]
    write_spec(host, "web", portMappings=[{"containerPort": 80, "hostPort": free_port()}])
    host.converge()
    before = full_id("web")
    write_spec(host, "web", portMappings=[{"containerPort": 80, "hostPort": port}])
    result = host.run()
    assert_one_problem(result, f"{host.confdir}/web.json: ", "address already in use")
    assert running(["web"]) and full_id("web") == before
    assert leftovers(all_names()) == []

    taken_port.close()
    host.converge()
    assert full_id("web") != before and "web" in running()
    assert_converged_quietly(host)


# ---- The cache directory ---------------------------------------------------------------------

def mount_tmpfs(path, options):
    path.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)


def unmount(path):
    subprocess.run(["umount", str(path)], capture_output=True, check=False)


@pytest.fixture
def cache_mount(host):
    yield host.cache
    unmount(host.cache)


def fill(directory):
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:  # ENOSPC: full
            pass


@pytest.mark.parametrize("kind", ["read-only", "full"])
def test_a_cache_dir_that_cannot_be_written(host, cache_mount, kind):
    write_spec(host, "web")
    if kind == "read-only":
        mount_tmpfs(cache_mount, "ro,size=1m,mode=700")
    else:
        mount_tmpfs(cache_mount, "size=16k,mode=700")
        fill(cache_mount)
    result = host.run()
    assert_clean_output(result)
    assert result.returncode == 0, result.stderr
    assert "cannot write the cache" in result.stderr
    assert "web" in running()
    unmount(cache_mount)
    assert_converged_quietly(host)


def test_a_cache_dir_that_cannot_be_created(host, tmp_path):
    parent = tmp_path / "ro"
    mount_tmpfs(parent, "ro,size=1m")
    try:
        host.configure(cache=parent / "cache")
        write_spec(host, "web")
        result = host.run()
        assert_one_problem(result, f"{parent}/cache: cannot create the cache directory: Read-only file system", code=2)
        assert "web" not in all_names()
    finally:
        unmount(parent)
    host.converge()
    assert "web" in running()


def test_cache_files_are_private_whatever_the_umask(host):
    """Cache files hold user-data, env values included: 0600 in a 0700 directory,
    even under cron's umask 0 and in a directory someone made 0755."""
    host.cache.mkdir(mode=0o755)
    host.cache.chmod(0o755)
    (host.cache / "state.json").write_text("{}")
    (host.cache / "state.json").chmod(0o644)
    write_spec(host, "web")
    result = subprocess.run(host.command(), capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(0))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(host.cache.stat().st_mode) == 0o700
    files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in host.cache.iterdir()}
    assert {"state.json", "validated.json"} <= set(files)
    assert files == dict.fromkeys(files, 0o600)


# What a crash can leave in a cache file written without fsync: zeros, nothing
# or half of it; or a file that some other hand changed.
CORRUPT_CACHE = [
    pytest.param("state.json", b"\0" * 64, id="state.json zero-filled"),
    pytest.param("state.json", b'{"version": 1, "images": ["sha256:', id="state.json truncated"),
    pytest.param("state.json", b"null", id="state.json null"),
    pytest.param("state.json", b'["a", 1]', id="state.json an array"),
    pytest.param("state.json", b'{"version": 1, "failures": {"web": {"at": "x"}}}', id="state.json a bad failure"),
    pytest.param("state.json", b'{"version": 99}', id="state.json another version"),
    pytest.param("validated.json", b"\0" * 64, id="validated.json zero-filled"),
    pytest.param("validated.json", b"null", id="validated.json null"),
    pytest.param("validated.json", b"7", id="validated.json a number"),
]


@pytest.mark.parametrize("name, content", CORRUPT_CACHE)
def test_a_corrupt_cache_file_is_not_fatal(host, name, content):
    """A damaged cache file costs at most a retry of a failed update: it must not stop runs."""
    write_spec(host, "web")
    host.converge()
    (host.cache / name).write_bytes(content)
    write_spec(host, "api")
    result = host.run()
    assert_clean_output(result)
    assert result.returncode == 0, result.stderr
    assert set(running(["web", "api"])) == {"web", "api"}
    assert_converged_quietly(host)


# A cache someone else could write to is refused before anything is read or run:
# a file planted there would be trusted (user-data.json runs as the last good user-data).
NOBODY = 65534


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry run"])
def test_a_cache_dir_owned_by_another_user_is_refused(host, dry_run):
    host.cache.mkdir(mode=0o700)
    os.chown(host.cache, NOBODY, NOBODY)
    write_spec(host, host.name("web"))
    result = host.run(*(["--dry-run"] if dry_run else []))
    assert_one_problem(result, f"{host.cache}: refusing the cache directory: it belongs to nobody (uid 65534), "
                               "not to root (uid 0) running dockerup", code=2)
    assert result.stdout == ""
    assert host.name("web") not in all_names()
    assert [path.name for path in host.cache.iterdir()] == []


@pytest.mark.parametrize("mode, writers", [(0o770, "its group"), (0o702, "others"), (0o1777, "its group and others")],
                         ids=["group-writable", "world-writable", "sticky world-writable"])
def test_a_cache_dir_others_can_write_to_is_refused(host, mode, writers):
    host.cache.mkdir()
    host.cache.chmod(mode)
    write_spec(host, host.name("web"))
    result = host.run()
    assert_one_problem(result, f"{host.cache}: refusing the cache directory: {writers} can write to it "
                               f"(mode {mode:04o})", code=2)
    assert host.name("web") not in all_names()
    assert stat.S_IMODE(host.cache.stat().st_mode) == mode


@pytest.mark.parametrize("mode, owner, problem", [
    (0o777, 0, "its group and others can write to it (mode 0777)"),
    (0o775, 0, "its group can write to it (mode 0775)"),
    (0o755, NOBODY, "it belongs to nobody (uid 65534), not to root (uid 0) running dockerup"),
], ids=["world-writable", "group-writable", "another user's"])
def test_a_cache_dir_is_not_created_in_an_untrusted_directory(host, tmp_path, mode, owner, problem):
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(mode)
    os.chown(parent, owner, owner)
    host.configure(cache=parent / "a" / "cache")
    write_spec(host, host.name("web"))
    result = host.run()
    assert_one_problem(result, f"{parent}: refusing to create the cache directory {parent}/a/cache in it: "
                               f"{problem}", code=2)
    assert host.name("web") not in all_names()
    assert list(parent.iterdir()) == []


def test_a_cache_dir_is_created_in_a_sticky_shared_directory(host, tmp_path):
    """Like /tmp: others can create entries there, but not move or replace ours."""
    parent = tmp_path / "tmp"
    parent.mkdir()
    parent.chmod(0o1777)
    host.configure(cache=parent / "a" / "cache")
    write_spec(host, host.name("web"))
    host.converge()
    assert host.name("web") in running()
    for path in (parent / "a", parent / "a" / "cache"):
        assert (stat.S_IMODE(path.stat().st_mode), path.stat().st_uid) == (0o700, 0)


def test_a_cache_dir_made_meanwhile_by_another_user_in_a_sticky_directory_is_refused(host, tmp_path):
    parent = tmp_path / "tmp"
    parent.mkdir()
    parent.chmod(0o1777)
    planted = parent / "cache"
    planted.mkdir(mode=0o700)
    os.chown(planted, NOBODY, NOBODY)
    host.configure(cache=planted)
    write_spec(host, host.name("web"))
    assert_one_problem(host.run(), f"{planted}: refusing the cache directory: it belongs to nobody", code=2)
    assert host.name("web") not in all_names()


def test_a_symlink_planted_at_a_cache_file_is_neither_read_nor_written_through(host, tmp_path):
    """The memory file says which images dockerup used (and may remove): a link in its
    place is not read, and the next write replaces the link, not what it points to."""
    import dockerup

    write_spec(host, host.name("web"))
    host.converge()
    memory = host.cache / dockerup.memory_file(host.scope)
    outside = tmp_path / "outside.json"
    outside.write_bytes(memory.read_bytes())
    memory.unlink()
    memory.symlink_to(outside)
    before = outside.read_bytes()
    write_spec(host, host.name("api"))
    result = host.run()
    assert_clean_output(result)
    assert result.returncode == 0, result.stderr
    assert (f"{memory}: cannot read the cache: a symbolic link, which dockerup does not follow there; "
            "ignored") in result.stderr
    assert outside.read_bytes() == before
    assert not memory.is_symlink() and json.loads(memory.read_text())


def test_cache_writes_never_follow_a_symlink(tmp_path, monkeypatch):
    """The temporary file is named unguessably and created only where nothing is:
    a link planted at the name the previous release used ({name}.{pid}.tmp), or
    at the name itself, leaves the link's target alone."""
    import dockerup

    victim = tmp_path / "victim"
    victim.write_text("precious")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (cache / f"images.json.{os.getpid()}.tmp").symlink_to(victim)
    (cache / "images.json").symlink_to(victim)
    dockerup.write_cache_bytes(str(cache), "images.json", b"[]")
    assert victim.read_text() == "precious"
    assert (cache / "images.json").read_bytes() == b"[]" and not (cache / "images.json").is_symlink()

    monkeypatch.setattr("secrets.token_hex", lambda n: "guessed")
    (cache / "validated.json.guessed.tmp").symlink_to(victim)
    dockerup.write_cache_bytes(str(cache), "validated.json", b"[]")
    assert victim.read_text() == "precious"
    assert not (cache / "validated.json").exists()


# ---- A spec that turns invalid while its container runs ----------------------------------

def run_without_file_access(host):
    """Root reads any file; without CAP_DAC_OVERRIDE it is refused like anyone."""
    return subprocess.run(WITHOUT_FILE_ACCESS + host.command(), capture_output=True, text=True, timeout=120)


TURNS_INVALID = [
    pytest.param(lambda p: p.write_text('{"name": "web", "image": '), "invalid JSON", id="truncated mid-write"),
    pytest.param(lambda p: p.write_text(""), "empty file", id="emptied"),
    pytest.param(lambda p: p.write_text('{"name": "web", "image": "dockerup-test/app:1",}'), "invalid JSON",
                 id="trailing comma"),
    pytest.param(lambda p: p.write_text(json.dumps(spec_doc("web", cpu="512"))), "cpu: ", id="wrong type"),
    pytest.param(lambda p: p.write_text(json.dumps(spec_doc("web", portMapping=[]))), "portMapping: unknown field",
                 id="typo in a field name"),
    pytest.param(lambda p: p.write_text(json.dumps([spec_doc("web")])), "got an array", id="not an object"),
    pytest.param(lambda p: p.write_text(json.dumps(spec_doc("web", links=["nowhere"]))),
                 "links[0]: 'nowhere' names no declared container", id="dangling reference"),
    pytest.param(lambda p: p.write_text(json.dumps(spec_doc("my web"))), "name: ", id="invalid name"),
    pytest.param(lambda p: p.write_bytes(b'{"name": "w\xe9b", "image": "dockerup-test/app:1"}'), "not valid UTF-8",
                 id="saved as latin-1"),
    pytest.param(lambda p: p.chmod(0), "cannot read: Permission denied", id="unreadable"),
]


@pytest.mark.parametrize("spoil, message", TURNS_INVALID)
def test_a_spec_that_turns_invalid_keeps_its_container(host, spoil, message):
    path = write_spec(host, "web", env={"V": "1"})
    write_spec(host, "api")
    host.converge()
    before = running(["web", "api"])
    good = path.read_bytes()
    spoil(path)
    result = run_without_file_access(host) if message.startswith("cannot read") else host.run()
    assert_one_problem(result, f"{path}: ", message)
    assert running(["web", "api"]) == before  # an invalid edit is not a removal

    path.chmod(0o644)
    path.write_bytes(good)
    assert_converged_quietly(host)
    assert running(["web", "api"]) == before


def test_a_spec_whose_name_clashes_with_another_file_keeps_its_container(host):
    write_spec(host, "web")
    host.converge()
    before = running(["web"])
    (host.confdir / "copy.json").write_text(json.dumps(spec_doc("web", env={"V": "2"})))
    result = host.run()
    assert_clean_output(result)
    assert result.returncode == 1
    assert len(error_lines(result.stderr)) == 2
    assert running(["web"]) == before


# ---- Two runs at the same moment -------------------------------------------------------------

def test_two_runs_started_at_the_same_moment(host, tmp_path):
    for name in ("web", "api", "db"):
        write_spec(host, name)
    # The first docker call is slow, so that the runs truly overlap.
    wrapper = Wrapper(tmp_path / "bin", "ps", 1, before="sleep 1")
    env = {**os.environ, **wrapper.env}
    runs = [subprocess.Popen(host.command(), stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outcomes = sorted((run.wait(60), run.stderr.read()) for run in runs)
    assert [code for code, _ in outcomes] == [0, 3], outcomes
    loser = outcomes[1][1]
    assert [line for line in loser.splitlines() if line.strip()] == error_lines(loser)
    assert "another dockerup run is converging this host" in loser
    names = all_names()
    assert sorted(n for n in names if n in ("web", "api", "db")) == ["api", "db", "web"]
    assert leftovers(names) == []
    assert_converged_quietly(host)


def test_two_servers_on_one_host_never_duplicate_a_container(host):
    for name in ("web", "api"):
        write_spec(host, name)
    servers = [subprocess.Popen(host.command("--server"), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 30
        while set(running(["web", "api"])) != {"web", "api"} and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # a few more cycles of both
    finally:
        for server in servers:
            server.terminate()
        codes = [server.wait(30) for server in servers]
    logs = [server.stderr.read() for server in servers]
    assert codes == [0, 0], logs
    assert all("Traceback" not in log for log in logs)
    assert set(running(["web", "api"])) == {"web", "api"}
    assert leftovers(all_names()) == []
