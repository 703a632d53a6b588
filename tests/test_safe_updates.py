"""Updates that are safe for stateful services and bad images, against the real engine
and a loopback registry: data in anonymous volumes follows every replacement, a bad
image costs one failed attempt (not one per run), a late crash is rolled back, an
operator can roll back by hand, and one-shot jobs run once."""

import json
import subprocess
import time
import uuid

import pytest

from conftest import IMAGE, LOCAL, build_image, docker, image_id, wait_until
from faults_support import KILL_DOCKERUP, Wrapper, assert_clean_output

DB_COMMAND = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def db_image(engine):
    """A database stand-in: its image declares VOLUME /data, as postgres's does."""
    tag = f"{LOCAL}/db-{uuid.uuid4().hex[:6]}:1"
    build_image(tag, tag, DB_COMMAND, volumes=["/data"])
    yield tag
    docker("rmi", tag, check=False)


def write_rows(name, text="rows"):
    docker("exec", name, "sh", "-c", f"echo {text} >> /data/table")


def read_rows(name):
    return docker("exec", name, "cat", "/data/table").split()


def started_at(name):
    return docker("inspect", "--format", "{{.State.StartedAt}}", name).strip()


def changing(result):
    return [line.split("$ ", 1)[1] for line in result.stderr.splitlines() if " INFO $ docker" in line]


# ---- data in anonymous volumes follows the container --------------------------------

def test_data_in_an_image_volume_survives_a_spec_change(host, db_image):
    db = host.name("db")
    host.spec("db.json", name=db, image=db_image, env={"V": "1"})
    host.converge()
    before = host.inspect(db)
    write_rows(db)
    host.spec("db.json", name=db, image=db_image, env={"V": "2"})
    host.converge()
    after = host.inspect(db)
    assert after["Id"] != before["Id"] and "V=2" in after["Config"]["Env"]
    assert read_rows(db) == ["rows"]
    assert [m["Name"] for m in after["Mounts"]] == [m["Name"] for m in before["Mounts"]]


def test_data_in_a_spec_anonymous_volume_survives_two_replacements(host):
    db = host.name("db")
    volume = {"containerPath": "/srv/data"}
    host.spec("db.json", name=db, volumes=[volume], env={"V": "1"})
    host.converge()
    docker("exec", db, "sh", "-c", "echo kept > /srv/data/file")
    for version in ("2", "3"):
        host.spec("db.json", name=db, volumes=[volume], env={"V": version})
        host.converge()
        assert docker("exec", db, "cat", "/srv/data/file").strip() == "kept"


def test_data_survives_an_image_update(host, registry, db_image):
    db = host.name("db")
    reference = registry.push(db_image, f"{unique('db')}:latest")
    host.spec("db.json", name=db, image=reference)
    host.configure(pull="true")
    host.converge()
    write_rows(db)
    newer = f"{LOCAL}/db-{uuid.uuid4().hex[:6]}:2"
    build_image(newer, newer, DB_COMMAND, volumes=["/data"])
    registry.push(newer, reference.split("/", 1)[1])
    docker("tag", db_image, reference)  # the host still has the old image under the tag
    result = host.converge()
    assert "image updated" in result.stderr
    assert host.inspect(db)["Image"] == image_id(newer)
    assert read_rows(db) == ["rows"]
    docker("rmi", newer, check=False)


def test_an_eager_spec_with_data_is_replaced_stop_first_and_keeps_it(host, db_image):
    db = host.name("db")
    host.spec("db.json", name=db, image=db_image, env={"V": "1"}, update={"eager": True})
    host.converge()
    write_rows(db)
    host.spec("db.json", name=db, image=db_image, env={"V": "2"}, update={"eager": True})
    result = host.converge()
    assert f"{db}: replacing without update.eager: its data (/data) must never be used by two containers at once" \
        in result.stderr
    assert ".dockerup-new-" not in result.stderr
    assert read_rows(db) == ["rows"]


def volumes_mounted(scope, since):
    """Names of the volumes that the containers this scope created since `since`
    (a time.time()) mounted: read from the engine's events, since volumes carry no
    label of their own, and other tests make and remove theirs meanwhile."""
    until = f"{time.time() + 0.001:.3f}"

    def events(*filters, template):
        return docker("events", "--since", f"{since:.3f}", "--until", until,
                      *[word for f in filters for word in ("--filter", f)], "--format", template).splitlines()

    created = set(events("type=container", "event=create", f"label=dockerup.scope={scope}", template="{{.ID}}"))
    mounts = [line.split() for line in events("type=volume", "event=mount",
                                              template='{{.Actor.ID}} {{index .Actor.Attributes "container"}}')]
    return {volume for volume, container in mounts if container in created}


def volume_exists(name):
    return subprocess.run(["docker", "volume", "inspect", name], capture_output=True).returncode == 0


def test_a_failed_replacement_leaves_no_new_volume_behind(host, db_image):
    db = host.name("db")
    host.spec("db.json", name=db, image=db_image, env={"V": "1"})
    host.converge()
    kept = {m["Name"] for m in host.inspect(db)["Mounts"]}
    host.spec("db.json", name=db, image=db_image, volumes=[{"containerPath": "/scratch"}],
              command=["sh", "-c", "exit 4"])
    since = time.time()
    result = host.run()
    assert result.returncode == 1 and "exited with exit code 4" in result.stderr
    new = volumes_mounted(host.scope, since) - kept
    assert new, "the replacement mounted no volume of its own"
    assert [volume for volume in new if volume_exists(volume)] == []
    assert {m["Name"] for m in host.inspect(db)["Mounts"]} == kept and all(map(volume_exists, kept))
    assert host.inspect(db)["State"]["Running"]


# ---- a bad image costs one attempt ----------------------------------------------------

def test_a_bad_image_is_tried_once_and_then_left_alone(host, registry, bad_image):
    web = host.name("web")
    repository = unique("svc")
    reference = registry.push(IMAGE, f"{repository}:latest")
    host.spec("web.json", name=web, image=reference)
    host.configure(pull="true")
    host.converge()
    good = host.inspect(web)["Id"]
    tag, bad_id = bad_image, image_id(bad_image)
    registry.push(tag, f"{repository}:latest")
    docker("tag", IMAGE, reference)  # the host still has the good image under the tag ...
    docker("rmi", "-f", bad_id)  # ... and has never seen the bad one
    mark = len(registry.requests())

    first = host.run()
    assert first.returncode == 1
    assert any("/blobs/" in request for request in registry.downloads(repository, mark)), "the first run downloads it"
    assert f"replacement of {web} failed: exited with exit code 1; its last output: 'cannot start'" in first.stderr
    assert host.inspect(web)["Id"] == good and host.inspect(web)["State"]["Running"]
    started, mark = started_at(web), len(registry.requests())

    for _ in range(3):
        again = host.run()
        assert again.returncode == 0, again.stderr
        assert_clean_output(again)
        warnings = [line for line in again.stderr.splitlines() if " WARNING " in line]
        assert len(warnings) == 1 and f"{web}: not updating to " + reference in warnings[0]
        assert "(exited with exit code 1; its last output: 'cannot start'); next try at " in warnings[0]
        assert [c.split(" # ")[0].split()[-2:] for c in changing(again)] == [["pull", reference]]
    assert started_at(web) == started, "the healthy container was not stopped or restarted"
    assert registry.downloads(repository, mark) == [], "the bad image was not downloaded again"
    assert host.leftovers() == []

    # An explicit retry tries it again, at once
    retried = host.run("retry", web)
    assert retried.returncode == 1 and "forgetting that the update to" in retried.stderr
    assert f"replacement of {web} failed" in retried.stderr

    # A good image under the tag is applied at once
    fixed = f"{LOCAL}/fixed-{uuid.uuid4().hex[:6]}:1"
    build_image(fixed, fixed)
    registry.push(fixed, f"{repository}:latest")
    result = host.converge()
    assert "image updated" in result.stderr and host.inspect(web)["Image"] == image_id(fixed)
    docker("rmi", fixed, check=False)


def test_a_failed_update_is_tried_again_after_its_back_off(host, bad_image):
    web = host.name("web")
    host.spec("web.json", name=web, env={"V": "1"})
    host.converge()
    host.spec("web.json", name=web, image=bad_image)
    assert host.run().returncode == 1
    assert host.run().returncode == 0
    # Ten minutes pass (the first back-off)
    state = json.loads(host.memory.read_text())
    state["failures"][web]["at"] -= 601
    host.memory.write_text(json.dumps(state))
    result = host.run()
    assert result.returncode == 1
    assert f"{web}: trying again the update to " + bad_image in result.stderr
    assert json.loads(host.memory.read_text())["failures"][web]["attempts"] == 2


# ---- probation ---------------------------------------------------------------------------

def test_a_late_crash_is_rolled_back_to_the_very_container_that_was_kept(host):
    web = host.name("web")
    host.configure(probation="60")
    host.spec("web.json", name=web, env={"V": "1"})
    host.converge()
    original = host.inspect(web)["Id"]
    host.spec("web.json", name=web, env={"V": "2"}, command=["sh", "-c", "sleep 3; exit 2"])
    updated = host.converge()
    assert f"keeping {web} (" in updated.stderr
    replacement = host.inspect(web)["Id"]
    assert replacement != original
    wait_until(lambda: not host.inspect(web)["State"]["Running"], timeout=15, what="the late crash")

    rolled = host.run()
    assert rolled.returncode == 1
    assert f"rolled back to {web}.dockerup-old-" in rolled.stderr
    assert "it exited with code 2 after the update" in rolled.stderr
    now = host.inspect(web)
    assert now["Id"] == original and now["State"]["Running"]
    assert docker("ps", "-aq", "--no-trunc", "--filter", f"id={replacement}").strip() == ""
    assert host.leftovers() == []

    after = host.run()
    assert after.returncode == 0 and f"{web}: not updating to" in after.stderr
    assert host.inspect(web)["Id"] == original


def test_a_restart_by_the_engine_during_probation_is_a_failure(host):
    web = host.name("web")
    host.configure(probation="60")
    host.spec("web.json", name=web, restart="always", env={"V": "1"})
    host.converge()
    original = host.inspect(web)["Id"]
    host.spec("web.json", name=web, restart="always", env={"V": "2"}, command=["sh", "-c", "sleep 1; exit 3"])
    host.converge()
    wait_until(lambda: host.inspect(web)["RestartCount"] > 0, timeout=20, what="a restart by the engine")
    rolled = host.run()
    assert rolled.returncode == 1 and "docker restarted it" in rolled.stderr
    assert host.inspect(web)["Id"] == original


def test_a_clean_probation_removes_the_kept_container_and_its_image(host):
    web = host.name("web")
    old_tag, new_tag = f"{LOCAL}/p-{uuid.uuid4().hex[:6]}:1", f"{LOCAL}/p-{uuid.uuid4().hex[:6]}:2"
    old_id, new_id = build_image(old_tag, old_tag), build_image(new_tag, new_tag)
    host.configure(probation="2")
    host.spec("web.json", name=web, image=old_tag)
    host.converge()
    host.spec("web.json", name=web, image=new_tag)
    host.converge()
    assert len(host.leftovers()) == 1, "kept for probation"
    assert host.converge().stderr.count(" INFO $ docker") == 0, "nothing to do while on probation"
    time.sleep(2.2)
    ended = host.converge()
    assert f"probation of {web} ended: it ran 2s without failing" in ended.stderr
    assert host.leftovers() == []
    assert docker("images", "-q", "--no-trunc").split().count(old_id) == 0
    assert host.inspect(web)["Image"] == new_id
    docker("rmi", new_tag, check=False)


# ---- rollback by hand --------------------------------------------------------------------

def test_rollback_during_probation_puts_back_the_kept_container(host):
    web = host.name("web")
    host.configure(probation="300")
    host.spec("web.json", name=web, env={"V": "1"})
    host.converge()
    original = host.inspect(web)["Id"]
    host.spec("web.json", name=web, env={"V": "2"})
    host.converge()
    result = host.run("rollback", web)
    assert result.returncode == 0, result.stderr
    assert f"{web}: rolled back to {web}.dockerup-old-" in result.stderr
    assert host.inspect(web)["Id"] == original and host.inspect(web)["State"]["Running"]
    assert host.run().returncode == 0 and host.inspect(web)["Id"] == original


def test_rollback_after_probation_pulls_the_previous_image_and_pins_it(host, registry):
    web = host.name("web")
    repository = unique("pinned")
    first_tag = f"{LOCAL}/first-{uuid.uuid4().hex[:6]}:1"
    first = build_image(first_tag, first_tag)  # of its own: it is removed below
    reference = registry.push(first_tag, f"{repository}:latest")
    host.configure(pull="true", probation="0")
    host.spec("web.json", name=web, image=reference)
    host.converge()
    second_tag = f"{LOCAL}/second-{uuid.uuid4().hex[:6]}:1"
    build_image(second_tag, second_tag)
    registry.push(second_tag, f"{repository}:latest")
    docker("rmi", second_tag)
    host.converge()
    second = host.inspect(web)["Image"]
    assert second != first
    docker("rmi", "-f", first, check=False)  # cleanup removed it; make sure it is gone
    assert docker("images", "-q", "--no-trunc").split().count(first) == 0

    result = host.run("rollback", web)
    assert result.returncode == 0, result.stderr
    assert f"pull {reference.rsplit(':', 1)[0]}@sha256:" in result.stderr
    assert host.inspect(web)["Image"] == first

    # Pinned while the tag still points at the image rolled back from
    again = host.converge()
    assert f"{web} is pinned to " in again.stderr and host.inspect(web)["Image"] == first
    # ... and lifted when it moves
    third_tag = f"{LOCAL}/third-{uuid.uuid4().hex[:6]}:1"
    third = build_image(third_tag, third_tag)
    registry.push(third_tag, f"{repository}:latest")
    moved = host.converge()
    assert "the pin to " in moved.stderr and host.inspect(web)["Image"] == third
    docker("rmi", third_tag, check=False)


def test_rollback_with_nothing_to_roll_back_to_says_so(host):
    web = host.name("web")
    host.spec("web.json", name=web)
    host.converge()
    result = host.run("rollback", web)
    assert result.returncode == 1
    assert "web.json: nothing to roll back to: no earlier image is remembered for it" in result.stderr
    unknown = host.run("rollback", "nosuch")
    assert unknown.returncode == 1 and "nosuch: no declared container has this name" in unknown.stderr


# ---- one-shot jobs -------------------------------------------------------------------------

def test_a_one_shot_job_runs_once_and_once_more_after_an_edit(host, tmp_path):
    migrate = host.name("migrate")
    out = tmp_path / "out"
    out.mkdir()
    job = {"name": migrate, "restart": "never", "volumes": [{"containerPath": "/out", "hostPath": str(out)}],
           "command": ["sh", "-c", "echo ran >> /out/log"]}
    host.spec("migrate.json", **job)
    for _ in range(3):
        result = host.converge()
        assert_clean_output(result)
    wait_until(lambda: (out / "log").exists())
    assert (out / "log").read_text().split() == ["ran"]
    host.spec("migrate.json", **job, env={"VERSION": "2"})
    host.converge()
    host.converge()
    wait_until(lambda: len((out / "log").read_text().split()) == 2)
    time.sleep(0.5)
    assert (out / "log").read_text().split() == ["ran", "ran"]


def test_a_never_restart_job_that_failed_is_reported_and_left_stopped(host):
    job = host.name("job")
    host.spec("job.json", name=job, restart="never", command=["sh", "-c", "exit 5"])
    host.converge()
    wait_until(lambda: not host.inspect(job)["State"]["Running"])
    started = started_at(job)
    result = host.run()
    assert result.returncode == 1
    assert f"{job} (" in result.stderr and "exited with code 5; restart is never, so it stays stopped" in result.stderr
    assert started_at(job) == started


# ---- interruptions ---------------------------------------------------------------------------

@pytest.mark.parametrize("subcommand, nth, when", [
    pytest.param("rm", 1, "before", id="rollback: failed replacement not yet removed"),
    pytest.param("rename", 1, "before", id="rollback: kept container not yet renamed back"),
    pytest.param("start", 1, "before", id="rollback: kept container not yet started"),
])
def test_sigkill_during_a_rollback_is_finished_by_the_next_run(host, tmp_path, subcommand, nth, when):
    web = host.name("web")
    host.configure(probation="60")
    host.spec("web.json", name=web, env={"V": "1"})
    host.converge()
    original = host.inspect(web)["Id"]
    host.spec("web.json", name=web, env={"V": "2"}, command=["sh", "-c", "exit 2"])
    host.spec("web.json", name=web, env={"V": "2"}, command=["sh", "-c", "sleep 1; exit 2"])
    host.converge()
    wait_until(lambda: not host.inspect(web)["State"]["Running"], timeout=15)
    wrapper = Wrapper(tmp_path / "bin", subcommand, nth, before=KILL_DOCKERUP)
    assert host.run(env=wrapper.env).returncode == -9 and wrapper.fired
    host.run()
    final = host.run()
    assert final.returncode == 0, final.stderr
    running = {name: c["Id"] for name, c in host.managed().items() if c["State"]["Running"]}
    assert running == {web: original}
    assert host.leftovers() == []


def test_sigkill_during_probation_cleanup_is_finished_by_the_next_run(host, tmp_path):
    web = host.name("web")
    host.configure(probation="1")
    host.spec("web.json", name=web, env={"V": "1"})
    host.converge()
    host.spec("web.json", name=web, env={"V": "2"})
    host.converge()
    replacement = host.inspect(web)["Id"]
    time.sleep(1.2)
    wrapper = Wrapper(tmp_path / "bin", "rm", 1, before=KILL_DOCKERUP)
    assert host.run(env=wrapper.env).returncode == -9 and wrapper.fired
    host.converge()
    assert host.leftovers() == [] and host.inspect(web)["Id"] == replacement
