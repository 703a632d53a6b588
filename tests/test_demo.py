"""The quick start's first command, etc/demo/run, does what the README says: validate,
a dry run, three containers up and serving a page, a run with nothing to do, one
replacement after an env change, and everything removed, leaving nothing behind."""

import re
import subprocess

from conftest import ROOT, docker, engine_lock

DEMO_NAMES = ("demo-content", "demo-web")


def test_the_demo_converges_and_leaves_nothing_behind(engine):
    with engine_lock("demo"):  # fixed names and a fixed host port: one demo at a time per engine
        result = subprocess.run([str(ROOT / "etc" / "demo" / "run")], capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "served by a container dockerup started" in output
    summaries = re.findall(r"INFO (?:converged|dry run) in [0-9.]+s: (.*)", output)
    assert summaries == [
        "3 declared, 0 unchanged, 3 container actions, 0 images removed, 0 problems",  # dry run
        "3 declared, 0 unchanged, 3 container actions, 0 images removed, 0 problems",
        "3 declared, 3 unchanged, 0 container actions, 0 images removed, 0 problems",
        "3 declared, 2 unchanged, 1 container actions, 0 images removed, 0 problems",
        "0 declared, 0 unchanged, 4 container actions, 1 images removed, 0 problems",
    ], output[-3000:]
    assert "not-in-the-logs" not in output  # the demo's API_KEY
    for name in DEMO_NAMES:
        assert docker("ps", "-aq", "--filter", f"name=^{name}$").strip() == ""
    kept = re.search(r"^local +([0-9a-f]{64})$", output, re.MULTILINE)  # the demo shows demo-content's data kept
    assert kept, output[-3000:]
    assert kept.group(1) not in docker("volume", "ls", "-q").split(), "then deletes it"
