#!/usr/bin/env python3
"""What a bad image costs: a tag that a healthy service runs is moved to an image whose
command exits 1, then dockerup runs from "cron" a few times. Prints, for each run, its
exit code, whether the healthy container was restarted (its State.StartedAt changed)
and how many manifest and blob downloads the registry served for the repository.

    python3 tests/bench/bad_image.py [--runs 4] [--dockerup PATH/TO/dockerup.py]

--dockerup runs another dockerup.py (say, an older release, to compare). Uses the
engine in DOCKER_HOST (default the system one) and Debian's docker-registry on
127.0.0.1; removes everything it made.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import ENGINE, IMAGE, LOCAL, Registry, build_image, docker, ensure_test_images  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--dockerup", default=str(ROOT / "dockerup.py"))
    args = parser.parse_args()
    ensure_test_images()
    run_id = f"badimage-{uuid.uuid4().hex[:6]}"
    bad = f"{LOCAL}/{run_id}-bad:1"
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "registry").mkdir()
        registry = Registry(work / "registry")
        confdir = work / "containers.d"
        confdir.mkdir()
        config = work / "dockerup.conf"
        name = f"{run_id}-web"
        try:
            reference = registry.push(IMAGE, f"{run_id}:latest")
            config.write_text(f"confdir={confdir}\ncache={work / 'cache'}\nremote={ENGINE}\npull=true\n")
            (confdir / "web.json").write_text(json.dumps({"name": name, "image": reference,
                                                          "dockerLabels": {"dockerup-bench": run_id}}))
            dockerup = [sys.executable, args.dockerup, "--config", str(config)]
            subprocess.run(dockerup, capture_output=True, check=True)
            bad_id = build_image(bad, bad, "echo cannot start; exit 1")
            registry.push(bad, f"{run_id}:latest")
            docker("tag", IMAGE, reference)  # the host still has the good image under the tag ...
            docker("rmi", "-f", bad_id)  # ... and has never seen the bad one
            print(f"dockerup: {args.dockerup}")
            print("| run | exit code | healthy container restarted | registry downloads |")
            print("|---:|---:|---|---:|")
            for number in range(1, args.runs + 1):
                started, mark = started_at(name), len(registry.requests())
                result = subprocess.run(dockerup, capture_output=True, text=True)
                restarted = "yes" if started_at(name) != started else "no"
                print(f"| {number} | {result.returncode} | {restarted} | {len(registry.downloads(run_id, mark))} |")
        finally:
            ids = docker("ps", "-aq", "--filter", f"label=dockerup-bench={run_id}").split()
            if ids:
                docker("rm", "-f", *ids, check=False)
            docker("rmi", "-f", bad, check=False)
            for line in docker("images", "--format", "{{.Repository}}:{{.Tag}}").split():
                if run_id in line:
                    docker("rmi", "-f", line, check=False)
            registry.stop()


def started_at(name):
    return docker("inspect", "--format", "{{.State.StartedAt}}", name).strip()


if __name__ == "__main__":
    main()
