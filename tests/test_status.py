"""`dockerup status` against the real engine: every declared and managed container
with what is going on with it (running, stopped, missing, a failed update, probation,
a pin, a newer image, a problem) and the last run, as a table and as JSON; read
from the engine and the cache alone, in as many docker calls as a run with nothing
to do, changing nothing."""

import calendar
import json
import re
import time
import uuid

import pytest

from conftest import IMAGE, IMAGE_2, LOCAL, docker, image_id
from faults_support import Wrapper, assert_clean_output

# Every key a container of `dockerup status --format json` has.
ROW_KEYS = {"name", "identity", "declared", "state", "exitCode", "health", "image", "imageId", "containerId",
            "startedAt", "source", "file", "path", "next", "pending", "failedUpdate", "probation", "pinned", "held",
            "newerImage", "problems", "warnings"}
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def status(host, *args):
    """`dockerup status --format json`: (exit code, the document)."""
    result = host.run("status", "--format", "json", *args)
    assert_clean_output(result)
    assert result.returncode in (0, 1), result.stderr
    document = json.loads(result.stdout)
    for row in document["containers"]:
        assert set(row) == ROW_KEYS, row
    return result.returncode, document


def rows(document):
    return {row["name"]: row for row in document["containers"]}


def table(host):
    """`dockerup status` as text: (exit code, {name: the rest of its line}, other lines)."""
    result = host.run("status")
    assert_clean_output(result)
    lines = result.stdout.splitlines()
    header, body = lines[0], lines[1:]
    assert header.split() == ["NAME", "STATE", "HEALTH", "IMAGE", "IMAGE", "ID", "SOURCE", "NOTES"]
    by_name = {line.split()[0]: line for line in body if line.startswith(host.scope)}
    return result.returncode, by_name, [line for line in body if not line.startswith(host.scope)]


@pytest.fixture
def tag(engine):
    """A tag of the test's own, pointing at the first test image."""
    reference = f"{LOCAL}/status-{uuid.uuid4().hex[:8]}:latest"
    docker("tag", IMAGE, reference)
    yield reference
    docker("rmi", reference, check=False)


# ---- running, stopped, missing ----------------------------------------------------------

def test_running_stopped_and_missing_containers_as_a_table_and_as_json(host):
    web, worker, db = host.name("web"), host.name("worker"), host.name("db")
    host.spec("web.json", name=web, env={"TOKEN": "s3cr3t-status"})
    host.spec("worker.json", name=worker, image=IMAGE_2)
    host.converge()
    docker("stop", worker)
    host.spec("db.json", name=db)

    code, document = status(host)
    assert code == 1 and document["converged"] is False and document["scope"] == host.scope
    found = rows(document)
    assert [found[n]["state"] for n in (web, worker, db)] == ["running", "exited", "missing"]
    assert found[web]["imageId"] == image_id(IMAGE) and found[web]["image"] == IMAGE
    assert found[web]["containerId"] == host.inspect(web)["Id"]
    assert (found[web]["source"], found[web]["file"]) == ("confdir", str(host.confdir / "web.json"))
    assert found[web]["health"] is None and ISO_TIME.match(found[web]["startedAt"])
    assert (found[web]["next"], found[web]["pending"]) == ("keep", [])
    assert found[worker]["exitCode"] == 0 and found[worker]["image"] == IMAGE_2
    assert found[worker]["pending"] == [{"action": "start", "reason": "container is exited"}]
    assert (found[db]["containerId"], found[db]["imageId"], found[db]["next"]) == (None, None, "create")
    last = document["lastRun"]
    assert last["exitCode"] == 0 and ISO_TIME.match(last["at"]) and last["duration"] > 0
    assert re.fullmatch(r"converged in \d+\.\d\ds: 2 declared, 0 unchanged, 2 container actions, "
                        r"0 images removed, 0 problems", last["summary"])

    code, lines, others = table(host)
    assert code == 1
    assert re.fullmatch(rf"{web} +running +- +{re.escape(IMAGE)} +{image_id(IMAGE)[7:19]} +web\.json +-", lines[web])
    assert re.fullmatch(rf"{worker} +exited \(0\) +- +{re.escape(IMAGE_2)} +{image_id(IMAGE_2)[7:19]} +worker\.json"
                        r" +next run: start \(container is exited\)", lines[worker])
    assert re.fullmatch(rf"{db} +missing +- +{re.escape(IMAGE)} +- +db\.json +next run: create \(absent\)", lines[db])
    assert re.fullmatch(r"last run: \S+Z, [0-9.]+s, exit 0: converged in .*", others[-1])
    # Columns line up: every field starts where its header does.
    header = host.run("status").stdout.splitlines()[0]
    for line in lines.values():
        for column in ("STATE", "IMAGE ", "SOURCE", "NOTES"):
            start = header.index(column)
            assert line[start - 2:start] == "  " and line[start] != " ", (column, line)

    for output in (host.run("status").stdout, host.run("status", "--format", "json").stdout):
        assert "s3cr3t-status" not in output

    host.converge()
    code, document = status(host)
    assert code == 0 and document["converged"] is True
    assert {row["state"] for row in document["containers"]} == {"running"}


def test_a_container_no_longer_declared_and_one_with_a_problem(host):
    web, gone = host.name("web"), host.name("gone")
    host.spec("web.json", name=web)
    host.spec("gone.json", name=gone)
    host.converge()
    (host.confdir / "gone.json").unlink()
    taken = host.name("taken")
    docker("create", "--name", taken, "--label", host.label, IMAGE)
    host.spec("taken.json", name=taken)

    code, document = status(host)
    assert code == 1
    found = rows(document)
    assert found[gone]["declared"] is False and found[gone]["next"] == "remove"
    assert found[gone]["pending"] == [{"action": "remove", "reason": f"{gone} is no longer declared"}]
    assert found[gone]["identity"] == gone and found[gone]["source"] == "confdir" and found[gone]["file"] is None
    _, lines, _ = table(host)
    assert re.search(rf"^{gone} +running .* \(not declared\) +next run: remove \({gone} is no longer declared\)$",
                     lines[gone])

    # A spec file that is not valid: containers of its source are kept, and said so
    (host.confdir / "broken.json").write_text('{"image": 5}')
    code, document = status(host)
    found = rows(document)
    assert found[gone]["next"] == "keep" and found[gone]["pending"] == []
    gone_short = f"{gone} ({found[gone]['containerId'][:12]})"
    assert found[gone]["warnings"] == [f"not removing {gone_short}: its source (confdir) could not be read completely"]
    assert found[taken]["state"] == "missing" and found[taken]["next"] == "failed"
    (problem,) = found[taken]["problems"]
    assert problem.startswith(f"{host.confdir / 'taken.json'}: name: container {taken} (")
    assert problem.endswith("already has this name and was not created by dockerup; remove or rename it, "
                            "or set exclusive=true")
    assert document["problems"] == [{"file": str(host.confdir / "broken.json"), "path": "image",
                                     "message": "expected a string, got a number 5"}]
    # The container of a spec file that is not valid is not removed, so it is no row
    assert found[web]["next"] == "keep"

    code, lines, others = table(host)
    assert lines[gone].endswith(f"not removing {gone_short}: its source (confdir) could not be read completely")
    assert "already has this name" in lines[taken]
    assert f"problem: {host.confdir / 'broken.json'}: image: expected a string, got a number 5" in others


# ---- a failed update, probation, a pin, a newer image -----------------------------------------

def test_a_failed_update_shows_when_why_and_the_next_try(host, bad_image):
    web = host.name("web")
    host.spec("web.json", name=web)
    host.converge()
    host.spec("web.json", name=web, image=bad_image)
    before = time.time()
    assert host.run().returncode == 1

    code, document = status(host)
    assert code == 1
    row = rows(document)[web]
    assert row["state"] == "running" and row["imageId"] == image_id(IMAGE) and row["image"] == bad_image
    failure = row["failedUpdate"]
    assert (failure["image"], failure["imageId"], failure["attempts"]) == (bad_image, image_id(bad_image), 1)
    assert failure["reason"] == "exited with exit code 1; its last output: 'cannot start'"
    at = calendar.timegm(time.strptime(failure["at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert before - 1 <= at <= time.time()
    retry = calendar.timegm(time.strptime(failure["nextRetry"], "%Y-%m-%dT%H:%M:%SZ"))
    assert retry - at == 600
    assert row["next"] == "held" and row["held"] == {"until": failure["nextRetry"], "reason": (
        f"the update to {bad_image} failed: exited with exit code 1; its last output: 'cannot start'")}
    assert row["newerImage"] == {"imageId": image_id(bad_image)}  # the spec's image, present and not running
    assert document["lastRun"]["exitCode"] == 1

    code, lines, _ = table(host)
    assert lines[web].endswith(f"update to {bad_image} failed at {failure['at']} (exited with exit code 1; its "
                               f"last output: 'cannot start'); next try at {failure['nextRetry']}")


def test_probation_shows_until_when_and_the_kept_container(host):
    host.configure(probation="60")
    web = host.name("web")
    host.spec("web.json", name=web, env={"V": "1"})
    host.converge()
    old = host.inspect(web)["Id"]
    host.spec("web.json", name=web, env={"V": "2"})
    host.converge()
    new = host.inspect(web)

    code, document = status(host)
    assert code == 0, "an update on probation is as declared"
    row = rows(document)[web]
    assert row["containerId"] == new["Id"] and row["state"] == "running" and row["next"] == "probation"
    created = calendar.timegm(time.strptime(new["Created"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert row["probation"] == {"until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created + 60)),
                                "kept": f"{web}.dockerup-old-{old[:12]}"}
    _, lines, _ = table(host)
    assert lines[web].endswith(f"on probation until {row['probation']['until']} ({web}.dockerup-old-{old[:12]} kept)")


def test_a_pin_and_a_newer_image_present_locally(host, tag):
    web = host.name("web")
    host.spec("web.json", name=web, image=tag)
    host.converge()
    docker("tag", IMAGE_2, tag)  # a newer image under the tag, not applied yet

    code, document = status(host)
    row = rows(document)[web]
    assert code == 1 and row["newerImage"] == {"imageId": image_id(IMAGE_2)} and row["imageId"] == image_id(IMAGE)
    assert row["pending"] == [{"action": "replace", "reason": (
        f"image updated: {image_id(IMAGE)[7:19]} -> {image_id(IMAGE_2)[7:19]}")}]
    _, lines, _ = table(host)
    assert f"newer image {image_id(IMAGE_2)[7:19]} present locally" in lines[web]

    host.converge()
    assert host.run("rollback", web).returncode == 0
    code, document = status(host)
    row = rows(document)[web]
    assert code == 0, "a container pinned by a rollback is as the operator asked"
    assert row["pinned"]["imageId"] == row["imageId"] == image_id(IMAGE)
    assert row["pinned"]["ref"] in ("", *json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}",
                                                           IMAGE)))
    assert row["newerImage"] == {"imageId": image_id(IMAGE_2)}
    _, lines, _ = table(host)
    assert lines[web].endswith(f"pinned to {image_id(IMAGE)[7:19]} by a rollback")


# ---- reads, never writes ------------------------------------------------------------------------

def snapshot(directory):
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(directory.iterdir())}


def test_status_changes_nothing_and_makes_the_docker_calls_of_a_no_op_run(host, tmp_path, bad_image):
    web, worker = host.name("web"), host.name("worker")
    host.spec("web.json", name=web)
    host.spec("worker.json", name=worker)
    host.converge()
    host.spec("web.json", name=web, image=bad_image)
    assert host.run().returncode == 1
    docker("stop", worker)
    host.spec("db.json", name=host.name("db"))
    cache, containers = snapshot(host.cache), host.managed()

    wrapper = Wrapper(tmp_path / "calls", match="none")
    for args in (["status"], ["status", "--format", "json"]):
        result = host.run(*args, env=wrapper.env)
        assert result.returncode == 1 and result.stdout
    calls = wrapper.calls()
    # Two status runs: each lists containers and images side by side, then inspects
    assert sorted(call.split()[2] for call in calls) == ["images", "images", "inspect", "inspect", "ps", "ps"]
    assert snapshot(host.cache) == cache
    after = host.managed()
    assert {n: (c["Id"], c["State"]["Status"], c["State"]["StartedAt"]) for n, c in after.items()} == \
        {n: (c["Id"], c["State"]["Status"], c["State"]["StartedAt"]) for n, c in containers.items()}

    # A run with nothing to do makes as many
    host.spec("web.json", name=web)
    docker("start", worker)
    (host.confdir / "db.json").unlink()
    host.converge()
    noop = Wrapper(tmp_path / "noop", match="none")
    host.converge(env=noop.env)
    assert len(noop.calls()) == 3 == len(calls) // 2


def test_status_without_a_cache_or_containers(host):
    host.spec("web.json", name=host.name("web"))
    code, document = status(host)
    assert code == 1 and document["lastRun"] is None
    assert not host.cache.exists() or list(host.cache.iterdir()) == []
    code, _, others = table(host)
    assert others[-1] == "last run: none recorded"


def test_a_run_that_fails_is_the_last_run(host, tmp_path):
    host.spec("web.json", name=host.name("web"))
    host.converge()
    failed = host.run("--remote", f"unix://{tmp_path}/nothing.sock")
    assert failed.returncode == 2
    code, document = status(host)
    last = document["lastRun"]
    assert last["exitCode"] == 2
    assert re.fullmatch(r"failed after \d+\.\d\ds: `docker -H unix://\S+/nothing.sock ps --all --quiet --no-trunc` "
                        r"failed: .*", last["summary"]), last["summary"]


def test_status_of_a_container_made_by_hand_is_not_shown_unless_exclusive(host):
    web, other = host.name("web"), host.name("other")
    host.spec("web.json", name=web)
    host.converge()
    docker("run", "-d", "--name", other, "--label", host.label, IMAGE)
    _, document = status(host)
    assert other not in rows(document)
    host.configure(exclusive="true")
    code, document = status(host)
    row = rows(document)[other]
    assert code == 1 and row["declared"] is False and row["identity"] is None and row["source"] is None
    assert row["pending"] == [{"action": "remove", "reason": "not declared, and exclusive=true"}]
