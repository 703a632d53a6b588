"""The README's ways to install dockerup work, each giving the /usr/local/bin/dockerup
the systemd unit and the cron line run (here under a temporary prefix): Debian's own
packages plus the single file, pipx, and a venv. (The container image is built and
run by test_self_update.py.) A registry login reaches dockerup through the docker
client's configuration."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IMAGE, ROOT, Registry, docker

INSTALLED = "/usr/local/bin/dockerup"
DEBIAN_PACKAGES = {"sh": "python3-sh", "jsonschema": "python3-jsonschema", "requests": "python3-requests",
                   "docopt": "python3-docopt"}
# What `pip install .` needs of a checkout.
PROJECT_FILES = ("pyproject.toml", "setup.py", "dockerup.py", "README.md", "LICENSE")


def test_the_units_run_the_installed_path():
    service = (ROOT / "etc" / "dockerup.service").read_text()
    assert f"\nExecStart={INSTALLED} --server\n" in service
    cron = [line for line in (ROOT / "etc" / "dockerup.cron").read_text().splitlines()
            if line and not line.startswith(("#", "PATH="))]
    assert cron == [f"* * * * * root {INSTALLED} 2>&1 | logger -t dockerup"]


def project_copy(directory):
    """The files a source install reads, so that pip's build leaves the checkout alone."""
    directory.mkdir()
    for name in PROJECT_FILES:
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, directory / name)
    return directory


def run(argv, **kwargs):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


def check_installed(prefix, host, env=None):
    """The installed command answers and converges a spec on the engine."""
    dockerup = prefix / INSTALLED.lstrip("/")
    assert run([dockerup, "--version"], env=env).stdout == "dockerup 0.1.0\n"
    host.spec("web.json", name="web")
    run([dockerup, "--config", host.config], env=env)
    assert host.inspect("web")["State"]["Running"]


def test_debian_packages_and_the_single_file(tmp_path, host):
    """apt install python3-sh python3-jsonschema python3-requests python3-docopt;
    install -m 755 dockerup.py /usr/local/bin/dockerup: run as cron would, with
    Debian's python3 first on cron's PATH."""
    found = subprocess.run(["/usr/bin/python3", "-c", "import json, sh, jsonschema, requests, docopt; print(json.dumps("
                            "{m.__name__: m.__file__ for m in (sh, jsonschema, requests, docopt)}))"],
                           capture_output=True, text=True)
    assert found.returncode == 0, f"apt install {' '.join(DEBIAN_PACKAGES.values())} (.ci/setup does): {found.stderr}"
    for name, path in json.loads(found.stdout).items():
        assert path.startswith("/usr/lib/python3/dist-packages/"), f"{name} is not Debian's {DEBIAN_PACKAGES[name]}"
    target = tmp_path / INSTALLED.lstrip("/")
    target.parent.mkdir(parents=True)
    run(["install", "-m", "755", ROOT / "dockerup.py", target])
    cron_path = f"{target.parent}:/usr/sbin:/usr/bin:/sbin:/bin"
    check_installed(tmp_path, host, env={**os.environ, "PATH": cron_path})


@pytest.mark.pypi
def test_pipx(tmp_path, host):
    """PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin pipx install ."""
    pipx = shutil.which("pipx")
    assert pipx, "pipx is not installed (apt install pipx; .ci/setup does)"
    source = project_copy(tmp_path / "source")
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "opt" / "pipx"),
           "PIPX_BIN_DIR": str(tmp_path / INSTALLED.lstrip("/")).rsplit("/", 1)[0]}
    run([pipx, "install", source], env=env)
    check_installed(tmp_path, host)


@pytest.mark.pypi
def test_venv(tmp_path, host):
    """python3 -m venv /opt/dockerup && /opt/dockerup/bin/pip install . &&
    ln -s /opt/dockerup/bin/dockerup /usr/local/bin/dockerup"""
    source = project_copy(tmp_path / "source")
    venv = tmp_path / "opt" / "dockerup"
    run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", source])
    link = tmp_path / INSTALLED.lstrip("/")
    link.parent.mkdir(parents=True)
    link.symlink_to(venv / "bin" / "dockerup")
    check_installed(tmp_path, host)


def test_a_registry_login_reaches_dockerup(tmp_path, host):
    """`docker login` into DOCKER_CONFIG (the test's own, so no login leaks to the
    machine): dockerup's pulls from a registry that needs a login then work."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(run(["htpasswd", "-Bbn", "deployer", "s3cret-pass"]).stdout)
    (tmp_path / "registry").mkdir()
    registry = Registry(tmp_path / "registry", htpasswd=htpasswd)
    logged_in, logged_out = tmp_path / "docker-config", tmp_path / "no-login"
    logged_in.mkdir()
    logged_out.mkdir()
    image = f"{registry.address}/private/app:1"
    try:
        login = {**os.environ, "DOCKER_CONFIG": str(logged_in)}
        run(["docker", "login", "--username", "deployer", "--password-stdin", registry.address],
            input="s3cret-pass\n", env=login)
        docker("tag", IMAGE, image)
        run(["docker", "push", image], env=login)
        docker("rmi", image)
        host.spec("private.json", name="private", image=image)

        refused = host.run(env={"DOCKER_CONFIG": str(logged_out)})
        assert refused.returncode == 1, refused.stderr
        assert f"ERROR {host.confdir}/private.json: image: {image} is not available locally and pulling it " \
               f"failed (" in refused.stderr
        assert "no basic auth credentials" in refused.stderr, refused.stderr
        assert docker("ps", "-aq", "--filter", "name=^private$") == ""

        host.converge(env={"DOCKER_CONFIG": str(logged_in)})
        assert host.inspect("private")["Config"]["Image"] == image
        assert registry.address in (logged_in / "config.json").read_text()
        assert not (logged_out / "config.json").exists()
    finally:
        registry.stop()
        docker("rmi", image, check=False)
