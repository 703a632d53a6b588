"""dockerup in its own container, managing its own spec: a new image of it pushed to
the registry makes it replace itself, and the host goes on being managed.

No public registry is reachable in CI, so the image is built with the repository's
Dockerfile FROM a base made here, offline, from this host's Debian Python with pip,
dockerup's build requirement (setuptools) and dependencies as the test interpreter has
them installed (so that `pip install .` needs no index), and the host's docker CLI. That base is tagged
with a hash of what defines it and reused while it exists."""

import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import ENGINE, IMAGE, ROOT, docker

PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"
# A Debian Python with pip; setuptools comes from the test interpreter (python_dependencies).
BASE_PACKAGES = (f"{PYTHON}-minimal", f"lib{PYTHON}-minimal", f"lib{PYTHON}-stdlib", PYTHON, "python3-minimal",
                 "python3", "libpython3-stdlib", "python3-distutils", "python3-lib2to3", "python3-pip")
# Debian marks its Python "externally managed" to protect apt's packages; an image
# has no apt-installed Python packages to protect, like the official python images.
LEFT_OUT = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/lintian/", f"/usr/lib/{PYTHON}/EXTERNALLY-MANAGED")
SITE_PACKAGES = f"/usr/local/lib/{PYTHON}/dist-packages"
BUSYBOX_APPLETS = ("sh", "rm", "ls", "cat", "env", "mkdir")
BASE_REPOSITORY = "dockerup-test/python-base"
BASE_CONFIG = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8",
               # Fail at once rather than wait for an index that cannot be reached, and
               # build with the setuptools the image has (pip's quirk: 0 turns isolation off).
               "ENV PIP_NO_INDEX=1", "ENV PIP_NO_BUILD_ISOLATION=0", 'CMD ["python3"]')
SOCKET = "/var/run/docker.sock"  # in dockerup's container: the engine's socket, mounted
ENGINE_SOCKET = ENGINE.removeprefix("unix://")  # on this host
SELF = "dockerup"
TIMEOUT = 90  # seconds for each change dockerup makes; seconds are enough when it works


# --- the base image ----------------------------------------------------------------


def copy_into(root, path):
    """Copy the host's `path` to the same place under `root`. Symlinks on the way,
    such as /lib -> usr/lib, are recreated and followed, so the dynamic loader finds
    libraries where ldd said they are."""
    path = Path(os.path.normpath(path))
    for depth in range(2, len(path.parts)):
        directory = Path(*path.parts[:depth])
        if directory.is_symlink():
            copy_into(root, directory)
            return copy_into(root, Path(os.path.realpath(directory), *path.parts[depth:]))
    target = root / path.relative_to("/")
    if target.is_symlink() or target.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        target.symlink_to(os.readlink(path))
        copy_into(root, path.parent / os.readlink(path))
    elif path.is_dir():
        target.mkdir(exist_ok=True)
    else:
        shutil.copy2(path, target)


def debian_files(packages):
    listing = subprocess.run(["dpkg", "-L", *packages], capture_output=True, text=True)
    assert listing.returncode == 0, f"the base image is made from Debian's {' '.join(packages)}: {listing.stderr}"
    paths = [line for line in listing.stdout.splitlines() if line.startswith("/") and not line.startswith(LEFT_OUT)]
    return [path for path in paths if os.path.islink(path) or os.path.isfile(path)]


def python_dependencies():
    """(name, version, files) of every installed distribution dockerup needs to be built
    and to run: pyproject.toml's build requirements and dependencies, and what they
    require in turn."""
    import importlib.metadata

    from packaging.requirements import Requirement

    try:
        import tomllib
    except ImportError:  # Python 3.9 and 3.10
        import tomli as tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = pyproject["build-system"]["requires"] + pyproject["project"]["dependencies"]
    found = {}
    while wanted:
        requirement = Requirement(wanted.pop())
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        distribution = importlib.metadata.distribution(requirement.name)
        name = distribution.metadata["Name"]
        if name not in found:
            files = [(distribution.locate_file(f), f) for f in distribution.files
                     if ".." not in f.parts and "__pycache__" not in f.parts]
            found[name] = (distribution.version, files)
            wanted += distribution.requires or []
    return sorted((name, version, files) for name, (version, files) in found.items())


def shared_libraries(paths):
    """Every library the dynamic ELF files among `paths` load, the loader included."""
    libraries = set()
    for path in paths:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        result = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
        libraries.update(re.findall(r"(/\S+) \(0x", result.stdout) if result.returncode == 0 else ())
    return libraries


def assemble_base(tag, packages, dependencies, docker_cli, busybox):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for top in ("/bin", "/sbin", "/lib", "/lib64", "/usr/local/bin", "/root", "/etc"):
            copy_into(root, top)
        files = debian_files(packages)
        for path in files:
            copy_into(root, path)
        for _, _, dist_files in dependencies:
            for source, relative in dist_files:
                target = root / SITE_PACKAGES.lstrip("/") / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                files.append(source)
        shutil.copy2(docker_cli, root / "usr/local/bin/docker")
        shutil.copy2(busybox, root / "bin/busybox")
        for applet in BUSYBOX_APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        for library in shared_libraries(files + [docker_cli]):
            copy_into(root, library)
        (root / "tmp").mkdir(mode=0o1777)
        (root / "tmp").chmod(0o1777)
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
        (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        changes = [argument for line in BASE_CONFIG for argument in ("-c", line)]
        imported = subprocess.run(["docker", "import", *changes, "-", tag], stdin=tar.stdout, capture_output=True,
                                  text=True)
        tar.wait()
        assert imported.returncode == 0, imported.stderr


def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_image():
    """The tag of the base image, made unless an image of the same definition exists:
    the Debian package versions, the dependency versions, both binaries, and the code
    that assembles them."""
    dependencies = python_dependencies()
    docker_cli, busybox = shutil.which("docker"), shutil.which("busybox") or "/bin/busybox"
    versions = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *BASE_PACKAGES],
                              capture_output=True, text=True).stdout
    definition = [versions, [(name, version) for name, version, _ in dependencies],
                  file_digest(docker_cli), file_digest(busybox), BASE_PACKAGES, LEFT_OUT, BUSYBOX_APPLETS, BASE_CONFIG,
                  [inspect.getsource(f) for f in (copy_into, debian_files, shared_libraries, assemble_base)]]
    key = hashlib.sha256(json.dumps(definition).encode()).hexdigest()[:16]
    tag = f"{BASE_REPOSITORY}:{key}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
        assemble_base(tag, BASE_PACKAGES, dependencies, docker_cli, busybox)
        for stale in docker("images", "--format", "{{.Repository}}:{{.Tag}}", BASE_REPOSITORY).split():
            if stale != tag:
                docker("rmi", stale, check=False)
    return tag


def build_dockerup_image(base, tag, build):
    """Build with the repository's Dockerfile; `build` goes into a label, so every
    build number is an image of its own."""
    result = subprocess.run(["docker", "build", "--file", str(ROOT / "Dockerfile"), "--tag", tag,
                             "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"DOCKER_CLI_IMAGE={base}",
                             "--label", f"dockerup-test.build={build}", str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"docker build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return docker("image", "inspect", "--format", "{{.Id}}", tag).strip()


# --- watching the host ---------------------------------------------------------------


def wait_until(what, predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting until {what}\n{describe_host()}")


def containers(*filters):
    """Inspect dicts of the containers matching docker ps filters."""
    ids = docker("ps", "-aq", *[f"--filter={f}" for f in filters]).split()
    # A container dockerup removes between the two calls is simply not listed.
    return json.loads(docker("inspect", *ids, check=False) or "[]") if ids else []


def leftovers():
    names = docker("ps", "-a", "--format", "{{.Names}}").split()
    return [n for n in names if ".dockerup-new-" in n or ".dockerup-old-" in n]


def only_dockerup_is(image_id):
    """Exactly one container of the spec "dockerup": running under its own name, made
    by dockerup (it has the spec hash), from `image_id`; nothing left of an update."""
    group = containers(f"label=dockerup.id={SELF}")
    return (len(group) == 1 and group[0]["Name"] == f"/{SELF}" and group[0]["State"]["Running"]
            and group[0]["Image"] == image_id and "dockerup.hash" in group[0]["Config"]["Labels"]
            and not leftovers())


def running(name):
    """(id, start time) of the running container `name`, else None."""
    found = containers(f"name=^{name}$")
    return (found[0]["Id"], found[0]["State"]["StartedAt"]) if found and found[0]["State"]["Running"] else None


def describe_host():
    """What a failure message needs: every container, and the logs of the dockerups."""
    lines = [docker("ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Image}}")]
    for container in containers(f"label=dockerup.id={SELF}"):
        logs = subprocess.run(["docker", "logs", "--tail", "40", container["Id"]], capture_output=True, text=True)
        lines.append(f"--- logs of {container['Name']}:\n{logs.stdout}{logs.stderr}")
    return "\n".join(lines)


# --- the test -------------------------------------------------------------------------


def image_exists(image_id):
    return subprocess.run(["docker", "image", "inspect", image_id], capture_output=True).returncode == 0


@pytest.fixture
def images(registry):
    """Two builds of dockerup's image (tags, ids); afterwards they go, by id, with
    every tag and registry digest they got."""
    base = base_image()
    tags = ["dockerup-test/self:1", "dockerup-test/self:2"]
    ids = [build_dockerup_image(base, tag, build) for build, tag in enumerate(tags, 1)]
    yield tags, ids
    docker("rmi", "--force", *ids, check=False)


@pytest.fixture
def exit_codes():
    """Exit code of every container that stops from now on, by container id."""
    codes = {}
    events = subprocess.Popen(["docker", "events", "--since", f"{time.time():.3f}", "--filter", "type=container",
                               "--filter", "event=die", "--format", '{{.ID}} {{index .Actor.Attributes "exitCode"}}'],
                              stdout=subprocess.PIPE, text=True)

    def read():
        for line in events.stdout:
            container, _, code = line.strip().partition(" ")
            codes[container] = int(code)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield codes
    events.terminate()
    events.wait()
    reader.join()


@pytest.fixture
def self_host(host, registry, images):
    """A host whose /etc/dockerup is host.root (dockerup.conf, containers.d/) and
    whose cache is host.cache. Afterwards its dockerup containers go first: left
    running, they would recreate what the host fixture removes, and keep an image
    the images fixture removes in use."""
    host.configure(confdir="/etc/dockerup/containers.d", cache="/var/cache/dockerup", pull="true",
                   interval="1", settle="1", timeout="60", remote=f"unix://{SOCKET}")
    host.cache.mkdir(mode=0o700)
    yield host
    for container in containers(f"label=dockerup.id={SELF}"):
        docker("rm", "--force", container["Id"], check=False)
    docker("rmi", f"{registry.address}/app:1", check=False)


def self_spec(host, image):
    """The spec of etc/dockerup-self.json, with this test's host directories."""
    spec = json.loads((ROOT / "etc" / "dockerup-self.json").read_text())
    mounts = {"/etc/dockerup": str(host.root), "/var/cache/dockerup": str(host.cache), SOCKET: ENGINE_SOCKET}
    for volume in spec["volumes"]:
        volume["hostPath"] = mounts[volume["containerPath"]]
    return {**spec, "image": image}


def bootstrap(host, image):
    """The README's `docker run` line, with this test's host directories and scope."""
    return docker("run", "--detach", "--name", SELF, "--restart", "always", "--label", f"dockerup.id={SELF}",
                  "--label", f"dockerup.scope={host.scope}",
                  "--volume", f"{ENGINE_SOCKET}:{SOCKET}", "--volume", f"{host.root}:/etc/dockerup:ro",
                  "--volume", f"{host.cache}:/var/cache/dockerup", image).strip()


def test_dockerup_replaces_itself_with_a_newly_pushed_image(self_host, registry, images, exit_codes):
    host, (tags, (first, second)) = self_host, images
    reference = registry.push(tags[0], f"{SELF}:latest")
    app = registry.push(IMAGE, "app:1")
    host.spec("dockerup.json", **self_spec(host, reference))
    host.spec("sleeper.json", name="sleeper", image=app)

    booted = bootstrap(host, reference)
    # The labelled bootstrap container is adopted: replaced by one made from the spec.
    wait_until("dockerup runs from its spec", lambda: only_dockerup_is(first) and running("sleeper"))
    (adopted, _), sleeper = running(SELF), running("sleeper")

    registry.push(tags[1], f"{SELF}:latest")
    # Back to the old image locally: only the running dockerup's pull can find the new one.
    docker("tag", tags[0], reference)
    wait_until("dockerup replaced itself", lambda: only_dockerup_is(second))

    host.spec("late.json", name="late", image=app)
    wait_until("the new dockerup started a new spec", lambda: running("late"))
    assert running("sleeper") == sleeper, "the other container was replaced or restarted"
    assert only_dockerup_is(second)
    logs = subprocess.run(["docker", "logs", SELF], capture_output=True, text=True)
    assert " ERROR " not in logs.stderr and "Traceback" not in logs.stderr, logs.stderr
    # A replaced dockerup stops its own container last and exits at once on that
    # SIGTERM (0), rather than being killed after docker stop's 10 seconds (137).
    assert (exit_codes.get(booted), exit_codes.get(adopted)) == (0, 0), "a replaced dockerup was killed (137)"
    # The new dockerup removed the image the replaced one ran: nothing uses it now.
    assert not image_exists(first), "the image the replaced dockerup ran was left behind"


def test_dockerup_on_the_host_never_takes_a_container_for_its_own(host):
    # The host's mount table lists the /dev/shm of a container with shareable IPC
    # under that container's directory: nothing there says dockerup runs inside it.
    ghost = docker("run", "--detach", "--name", host.name("ghost"), "--ipc", "shareable", "--label",
                   "dockerup.id=ghost", "--label", f"dockerup.scope={host.scope}", IMAGE).strip()
    result = host.converge()
    assert "dockerup's own container was replaced" not in result.stderr
    assert ghost not in docker("ps", "--all", "--quiet", "--no-trunc").split(), "the undeclared container was kept"
