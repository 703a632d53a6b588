"""dockerup.py alone is a complete dockerup on the Python packages the distributions
ship: Debian 12's releases (sh 1.14.2, jsonschema 4.10.3 without `referencing`, requests
2.28.1, docopt 0.6.2) run it as well as the newest ones, and a release too old to work
is refused with one line naming the package and the release needed.

The Debian releases come from PyPI into a venv of their own, kept between runs in the
user's cache directory (keyed by the releases and the Python that runs them)."""

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dockerup
from conftest import DOCKERUP, ENGINE, IMAGE

DEBIAN_12 = ("sh==1.14.2", "jsonschema==4.10.3", "requests==2.28.1", "docopt==0.6.2")


@pytest.fixture(scope="session")
def debian_python():
    """The python of a venv holding exactly Debian 12's releases of the four packages."""
    key = hashlib.sha256(json.dumps([sys.executable, sys.version, DEBIAN_12]).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dockerup-tests"
    venv = cache / f"debian12-{key}"
    python = venv / "bin" / "python"
    if not python.exists():
        building = cache / f"debian12-{key}.{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, capture_output=True)
        install = subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                  "--disable-pip-version-check", *DEBIAN_12], capture_output=True, text=True)
        assert install.returncode == 0, f"pip install {' '.join(DEBIAN_12)} failed:\n{install.stderr[-3000:]}"
        building.rename(venv)  # whole or not at all: an interrupted build is never reused
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    assert set(DEBIAN_12) <= set(freeze.stdout.split()), freeze.stdout
    assert "referencing" not in freeze.stdout and "docopt-ng" not in freeze.stdout
    return str(python)


@pytest.fixture
def alone(tmp_path):
    """dockerup.py copied alone into an empty directory."""
    directory = tmp_path / "alone"
    directory.mkdir()
    shutil.copy(DOCKERUP, directory / "dockerup.py")
    return directory / "dockerup.py"


def recording_docker(directory, real=None):
    """A `docker` first on PATH that writes each argv it gets to a file of its own
    (NUL-separated), then runs the real docker, or just exits 0."""
    directory.mkdir()
    (directory / "calls").mkdir()
    script = directory / "docker"
    script.write_text("#!/bin/sh\n"
                      f'call=$(mktemp "{directory}/calls/call.XXXXXX")\n'
                      "printf '%s\\0' \"$@\" > \"$call\"\n"
                      + (f"exec {shlex.quote(real)} \"$@\"\n" if real else "exit 0\n"))
    script.chmod(0o755)
    return directory


def recorded_calls(directory):
    return [path.read_bytes().decode().split("\0")[:-1] for path in sorted((directory / "calls").iterdir())]


@pytest.fixture(params=["installed", pytest.param("debian12", marks=pytest.mark.pypi)])
def python(request):
    """The test's own Python with the packages it has, and Debian 12's releases."""
    return sys.executable if request.param == "installed" else request.getfixturevalue("debian_python")


def test_docker_gets_exactly_the_arguments_given(python, alone, tmp_path):
    """sh 1.x passes an option it does not know on as an argument: none may reach docker."""
    record = recording_docker(tmp_path / "bin")
    code = ("import dockerup\n"
            "docker = dockerup.Docker('unix:///nowhere.sock', 10)\n"
            "docker.read('inspect', '--format', '{{json .State}}', 'a b', \"it's\")\n")
    result = subprocess.run([python, "-c", code], cwd=alone.parent, capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{record}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert recorded_calls(record) == [["-H", "unix:///nowhere.sock", "inspect", "--format", "{{json .State}}",
                                       "a b", "it's"]]


@pytest.mark.pypi
def test_debian_12_releases_run_the_single_file(debian_python, alone, tmp_path):
    confdir, config = tmp_path / "containers.d", tmp_path / "dockerup.conf"
    confdir.mkdir()
    config.write_text(f"confdir={confdir}\ncache={tmp_path / 'cache'}\n")
    (confdir / "web.json").write_text(json.dumps({"name": "web", "image": "app:1"}))
    help_text = subprocess.run([debian_python, str(alone), "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and help_text.stdout.startswith("dockerup: make a Docker host run")
    validate = subprocess.run([debian_python, str(alone), "validate", "--config", str(config)],
                              capture_output=True, text=True)
    assert (validate.returncode, validate.stdout) == (0, ""), validate.stderr
    assert validate.stderr.endswith(" dockerup INFO 1 valid container spec\n")
    (confdir / "web.json").write_text(json.dumps({"name": "web", "image": "app:1", "restart": "sometimes"}))
    invalid = subprocess.run([debian_python, str(alone), "validate", "--config", str(config)],
                             capture_output=True, text=True)
    assert (invalid.returncode, invalid.stdout) == (
        1, f'{confdir}/web.json: restart: "sometimes" is not one of "always", "unless-stopped", "on-failure", '
           '"never"\n')


@pytest.mark.pypi
def test_debian_12_releases_converge(debian_python, alone, host):
    """A real converge, every docker command logged (-v) and recorded as docker got it."""
    web = host.name("web")
    host.spec("web.json", name=web, image=IMAGE, command=["sh", "-c", "sleep 600; echo 'done'"])
    record = recording_docker(host.root / "bin", real=shutil.which("docker"))
    env = {**os.environ, "PATH": f"{record}:{os.environ['PATH']}"}
    command = [debian_python, str(alone), "--config", str(host.config), "-v"]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert host.inspect(web)["State"]["Running"]
    assert host.inspect(web)["Config"]["Cmd"] == ["sh", "-c", "sleep 600; echo 'done'"]
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0, second.stderr
    assert re.search(r"converged in [\d.]+s: 1 declared, 1 unchanged, 0 container actions", second.stderr)
    # The log line of each command, without its reason, is what docker got, shell-quoted.
    logged = [re.sub(r"  # [^']*$", "", line.split(" $ ", 1)[1])
              for line in (first.stderr + second.stderr).splitlines() if " $ docker " in line]
    recorded = [dockerup.display_command(["docker", *argv]) for argv in recorded_calls(record)]
    assert sorted(logged) == sorted(recorded)
    assert f"docker -H {ENGINE} ps --all --quiet --no-trunc" in logged


@pytest.mark.parametrize("stand_in, args, expected", [
    ({"jsonschema/__init__.py": "__version__ = '3.2.0'\n"}, ["validate"],
     "the Python package jsonschema 4.0 or later is needed; this is jsonschema 3.2.0"),
    ({"jsonschema/__init__.py": "__version__ = '3.2.0'\n"}, ["--server"],
     "the Python package jsonschema 4.0 or later is needed; this is jsonschema 3.2.0"),
    ({"sh.py": "__version__ = '1.11'\nclass Command:\n    _call_args = {'bg': False, 'ok_code': 0}\n"}, [],
     "the Python package sh 1.14.2 or later is needed; this is sh 1.11"),
    ({"requests/__init__.py": "raise ImportError('No module named requests')\n"}, ["--aws"],
     "the Python package requests 2.25 or later is needed: No module named requests"),
], ids=["jsonschema 3.2 validate", "jsonschema 3.2 server", "sh 1.11", "no requests"])
def test_a_release_too_old_is_refused_in_one_line(tmp_path, stand_in, args, expected):
    """Stand-ins first on sys.path play the old or missing releases; nothing reaches docker."""
    packages = tmp_path / "packages"
    for name, text in stand_in.items():
        (packages / name).parent.mkdir(parents=True, exist_ok=True)
        (packages / name).write_text(text)
    confdir = tmp_path / "containers.d"
    confdir.mkdir()
    (confdir / "web.json").write_text(json.dumps({"name": "web", "image": "app:1"}))
    env = {**os.environ, "PYTHONPATH": str(packages), "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, str(DOCKERUP), "--confdir", str(confdir), "--cache",
                             str(tmp_path / "cache"), "--remote", "unix:///nowhere.sock", *args],
                            capture_output=True, text=True, env=env, timeout=60)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == (2 if "--server" in args else 1), result.stderr
    assert re.fullmatch(rf"\S+ \S+ dockerup ERROR {re.escape(expected)}", lines[-1])


def test_no_docopt_is_refused_in_one_line(tmp_path):
    (tmp_path / "docopt.py").write_text("raise ImportError('No module named docopt')\n")
    result = subprocess.run([sys.executable, str(DOCKERUP), "--help"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert (result.returncode, result.stdout, result.stderr) == (
        2, "", "dockerup: the Python package docopt 0.6.2 or later is needed: No module named docopt\n")
