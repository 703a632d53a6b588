#!/usr/bin/env python3
"""Benchmark of dockerup's hot path, the run that has nothing to change, against
docker-compose `up -d` on an unchanged project, on a real Docker engine.

    python3 tests/bench/bench.py                      # sizes 10,50,200, 5 rounds
    python3 tests/bench/bench.py --sizes 50 --rounds 9
    python3 tests/bench/bench.py --smoke              # 3 containers, 2 rounds (CI)

The engine is DOCKER_HOST (default the system one); both tools are pointed at it.
For each size the same containers (image, env, a published port) are brought up
once by dockerup and once as a compose project, then the two tools' no-op runs are
timed alternately. Also measured: the docker CLI processes a dockerup no-op starts
(through a counting `docker` first on PATH), converging one changed spec, and the
cost of `dockerup --help` and of importing the module.

Exit codes: 0 every target met; 1 a target missed (with --smoke only the hard
ones: docker CLI calls and --help time); 2 the benchmark could not run.
"""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import IMAGE, build_image  # noqa: E402  (the test image, made the tests' way)

DEFAULT_ENGINE = "unix:///var/run/docker.sock"
LABEL = "dockerup-bench"  # on every container the benchmark makes, dockerup's and compose's

TARGET_RATIO = 0.3  # dockerup no-op / compose no-op, over RATIO_SIZE containers
RATIO_SIZE = 50
TARGET_CALLS = 3  # docker CLI processes in a no-op, whatever the size
TARGET_HELP = 0.150  # seconds for `dockerup --help`

# compose 1.29 deadlocks creating many services in one `up`: each creation holds one
# of its 64 parallel slots while waiting for another to start the container
# (docker/compose#7486, #5864). Creating in batches stays clear of that.
COMPOSE_BATCH = 25

COMMAND_TIMEOUT = 900  # bringing 200 containers up can take minutes on a slow machine


class BenchError(Exception):
    """The benchmark itself could not run (no engine, a tool failed): exit 2."""


def run(argv, timeout=COMMAND_TIMEOUT, **kwargs):
    """Run a command; return (CompletedProcess, wall seconds)."""
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    return result, time.perf_counter() - started


def checked(argv, **kwargs):
    result, seconds = run(argv, **kwargs)
    if result.returncode != 0:
        raise BenchError(f"{shlex.join(map(str, argv))} exited {result.returncode}:\n{tail(result.stderr)}")
    return result, seconds


def tail(text, lines=15):
    return "\n".join(text.strip().splitlines()[-lines:])


def median_ms(samples):
    return statistics.median(samples) * 1000


class Bench:
    def __init__(self, workdir, engine):
        self.workdir = workdir
        self.engine = engine
        self.run_id = f"bench-{os.getpid()}"
        self.docker = shutil.which("docker")
        self.compose = shutil.which("docker-compose")
        if not self.docker or not self.compose:
            raise BenchError("the docker CLI and Debian's docker-compose (1.29) must be on PATH")
        self.built_image = False
        self.size = 0
        self.change = None  # the env value of container 0's latest change, kept as sizes grow
        self.confdir = workdir / "containers.d"
        self.confdir.mkdir()
        self.config = workdir / "dockerup.conf"
        # settle=0 and probation=0: compose neither waits for a replacement nor keeps
        # the container it replaced; dockerup's defaults are deliberate pauses, not costs.
        self.config.write_text(f"confdir={self.confdir}\ncache={workdir / 'cache'}\npull=false\nsettle=0\n"
                               "probation=0\n")
        self.compose_file = workdir / "docker-compose.json"  # YAML reads JSON
        self.project = f"{self.run_id}-compose"
        self.dockerup = self.find_dockerup()
        self.count_path = self.make_counting_docker()

    # -- setup ---------------------------------------------------------------

    def find_dockerup(self):
        """The console script `pip install .` put next to this Python (not `which
        dockerup`: a pyenv shim is a bash script that costs ~100 ms by itself). If
        it runs some other version of the module, install this checkout into a venv
        of the benchmark's own rather than time stale code."""
        script = Path(sys.executable).parent / "dockerup"
        if script.is_file() and self.runs_checkout(sys.executable):
            return script
        why = "is not installed" if not script.is_file() else "runs another version of dockerup.py"
        print(f"bench: {script} {why}; installing this checkout into a private venv", file=sys.stderr)
        venv = self.workdir / "venv"
        checked([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
        source = self.workdir / "source"
        source.mkdir()
        for name in ("pyproject.toml", "setup.py", "dockerup.py", "README.md", "LICENSE"):  # as the Dockerfile
            shutil.copy(ROOT / name, source / name)
        checked([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                 "--disable-pip-version-check", str(source)])
        return venv / "bin" / "dockerup"

    def runs_checkout(self, python):
        result, _ = run([python, "-c", "import dockerup; print(dockerup.__file__)"], cwd=self.workdir)
        checkout = (ROOT / "dockerup.py").read_bytes()
        return result.returncode == 0 and Path(result.stdout.strip()).read_bytes() == checkout

    def make_counting_docker(self):
        """A `docker` first on PATH that logs its arguments, then is the real one."""
        directory = self.workdir / "counting-bin"
        directory.mkdir()
        calls = self.workdir / "docker-calls"
        wrapper = directory / "docker"
        wrapper.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(calls))}\n'
                           f'exec {shlex.quote(self.docker)} "$@"\n')
        wrapper.chmod(0o755)
        self.counting_path = f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
        return calls

    def check_engine(self):
        result, _ = run([self.docker, "version", "--format", "{{.Server.Version}}"], timeout=30)
        if result.returncode != 0:
            raise BenchError(f"no Docker engine answers at {self.engine}: {result.stderr.strip()}")
        if run([self.docker, "image", "inspect", IMAGE], timeout=30)[0].returncode != 0:
            build_image(IMAGE, "1")
            self.built_image = True

    def clean_up(self):
        """Remove every container this run made (both tools'), and the image if
        the benchmark imported it."""
        result, _ = run([self.docker, "ps", "--all", "--quiet", "--filter", f"label={LABEL}={self.run_id}"], timeout=60)
        ids = result.stdout.split()
        if ids:
            run([self.docker, "rm", "--force", *ids])
        if self.built_image:
            run([self.docker, "image", "rm", IMAGE], timeout=60)

    # -- the two tools -------------------------------------------------------

    def spec(self, index, change=None):
        env = {"BENCH": "1", **({"CHANGE": change} if change else {})}
        return {"name": f"{self.run_id}-{index:03d}", "image": IMAGE, "env": env,
                "portMappings": [{"containerPort": 80}], "dockerLabels": {LABEL: self.run_id}}

    def service(self, index, change=None):
        spec = self.spec(index, change)
        # network_mode bridge: dockerup's containers are on the default bridge too,
        # and compose then makes no network of its own.
        return {"image": spec["image"], "environment": spec["env"], "ports": ["80"],
                "network_mode": "bridge", "labels": spec["dockerLabels"]}

    def write(self, size):
        """Declare `size` containers to both tools; container 0 carries the change."""
        for index in range(size):
            path = self.confdir / f"{index:03d}.json"
            path.write_text(json.dumps(self.spec(index, self.change if index == 0 else None)))
        services = {f"svc{i:03d}": self.service(i, self.change if i == 0 else None) for i in range(size)}
        self.compose_file.write_text(json.dumps({"version": "2.4", "services": services}))

    def dockerup_command(self, *args):
        return [str(self.dockerup), "--config", str(self.config), "--remote", self.engine, *args]

    def compose_command(self, *services):
        return [self.compose, "-p", self.project, "-f", str(self.compose_file), "up", "-d", *services]

    def run_dockerup(self, env=None, expect_actions=0):
        result, seconds = checked(self.dockerup_command(), env=env)
        match = re.search(r"in [\d.]+s: (\d+) declared, (\d+) unchanged, (\d+) container actions", result.stderr)
        if not match or tuple(map(int, match.groups())) != (self.size, self.size - expect_actions, expect_actions):
            raise BenchError(f"dockerup did not make {expect_actions} change(s) over {self.size} containers:\n"
                             f"{tail(result.stderr)}")
        return seconds

    def run_compose(self, expect_recreated=0):
        result, seconds = checked(self.compose_command())
        up_to_date = result.stderr.count(" is up-to-date")
        recreated = len(set(re.findall(r"^Recreating (\S+)", result.stderr, re.M)))  # "..." then "... done"
        if (up_to_date, recreated) != (self.size - expect_recreated, expect_recreated):
            raise BenchError(f"compose did not recreate {expect_recreated} of {self.size} containers:\n"
                             f"{tail(result.stderr)}")
        return seconds

    def grow(self, size):
        """Bring both tools' containers up to `size` each (adding to what runs)."""
        added = size - self.size
        self.write(size)
        _, seconds = checked(self.dockerup_command())
        print(f"bench: dockerup brought up {added} containers in {seconds:.1f}s", file=sys.stderr)
        seconds = 0
        for first in range(self.size, size, COMPOSE_BATCH):
            names = [f"svc{index:03d}" for index in range(first, min(first + COMPOSE_BATCH, size))]
            seconds += checked(self.compose_command(*names))[1]
        print(f"bench: compose brought up {added} containers in {seconds:.1f}s", file=sys.stderr)
        self.size = size

    def docker_reads(self):
        """The engine reads a no-op cannot avoid, by the docker CLI itself, one
        after another: the floor under any docker-CLI-driven tool."""
        started = time.perf_counter()
        ids = checked([self.docker, "ps", "--all", "--quiet", "--no-trunc"])[0].stdout.split()
        checked([self.docker, "inspect", "--type", "container", *ids])
        checked([self.docker, "images", "--no-trunc"])
        return time.perf_counter() - started

    def count_docker_calls(self):
        self.count_path.unlink(missing_ok=True)
        self.run_dockerup(env={**os.environ, "PATH": self.counting_path})
        return self.count_path.read_text().splitlines() if self.count_path.exists() else []

    # -- measurements --------------------------------------------------------

    def measure_noop(self, size, rounds):
        self.grow(size)
        calls = self.count_docker_calls()  # also warms dockerup up
        self.run_compose()  # warm-up
        samples = {"dockerup": [], "compose": [], "reads": []}
        for round_ in range(rounds):
            # Alternate who goes first, so neither always runs on a warmer engine.
            order = ("dockerup", "compose") if round_ % 2 == 0 else ("compose", "dockerup")
            for tool in order:
                samples[tool].append(self.run_dockerup() if tool == "dockerup" else self.run_compose())
            samples["reads"].append(self.docker_reads())
        row = {tool: median_ms(values) for tool, values in samples.items()}
        row.update(size=size, ratio=row["dockerup"] / row["compose"], calls=calls)
        return row

    def measure_change(self, rounds):
        """Converge one changed spec among the running ones: container 0 gets a new
        env value each round, for each tool in turn."""
        dockerup, compose = [], []
        for round_ in range(rounds):
            self.change = f"{self.run_id}-{round_}"
            self.write(self.size)
            dockerup.append(self.run_dockerup(expect_actions=1))
            compose.append(self.run_compose(expect_recreated=1))
        return {"size": self.size, "dockerup": median_ms(dockerup), "compose": median_ms(compose)}

    def measure_startup(self, rounds):
        """`dockerup --help`, and importing the module in a fresh interpreter (the
        one the console script runs) with the modules that import brings in."""
        helps = [checked([str(self.dockerup), "--help"], cwd=self.workdir)[1] for _ in range(rounds + 1)][1:]
        python = self.dockerup.read_text().splitlines()[0].removeprefix("#!").strip()
        probe = ("import sys, time, json; before = set(sys.modules); t = time.perf_counter(); import dockerup; "
                 "t = time.perf_counter() - t; new = {m.split('.')[0] for m in set(sys.modules) - before}; "
                 "print(json.dumps([t, sorted(new - {'dockerup'})]))")
        imports, modules = [], []
        for _ in range(rounds + 1):
            seconds, modules = json.loads(checked([python, "-c", probe], cwd=self.workdir)[0].stdout)
            imports.append(seconds)
        return {"help": median_ms(helps), "import": median_ms(imports[1:]),
                "modules": sorted(m for m in modules if not m.startswith("_"))}


def proc_field(path, name):
    return next((line.split(":", 1)[1].strip() for line in Path(path).read_text().splitlines()
                 if line.startswith(name)), "")


def machine():
    memory = int(proc_field("/proc/meminfo", "MemTotal").split()[0])
    cpu = proc_field("/proc/cpuinfo", "model name") or platform.machine()
    server = subprocess.run(["docker", "version", "--format", "{{.Server.Version}} (client {{.Client.Version}})"],
                            capture_output=True, text=True).stdout.strip()
    compose = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} CPUs ({cpu}), {memory / 2**20:.0f} GiB RAM, Linux {platform.release()}, "
            f"Docker {server}, "
            f"docker-compose {compose}, Python {platform.python_version()}")


def shown_call(call):
    """`docker -H X inspect ID ID ...` as `docker inspect ID...`."""
    call = re.sub(r"^-H \S+ ", "", call).replace("\t", "\\t")
    return f"`docker {re.sub(r'( ?[0-9a-f]{64})+', ' ID...', call)}`"


def report(rows, change, startup, rounds):
    """The results as Markdown (README-ready), and the list of missed targets."""
    lines = ["| containers | dockerup no-op | compose no-op | dockerup / compose | docker reads | docker CLI calls |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['size']} | {row['dockerup']:.0f} ms | {row['compose']:.0f} ms | {row['ratio']:.2f} "
                     f"| {row['reads']:.0f} ms | {len(row['calls'])} |")
    lines += ["", "| other | dockerup | compose |", "|---|---:|---:|"]
    if change:
        lines.append(f"| converge one changed spec among {change['size']} | {change['dockerup']:.0f} ms "
                     f"| {change['compose']:.0f} ms |")
    lines.append(f"| `dockerup --help` | {startup['help']:.0f} ms | |")
    lines.append(f"| `import dockerup` | {startup['import']:.1f} ms | |")
    lines += ["", f"Medians of {rounds} alternated rounds. Both tools' containers run side by side, so the engine "
              "holds twice the number in the first column: dockerup's no-op inspects them all (it must see every "
              "container on the host), compose only lists its project's. *docker reads*: `docker ps`, one "
              "`docker inspect` of every container and `docker images`, run one after another by the docker CLI: "
              "the floor under a tool that reads the engine through the CLI.",
              f"A no-op's docker commands: {'; '.join(shown_call(call) for call in rows[-1]['calls'])}.",
              f"`import dockerup` brings in: {', '.join(startup['modules'])}."]

    hard, soft = [], []
    most_calls = max(rows, key=lambda row: len(row["calls"]))
    met = len(most_calls["calls"]) <= TARGET_CALLS
    target_lines = [f"- at most {TARGET_CALLS} docker CLI calls in a no-op at every size: "
                    f"{', '.join(str(len(row['calls'])) for row in rows)}: {'met' if met else 'MISSED'}"]
    if not met:
        hard.append(f"a no-op over {most_calls['size']} containers ran {len(most_calls['calls'])} docker commands: "
                    + "; ".join(f"docker {call}" for call in most_calls["calls"]))
    met = startup["help"] < TARGET_HELP * 1000
    target_lines.append(f"- `dockerup --help` under {TARGET_HELP * 1000:.0f} ms: {startup['help']:.0f} ms: "
                        f"{'met' if met else 'MISSED'}")
    if not met:
        hard.append(f"dockerup --help took {startup['help']:.0f} ms")
    at_size = next((row for row in rows if row["size"] == RATIO_SIZE), None)
    if at_size:
        met = at_size["ratio"] <= TARGET_RATIO
        target_lines.append(f"- no-op over {RATIO_SIZE} containers at most {TARGET_RATIO} x compose: "
                            f"{at_size['ratio']:.2f}: {'met' if met else 'MISSED'}")
        if not met:
            soft.append(f"the no-op over {RATIO_SIZE} containers took {at_size['ratio']:.2f} x compose's time")
    else:
        target_lines.append(f"- no-op over {RATIO_SIZE} containers at most {TARGET_RATIO} x compose: "
                            f"not measured (size {RATIO_SIZE} not run)")
    return "\n".join(lines + ["", "Targets:"] + target_lines), hard, soft


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,50,200", help="numbers of containers, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="alternated timed runs per measurement")
    parser.add_argument("--smoke", action="store_true",
                        help="3 containers, 2 rounds; fail only on the hard targets (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.rounds = [3], 2
    else:
        try:
            args.sizes = sorted({int(size) for size in args.sizes.split(",")})
        except ValueError:
            parser.error(f"--sizes: expected numbers separated by commas, got {args.sizes!r}")
        if args.sizes[0] < 1 or args.rounds < 1:
            parser.error("sizes and rounds must be at least 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    engine = os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE
    os.environ["DOCKER_HOST"] = engine  # for compose and every docker CLI call here
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dockerup-bench-") as workdir:
        bench = None
        try:
            bench = Bench(Path(workdir), engine)
            bench.check_engine()
            print(f"bench: {bench.dockerup} against {engine}", file=sys.stderr)
            rows, change = [], None
            change_size = RATIO_SIZE if RATIO_SIZE in args.sizes else args.sizes[-1]
            for size in args.sizes:
                rows.append(bench.measure_noop(size, args.rounds))
                print(f"bench: {size} containers: dockerup {rows[-1]['dockerup']:.0f} ms, "
                      f"compose {rows[-1]['compose']:.0f} ms", file=sys.stderr)
                if size == change_size:
                    change = bench.measure_change(args.rounds)
            startup = bench.measure_startup(max(args.rounds, 5))
        except (BenchError, subprocess.TimeoutExpired) as e:
            print(f"bench: {e}", file=sys.stderr)
            return 2
        finally:
            if bench:
                bench.clean_up()
    text, hard, soft = report(rows, change, startup, args.rounds)
    print(text)
    print(f"\nMachine: {machine()}.")
    print(f"bench: finished in {time.monotonic() - started:.0f}s", file=sys.stderr)
    missed = hard + ([] if args.smoke else soft)
    for problem in missed:
        print(f"bench: target missed: {problem}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
