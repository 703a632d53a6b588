"""Shared fixtures. Engine tests use the real Docker engine on this machine; they
must never be skipped: without an engine they fail, loudly."""

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


def docker(*args, check=True, timeout=120):
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def build_image(tag, marker, command=KEEP_RUNNING, volumes=()):
    """Import a busybox root filesystem as `tag`; `marker` makes its id (and its one
    layer) unique. `command` is the shell command it runs; `volumes` its VOLUMEs."""
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


def leftovers(names=None):
    """Names of containers an update left behind under a temporary name."""
    if names is None:
        names = docker("ps", "-a", "--format", "{{.Names}}").split()
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


def remove_test_containers(scope):
    """Every container of one test: those dockerup made in its scope, and those the
    test made by hand (labelled TEST_LABEL=scope). Never anyone else's: tests, and
    test runs side by side, share one engine."""
    ids = docker("ps", "-aq", "--filter", f"label=dockerup.scope={scope}").split()
    ids += docker("ps", "-aq", "--filter", f"label={TEST_LABEL}={scope}").split()
    if ids:
        docker("rm", "--force", "--volumes", *sorted(set(ids)), check=False)


KEEPER_SCOPE = "dockerup-test-keepers"


def ensure_test_images():
    """The shared test images, each held by a created (never started) container of a
    scope of its own: dockerup's cleanup never removes an image a container uses, so
    no test's cleanup can take the images from a test running beside it."""
    for tag, marker in ((IMAGE, "1"), (IMAGE_2, "2")):
        if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
            build_image(tag, marker)
        image_id = docker("image", "inspect", "--format", "{{.Id}}", tag).strip()
        if not docker("ps", "-aq", "--filter", f"label=dockerup.scope={KEEPER_SCOPE}", "--filter",
                      f"ancestor={image_id}").split():
            docker("create", "--label", f"dockerup.id=keeper-{marker}", "--label", f"dockerup.scope={KEEPER_SCOPE}",
                   image_id, "true")


@pytest.fixture(scope="session")
def engine():
    """The Docker engine, with the test images in place."""
    result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"no Docker engine answers: {result.stderr.strip()} (start dockerd; see .ci/run)")
    ensure_test_images()
    return result.stdout.strip()


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
        reference = f"{self.address}/{name}"
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


class Host:
    """A confdir, a cache, a configuration file and a dockerup scope of a test's own,
    and ways to run dockerup against the real engine and look at what it did. Give
    every container a name of the test's own (`host.name("web")`) and label those made
    by hand with `host.label` (TEST_LABEL=scope), so that tests side by side on one
    engine never meet."""

    def __init__(self, root, scope=None):
        self.root = Path(root)
        self.scope = scope if scope is not None else f"t{uuid.uuid4().hex[:8]}"
        self.label = f"{TEST_LABEL}={self.scope}"
        self.confdir = self.root / "containers.d"
        self.cache = self.root / "cache"
        self.config = self.root / "dockerup.conf"
        self.confdir.mkdir()
        self.configure()

    def configure(self, **settings):
        values = {"confdir": self.confdir, "cache": self.cache, "pull": "false", "settle": "0.3", "interval": "1",
                  "probation": "0", "remote": ENGINE, "scope": self.scope}
        values.update(settings)
        self.config.write_text("".join(f"{key}={value}\n" for key, value in values.items()))

    def name(self, base):
        """A container name of this test's own."""
        return f"{self.scope}-{base}"

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

    def managed(self):
        """Inspect output of every container dockerup made in this test's scope, by name."""
        ids = docker("ps", "-aq", "--filter", f"label=dockerup.scope={self.scope}").split()
        return {c["Name"].lstrip("/"): c for c in json.loads(docker("inspect", *ids))} if ids else {}

    def inspect(self, name):
        return json.loads(docker("inspect", "--type", "container", name))[0]

    def running_ids(self):
        return {name: c["Id"] for name, c in self.managed().items() if c["State"]["Running"]}


    def leftovers(self):
        """Names of this test's containers an update left under a temporary name."""
        return leftovers(docker("ps", "-a", "--filter", f"label=dockerup.scope={self.scope}",
                                "--format", "{{.Names}}").split())

    def remove_containers(self):
        remove_test_containers(self.scope)


@pytest.fixture
def host(engine, tmp_path):
    ensure_test_images()
    host = Host(tmp_path)
    yield host
    host.remove_containers()
