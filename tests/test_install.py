"""The README's ways to install dockerup work, each giving the /usr/local/bin/dockerup
the systemd unit and the cron line run (here under a temporary prefix): Debian's own
packages plus the single file, pipx, and a venv. (The container image is built and
run by test_self_update.py.) A registry login reaches dockerup through the docker
client's configuration."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import dockerup
from conftest import IMAGE, ROOT, Registry, docker, made

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


def test_systemd_accepts_the_unit(tmp_path):
    """Every option is one systemd knows (a misspelt hardening option is silently
    ignored by systemd itself), and none hides root's ~/.docker from the docker client."""
    text = (ROOT / "etc" / "dockerup.service").read_text()
    unit = tmp_path / "dockerup.service"
    unit.write_text(text.replace(f"ExecStart={INSTALLED}", f"ExecStart={shutil.which('true')}"))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    assert "\nProtectHome=read-only\n" in text and "InaccessiblePaths" not in text


def test_the_image_leaves_the_cache_to_the_host_and_the_self_spec_outlasts_a_pull():
    """A VOLUME would give a dockerup started without -v a lock of its own; docker's
    10 second stop would kill a dockerup in the middle of a pull."""
    assert re.findall(r"^VOLUME\b.*", (ROOT / "Dockerfile").read_text(), re.M) == []
    spec = json.loads((ROOT / "etc" / "dockerup-self.json").read_text())
    assert spec["stopTimeout"] >= dockerup.config_defaults()["timeout"]


def pyproject():
    try:
        import tomllib
    except ImportError:  # Python 3.9 and 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_requires_the_oldest_releases_that_work():
    """docopt 0.6.2 works too (Debian's), but pip installs its maintained successor."""
    requirements = dict(re.fullmatch(r"([\w-]+)>=([\d.]+)", requirement).groups()
                        for requirement in pyproject()["project"]["dependencies"])
    oldest = {name: release for name, release in dockerup.OLDEST_RELEASES.items() if name != "docopt"}
    assert requirements == {**oldest, "docopt-ng": "0.9"}


def test_the_version_is_written_once_in_dockerup_py():
    project = pyproject()
    assert project["project"]["dynamic"] == ["version"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"] == {"version": {"attr": "dockerup.__version__"}}
    setup_calls = re.findall(r"^setup\(.*", (ROOT / "setup.py").read_text(), re.M)
    assert setup_calls == ["setup()"], "setup.py must leave everything to pyproject.toml"


def test_the_license_is_mit():
    assert pyproject()["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the dockerup authors\n")


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
    host.spec("web.json", name=host.name("web"))
    run([dockerup, "--config", host.config], env=env)
    assert host.inspect(host.name("web"))["State"]["Running"]


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
    shown = run([venv / "bin" / "pip", "show", "--files", "dockerup"]).stdout
    assert f"\nVersion: {dockerup.__version__}\n" in shown
    files = shown.split("\nFiles:\n", 1)[1].split()
    assert sorted(f for f in files if "dist-info" not in f and "__pycache__" not in f) == [
        "../../../bin/dockerup", "dockerup.py"]  # one module and its command: no data files


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
        docker("tag", IMAGE, made(image))
        run(["docker", "push", image], env=login)
        docker("rmi", image)
        private = host.name("private")
        host.spec("private.json", name=private, image=image)

        refused = host.run(env={"DOCKER_CONFIG": str(logged_out)})
        assert refused.returncode == 1, refused.stderr
        assert f"ERROR {host.confdir}/private.json: image: {image} is not available locally and pulling it " \
               f"failed (" in refused.stderr
        assert "no basic auth credentials" in refused.stderr, refused.stderr
        assert docker("ps", "-aq", "--filter", f"name=^{private}$") == ""

        host.converge(env={"DOCKER_CONFIG": str(logged_in)})
        assert host.inspect(private)["Config"]["Image"] == image
        assert registry.address in (logged_in / "config.json").read_text()
        assert not (logged_out / "config.json").exists()
    finally:
        registry.stop()
        docker("rmi", image, check=False)
