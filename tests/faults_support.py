"""Helpers for the attack suites (test_bad_input, test_faults, test_properties):
what a run must look like from outside, and a docker stand-in that injects faults.
(The private Docker engine that tests may stop is conftest's.)"""

import os
import re
import shlex
import shutil
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

