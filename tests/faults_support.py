"""Helpers for the attack suites (test_bad_input, test_faults, test_properties):
what a run must look like from outside, a docker stand-in that injects faults,
and a private Docker engine that tests may stop without disturbing anyone."""

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from conftest import IMAGE, IMAGE_2, docker, leftovers, wait_until  # noqa: F401 (used by the suites)

# ---- What every run must look like ------------------------------------------------

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d dockerup (DEBUG|INFO|WARNING|ERROR) ")


def error_lines(stderr):
    return [line for line in stderr.splitlines() if " dockerup ERROR " in line]


def assert_clean_output(result):
    """No traceback, and every line of standard error is a log line: a message
    that spills over several lines cannot be grepped or mailed by cron intact."""
    assert "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    for line in result.stderr.splitlines():
        assert LOG_LINE.match(line), f"not a log line: {line!r}\n{result.stderr}"


def assert_one_problem(result, *parts, code=1):
    """Exit `code`, exactly one ERROR line besides the summary, holding every
    part in order (the file, the field, ...). Returns that line."""
    assert_clean_output(result)
    assert result.returncode == code, f"exit {result.returncode}\n{result.stderr}"
    errors = error_lines(result.stderr)
    assert len(errors) == 1, "\n".join(errors) or result.stderr
    pattern = ".*".join(re.escape(str(part)) for part in parts)
    assert re.search(pattern, errors[0]), f"{parts} not in {errors[0]!r}"
    return errors[0]


# setpriv (util-linux) drops the capabilities that let root read any file.
WITHOUT_FILE_ACCESS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                       "--inh-caps=-dac_override,-dac_read_search", "--"]


def changing_commands(stderr):
    return [line.split("$ ", 1)[1] for line in stderr.splitlines() if " INFO $ docker" in line]


# ---- A docker stand-in on PATH -------------------------------------------------------

REAL_DOCKER = shutil.which("docker")

# The stand-in runs the real docker CLI, except at the Nth call of one docker
# subcommand, where it first does `before` and, unless that ends it, runs
# docker and then does `after`. Its parent is the dockerup process itself.
WRAPPER = """#!/bin/sh
echo "$*" >> {log}
if [ "$3" = {match} ]; then
  n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 ))
  echo $n > {counter}
  if [ $n -eq {nth} ]; then
    {before}
    {real} "$@"
    status=$?
    {after}
    exit $status
  fi
fi
exec {real} "$@"
"""

KILL_DOCKERUP = "kill -KILL $PPID; exit 137"  # dockerup dies before (or after) the docker command
HANG = "exec sleep 3600"  # what dockerup sees of a docker that never answers


def stop_process_command(pid):
    """Shell words that SIGTERM `pid` and wait until it has exited. The test
    process is its parent and reaps it later: a zombie counts as gone."""
    return (f"kill -TERM {pid}; while [ -e /proc/{pid} ] && ! grep -q '^State:.*Z' /proc/{pid}/status; "
            "do sleep 0.1; done")


class Wrapper:
    """A directory holding a `docker` that injects one fault; `env` puts it
    first on PATH for one dockerup run."""

    def __init__(self, directory, match, nth=1, before=":", after=":"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "calls.log"
        self.counter = self.dir / "counter"
        script = WRAPPER.format(log=shlex.quote(str(self.log)), match=shlex.quote(match),
                                counter=shlex.quote(str(self.counter)), nth=int(nth), before=before,
                                after=after, real=shlex.quote(REAL_DOCKER))
        path = self.dir / "docker"
        path.write_text(script)
        path.chmod(0o755)

    @property
    def env(self):
        return {"PATH": f"{self.dir}:{os.environ['PATH']}"}

    @property
    def fired(self):
        return self.counter.exists()

    def calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []


# ---- A private Docker engine ----------------------------------------------------------

# Another name and subnet where two test runs side by side each start private engines.
BRIDGE = os.environ.get("DOCKERUP_TEST_BRIDGE", "dockerupf0")
BRIDGE_ADDRESS = os.environ.get("DOCKERUP_TEST_BRIDGE_ADDRESS", "172.31.0.1/16")


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class PrivateEngine:
    """A dockerd of its own (data, exec root, socket, bridge), for the faults that
    stop or kill the daemon: the shared engine must never be stopped."""

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
        result = subprocess.run([REAL_DOCKER, "-H", self.remote, *args], capture_output=True, text=True,
                                timeout=timeout, stdin=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def load_test_images(self):
        for tag in (IMAGE, IMAGE_2):
            saved = subprocess.Popen([REAL_DOCKER, "save", tag], stdout=subprocess.PIPE)
            self.run("load", stdin=saved.stdout)
            saved.wait()

    def containers(self):
        """name -> inspect dict, for every container."""
        ids = self.run("ps", "-aq").stdout.split()
        return {c["Name"].lstrip("/"): c for c in json.loads(self.run("inspect", *ids).stdout)} if ids else {}

    def running(self):
        return {name: c["Id"] for name, c in self.containers().items() if c["State"]["Running"]}

    def clean(self):
        ids = self.run("ps", "-aq").stdout.split()
        if ids:
            self.run("rm", "--force", *ids)

    def close(self):
        if self.process and self.process.poll() is None:
            self.clean()
        self.stop()
        self.log.close()
        ip("link", "delete", BRIDGE, check=False)


def all_names():
    """Names of every container on the shared engine."""
    return docker("ps", "-a", "--format", "{{.Names}}").split()
