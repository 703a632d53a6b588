#!/usr/bin/env python3
"""How fast `dockerup --server` reacts to its spec files, on a real Docker engine.

    python3 tests/bench/reaction.py              # 20 rounds
    python3 tests/bench/reaction.py --rounds 50

A server runs with --interval 3600 (so no full sync interferes) on a confdir of its
own. Each round writes a new spec file and times it until its container runs (as
`docker ps` shows it), then deletes the file and times it until the container is
gone. The engine is DOCKER_HOST (default the system one); the server's containers
carry a scope of their own and are removed at the end.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import IMAGE, ensure_test_images  # noqa: E402  (the test image, made the tests' way)

ENGINE = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
LIMIT = 30.0  # seconds before a round counts as failed


def container_id(name):
    result = subprocess.run(["docker", "ps", "-q", "--filter", f"name=^{name}$"], capture_output=True, text=True)
    return result.stdout.strip()


def time_until(predicate):
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > LIMIT:
            raise SystemExit(f"no reaction within {LIMIT:g}s")
        time.sleep(0.02)
    return time.monotonic() - started


def summary(samples):
    ordered = sorted(samples)
    return (f"median {statistics.median(ordered):.2f}s, min {ordered[0]:.2f}s, "
            f"90th percentile {ordered[int(0.9 * (len(ordered) - 1))]:.2f}s, max {ordered[-1]:.2f}s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    ensure_test_images()
    scope = f"reaction{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as root:
        confdir = Path(root) / "containers.d"
        confdir.mkdir()
        config = Path(root) / "dockerup.conf"
        config.write_text(f"confdir={confdir}\ncache={root}/cache\nremote={ENGINE}\nscope={scope}\n"
                          "pull=false\nprobation=0\nsettle=0.3\n")
        server = subprocess.Popen([sys.executable, str(ROOT / "dockerup.py"), "--config", str(config), "--server",
                                   "--interval", "3600"], stdout=subprocess.DEVNULL,
                                  stderr=open(Path(root) / "server.log", "w"))
        starts, removals = [], []
        try:
            time.sleep(2)  # the first full sync, of nothing
            for index in range(rounds):
                name = f"{scope}-{index}"
                path = confdir / f"{name}.json"
                path.write_text(json.dumps({"name": name, "image": IMAGE}))
                starts.append(time_until(lambda: container_id(name)))
                path.unlink()
                removals.append(time_until(lambda: not container_id(name)))
                time.sleep(0.37 * (index % 3))  # writes at various points of the server's second
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(60)
            ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=dockerup.scope={scope}"],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "--force", *ids], capture_output=True)
    print(f"file written -> container running ({rounds} rounds): {summary(starts)}")
    print(f"file deleted -> container gone ({rounds} rounds): {summary(removals)}")
    print(f"server exit code on SIGTERM: {code}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
