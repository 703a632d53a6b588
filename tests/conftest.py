"""Shared fixtures. Engine tests use the real Docker engine on this machine; they
must never be skipped: without an engine they fail, loudly."""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERUP = ROOT / "dockerup.py"
sys.path.insert(0, str(ROOT))

import dockerup  # noqa: E402  (from the checkout)

# Test images: busybox in an otherwise empty root filesystem. Their shell traps
# TERM, so stopping one takes milliseconds, not docker's 10 second grace.
# Test images are named under a registry on loopback where nothing listens: should a
# test ever pull one that is missing, the pull fails at once instead of asking Docker
# Hub (no test traffic ever leaves this machine).
LOCAL = "localhost:1/dockerup-test"
IMAGE = f"{LOCAL}/app:1"
IMAGE_2 = f"{LOCAL}/app:2"
KEEP_RUNNING = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"
BUSYBOX_APPLETS = ("sh", "sleep", "cat", "echo", "env", "id", "hostname", "ls", "true", "false", "test", "kill",
                   "ps", "wget", "nc", "httpd", "touch", "mkdir", "rm", "grep", "ulimit", "stat", "head")
TEST_LABEL = "dockerup-test"  # on every container a test makes by hand
# The engine under test: DOCKER_HOST (a private dockerd, for runs side by side), else the system one.
ENGINE = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def pytest_configure(config):
    config.addinivalue_line("markers", "engine: needs the Docker engine (every test that uses the engine fixture)")
    config.addinivalue_line("markers", "pypi: installs pinned releases from PyPI into a venv of its own")


def pytest_collection_modifyitems(items):
    """`-m "not engine and not pypi"` selects the tests that need neither an engine nor
    a network: those run on every supported Python."""
    for item in items:
        if "engine" in item.fixturenames:
            item.add_marker(pytest.mark.engine)


def docker(*args, check=True, timeout=120, remote=None):
    """Run the docker CLI against DOCKER_HOST's engine, or `remote`'s."""
    result = subprocess.run(["docker", *(["-H", remote] if remote else []), *args], capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


# Repositories this test run made (a random name each), to untag at the end of the run.
MADE_REPOSITORIES = set()


def made(reference):
    """Remember the repository of an image reference a test made; returns the reference."""
    if reference not in (IMAGE, IMAGE_2):
        MADE_REPOSITORIES.add(dockerup.image_repository(reference))
    return reference


def remove_made_images():
    """Untag every reference of the repositories this run made, by tag and by digest:
    an image goes once its last reference does, while an image that is also shared
    (a test image pushed to a registry under a new name) keeps its other names."""
    references = set()
    for repository in MADE_REPOSITORIES:
        listing = docker("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}", repository,
                         check=False)
        for line in listing.splitlines():
            name, tag, digest = line.split()
            references.update([f"{name}:{tag}"] if tag != "<none>" else [])
            references.update([f"{name}@{digest}"] if digest != "<none>" else [])
    if references:
        docker("rmi", *sorted(references), check=False)


def build_image(tag, marker, command=KEEP_RUNNING, volumes=()):
    """Import a busybox root filesystem as `tag`; `marker` makes its id (and its one
    layer) unique. `command` is the shell command it runs; `volumes` its VOLUMEs."""
    made(tag)
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        for directory in ("bin", "etc", "tmp", "data"):
            (root / directory).mkdir()
        shutil.copy(busybox, root / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        (root / "marker").write_text(marker)
        cmd = json.dumps(["/bin/sh", "-c", command])
        changes = ["-c", f"CMD {cmd}"] + (["-c", f"VOLUME {json.dumps(list(volumes))}"] if volumes else [])
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", *changes, "-", tag], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
    return docker("image", "inspect", "--format", "{{.Id}}", tag).strip()


def wait_until(predicate, timeout=20, interval=0.1, what=None):
    """The first true value of predicate(), polled until timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate.__doc__ or predicate}")


def leftovers(names):
    """Those of `names` an update left behind under a temporary name."""
    return [n for n in names if ".dockerup-new-" in n or ".dockerup-old-" in n]


def write_files(directory, files):
    """files: name -> dict/list/None (written as JSON), str (as text) or bytes."""
    for name, content in files.items():
        path = Path(directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(json.dumps(content))


def remove_test_containers(scope, remote=None):
    """Every container of one test: those dockerup made in its scope, and those the
    test made by hand (labelled TEST_LABEL=scope). Never anyone else's: tests, and
    test runs side by side, share one engine."""
    ids = docker("ps", "-aq", "--filter", f"label=dockerup.scope={scope}", remote=remote).split()
    ids += docker("ps", "-aq", "--filter", f"label={TEST_LABEL}={scope}", remote=remote).split()
    if ids:
        # --volumes removes anonymous volumes only; one an update carried over is
        # mounted by name in the replacement, so it goes by name afterwards.
        volumes = docker("inspect", "--format", '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}',
                         *sorted(set(ids)), check=False, remote=remote).split()
        docker("rm", "--force", "--volumes", *sorted(set(ids)), check=False, remote=remote)
        if volumes:
            docker("volume", "rm", *sorted(set(volumes)), check=False, remote=remote)


KEEPER_SCOPE = "dockerup-test-keepers"
TEST_IMAGES = ((IMAGE, "1"), (IMAGE_2, "2"))


@contextlib.contextmanager
def engine_lock(name):
    """Held by one test run at a time on this engine: for what test runs side by
    side must not do at once, such as building (and tagging) a shared image."""
    key = hashlib.sha256(ENGINE.encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"dockerup-test-{name}-{key}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def ensure_test_images():
    """The shared test images, built once for every test run on this engine: runs
    side by side must not each build (and re-tag) their own."""
    with engine_lock("images"):
        for tag, marker in TEST_IMAGES:
            if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
                build_image(tag, marker)
        hold_test_images()


def hold_test_images(remote=None):
    """Each shared test image held by a created (never started) container of a scope
    of its own: dockerup's cleanup never removes an image a container uses, so no
    test's cleanup can take the images from a test running beside it."""
    for tag, marker in TEST_IMAGES:
        image_id = docker("image", "inspect", "--format", "{{.Id}}", tag, remote=remote).strip()
        if not docker("ps", "-aq", "--filter", f"label=dockerup.scope={KEEPER_SCOPE}", "--filter",
                      f"ancestor={image_id}", remote=remote).split():
            docker("create", "--label", f"dockerup.id=keeper-{marker}", "--label", f"dockerup.scope={KEEPER_SCOPE}",
                   image_id, "true", remote=remote)


@pytest.fixture(scope="session")
def engine():
    """The Docker engine, with the test images in place."""
    result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"no Docker engine answers: {result.stderr.strip()} (start dockerd; see .ci/run)")
    ensure_test_images()
    yield result.stdout.strip()
    remove_made_images()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


class Registry:
    """Debian's docker-registry on loopback: push and pull need no TLS there. With
    `htpasswd` (the path of an htpasswd file), every request needs a login."""

    def __init__(self, root, htpasswd=None):
        self.root = Path(root)
        self.port = free_port()
        self.address = f"localhost:{self.port}"
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + (f"auth:\n  htpasswd:\n    realm: dockerup-test\n    path: {htpasswd}\n" if htpasswd else "")
            # The access log, one line a request, is written at any level.
            + "log:\n  level: error\n")
        self.log = open(self.root / "registry.log", "w")
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(["docker-registry", "serve", str(self.root / "config.yml")],
                                        stdout=self.log, stderr=self.log)
        wait_for_port(self.port)

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def requests(self):
        """Every request the registry has served so far, as "METHOD /path" strings."""
        self.log.flush()
        text = (self.root / "registry.log").read_text()
        return re.findall(r'"((?:GET|HEAD|PUT|POST|PATCH|DELETE) \S+) HTTP', text)

    def downloads(self, repository, since=0):
        """Manifest and blob downloads (GETs) of a repository among requests()[since:]."""
        return [r for r in self.requests()[since:] if r.startswith(f"GET /v2/{repository}/")]

    def push(self, source, name):
        """Push local image `source` as NAME in this registry; returns the reference."""
        reference = made(f"{self.address}/{name}")
        docker("tag", source, reference)
        docker("push", reference)
        return reference


@pytest.fixture(scope="session")
def registry(engine, tmp_path_factory):
    if not shutil.which("docker-registry"):
        pytest.fail("docker-registry is not installed (apt-get install docker-registry; see .ci/run)")
    registry = Registry(tmp_path_factory.mktemp("registry"))
    yield registry
    registry.stop()


def stop_process_command(pid):
    """Shell words that SIGTERM `pid` and wait until it has exited. The test
    process is its parent and reaps it later: a zombie counts as gone."""
    return (f"kill -TERM {pid}; while [ -e /proc/{pid} ] && ! grep -q '^State:.*Z' /proc/{pid}/status; "
            "do sleep 0.1; done")


# ---- A private Docker engine ----------------------------------------------------------

# Another name and subnet where two test runs side by side each start private engines.
BRIDGE = os.environ.get("DOCKERUP_TEST_BRIDGE", "dockerupf0")
BRIDGE_ADDRESS = os.environ.get("DOCKERUP_TEST_BRIDGE_ADDRESS", "172.31.0.1/16")


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class PrivateEngine:
    """A dockerd of this test run's own (data, exec root, socket, bridge), for tests
    that would disturb others on the shared engine: those that stop the daemon, and
    those that run dockerup with exclusive=true (it removes every container it did
    not make). Its containers are all this run's; the keepers of its test images stay."""

    def __init__(self, root):
        self.root = Path(root)
        self.socket = self.root / "d.sock"
        self.remote = f"unix://{self.socket}"
        self.process = None
        self.log = open(self.root / "dockerd.log", "a")
        if ip("link", "show", BRIDGE, check=False).returncode != 0:
            ip("link", "add", "name", BRIDGE, "type", "bridge")
            ip("addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")

    def start(self):
        # The exec root holds unix sockets: its path must stay short.
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "x"),
             "-H", self.remote, "--pidfile", str(self.root / "d.pid"), "--bridge", BRIDGE,
             "--iptables=false", "--ip-masq=false"], stdout=self.log, stderr=self.log)
        wait_until(lambda: self.run("version", check=False).returncode == 0, timeout=60, what="the private dockerd")

    def stop(self):
        """A clean shutdown (SIGTERM), as `systemctl stop docker` does."""
        if self.process:
            self.process.terminate()
            self.process.wait(60)
            self.process = None

    @property
    def stop_command(self):
        """Shell words that stop this engine and wait for it, for a Wrapper."""
        return stop_process_command(self.process.pid)

    def ensure_running(self):
        """Start it again if it was stopped, by a test or by a Wrapper."""
        if self.process is not None and self.process.poll() is not None:
            self.process = None
        if self.process is None:
            self.start()

    def run(self, *args, check=True, timeout=120, stdin=None):
        result = subprocess.run(["docker", "-H", self.remote, *args], capture_output=True, text=True,
                                timeout=timeout, stdin=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def load_test_images(self):
        """The shared engine's test images, held by keepers here too."""
        for tag, _ in TEST_IMAGES:
            saved = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
            self.run("load", stdin=saved.stdout)
            saved.wait()
        hold_test_images(remote=self.remote)

    def ids(self):
        """Ids of every container but the keepers."""
        keepers = set(self.run("ps", "-aq", "--filter", f"label=dockerup.scope={KEEPER_SCOPE}").stdout.split())
        return [i for i in self.run("ps", "-aq").stdout.split() if i not in keepers]

    def containers(self):
        """name -> inspect dict, for every container but the keepers."""
        ids = self.ids()
        return {c["Name"].lstrip("/"): c for c in json.loads(self.run("inspect", *ids).stdout)} if ids else {}

    def running(self):
        return {name: c["Id"] for name, c in self.containers().items() if c["State"]["Running"]}

    def clean(self):
        ids = self.ids()
        if ids:
            self.run("rm", "--force", "--volumes", *ids)

    def close(self):
        if self.process and self.process.poll() is None:
            self.clean()
        self.stop()
        self.log.close()
        ip("link", "delete", BRIDGE, check=False)


def new_scope():
    """A dockerup scope no other test, nor any test run beside this one, uses."""
    return f"t{uuid.uuid4().hex[:8]}"


def image_id(reference):
    return docker("image", "inspect", "--format", "{{.Id}}", reference).strip()


@pytest.fixture
def bad_image(engine):
    """An image whose command fails at once, with a layer of its own (so that pulling
    it is a real download, not hidden by layers another image shares)."""
    tag = f"{LOCAL}/bad-{uuid.uuid4().hex[:6]}:1"
    build_image(tag, tag, "echo cannot start; exit 1")
    yield tag
    docker("rmi", "-f", tag, check=False)


class Host:
    """A confdir, a cache, a configuration file and a dockerup scope of a test's own,
    and ways to run dockerup against the real engine and look at what it did. Give
    every container a name of the test's own (`host.name("web")`) and label those made
    by hand with `host.label` (TEST_LABEL=scope), so that tests side by side on one
    engine never meet. `remote` is the engine it points dockerup and `host.docker` at."""

    def __init__(self, root, scope=None, remote=ENGINE):
        self.root = Path(root)
        self.scope = scope if scope is not None else new_scope()
        self.label = f"{TEST_LABEL}={self.scope}"
        self.remote = remote
        self.confdir = self.root / "containers.d"
        self.cache = self.root / "cache"
        self.config = self.root / "dockerup.conf"
        self.confdir.mkdir()
        self.configure()

    def configure(self, **settings):
        values = {"confdir": self.confdir, "cache": self.cache, "pull": "false", "settle": "0.3", "interval": "1",
                  "probation": "0", "remote": self.remote, "scope": self.scope}
        values.update(settings)
        self.config.write_text("".join(f"{key}={value}\n" for key, value in values.items()))

    def name(self, base):
        """A container name of this test's own."""
        return f"{self.scope}-{base}" if self.scope else base

    def spec(self, filename, **document):
        """Write a spec file; `image` defaults to the first test image."""
        document.setdefault("image", IMAGE)
        path = self.confdir / filename
        path.write_text(json.dumps(document, indent=2))
        return path

    def command(self, *args):
        return [sys.executable, str(DOCKERUP), "--config", str(self.config), *args]

    def run(self, *args, timeout=120, env=None):
        """Run dockerup once; returns the CompletedProcess (text)."""
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})

    def converge(self, *args, **kwargs):
        """Run dockerup and insist that it converged."""
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        return result

    def docker(self, *args, **kwargs):
        """The docker CLI against this host's engine."""
        return docker(*args, remote=self.remote, **kwargs)

    def scope_filter(self):
        """The docker ps filter for the containers dockerup made in this scope."""
        return f"label=dockerup.scope={self.scope}" if self.scope else "label=dockerup.id"

    def managed(self):
        """Inspect output of every container dockerup made in this test's scope, by name."""
        ids = self.docker("ps", "-aq", "--filter", self.scope_filter()).split()
        # A container removed between the two calls (a server at work) is simply not listed.
        found = json.loads(self.docker("inspect", *ids, check=False) or "[]") if ids else []
        return {c["Name"].lstrip("/"): c for c in found
                if c["Config"]["Labels"].get("dockerup.scope", "") == self.scope}

    def inspect(self, name):
        return json.loads(self.docker("inspect", "--type", "container", name))[0]

    def running_ids(self):
        return {name: c["Id"] for name, c in self.managed().items() if c["State"]["Running"]}

    def leftovers(self):
        """Names of this test's containers an update left under a temporary name."""
        return leftovers(list(self.managed()))

    @property
    def memory(self):
        """The cache file that holds this scope's memory (failures, pins, images)."""
        return self.cache / dockerup.memory_file(self.scope)

    def remove_containers(self):
        remove_test_containers(self.scope, remote=self.remote)


@pytest.fixture
def host(engine, tmp_path):
    ensure_test_images()
    host = Host(tmp_path)
    yield host
    host.remove_containers()


@pytest.fixture
def neighbour(host, tmp_path):
    """A second dockerup instance beside `host`: its engine, a scope of its own."""
    (tmp_path / "neighbour").mkdir()
    other = Host(tmp_path / "neighbour", scope=f"{host.scope}-b", remote=host.remote)
    yield other
    other.remove_containers()


@pytest.fixture(scope="session")
def private_engine(engine, tmp_path_factory):
    """This test run's private dockerd, started once, with the test images."""
    private = PrivateEngine(tmp_path_factory.mktemp("dkf", numbered=True))
    try:
        private.start()
        private.load_test_images()
        yield private
    finally:
        private.close()


@pytest.fixture
def private_host(private_engine, tmp_path):
    """A host pointed at the private engine, which is running and holds nothing but
    the keepers of the test images. `host.engine` is the engine."""
    private_engine.ensure_running()
    private_engine.clean()
    host = Host(tmp_path, remote=private_engine.remote)
    host.engine = private_engine
    yield host
    private_engine.ensure_running()
