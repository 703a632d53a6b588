"""update.rolling in the planner, with no engine: a new image for a rolling spec's tag
waits for a delay of the host's own, spread evenly over the window across a fleet, and
is applied once that has passed; spec changes and missing containers are not held. Also
the server's view of its files (pure functions)."""

import hashlib
import json
import os
from dataclasses import replace

import dockerup
from dockerup import (CreateContainer, Failure, Memory, Outcome, RemoveImage, ReplaceContainer, Sighting,
                      StartContainer, UpdateContainer)
from test_plan import IMAGE_ID, NOW, OLD_IMAGE_ID, container, declare, spec, state

HOST = "3d1219c7c4c5404aaa1f6d2a48adfda4"  # a machine-id
NEWER_IMAGE_ID = "sha256:" + "c" * 64


def fleet(size):
    """Host identities that look like /etc/machine-id."""
    return [hashlib.md5(f"host-{n}".encode()).hexdigest() for n in range(size)]


# ---- the delay ---------------------------------------------------------------------

def test_delays_of_a_thousand_hosts_cover_the_window_evenly():
    for image_id in (IMAGE_ID, OLD_IMAGE_ID, NEWER_IMAGE_ID):
        delays = [dockerup.rolling_delay(host, image_id, 3600) for host in fleet(1000)]
        assert all(0 <= delay < 3600 for delay in delays)
        tenths = [sum(1 for delay in delays if n * 360 <= delay < (n + 1) * 360) for n in range(10)]
        assert all(70 <= count <= 130 for count in tenths), tenths


def test_a_host_and_an_image_always_get_the_same_delay():
    first = [dockerup.rolling_delay(host, IMAGE_ID, 3600) for host in fleet(50)]
    assert [dockerup.rolling_delay(host, IMAGE_ID, 3600) for host in fleet(50)] == first
    assert dockerup.rolling_delay(HOST, IMAGE_ID, 7200) == 2 * dockerup.rolling_delay(HOST, IMAGE_ID, 3600)


def test_each_image_reaches_the_fleet_in_another_order():
    hosts = fleet(100)

    def order(image_id):
        return sorted(hosts, key=lambda host: dockerup.rolling_delay(host, image_id, 3600))

    assert order(IMAGE_ID)[:10] != order(NEWER_IMAGE_ID)[:10]
    assert not set(order(IMAGE_ID)[:10]) & set(order(NEWER_IMAGE_ID)[:3])


def test_the_host_identity_is_the_machine_id_else_the_host_name():
    identity = dockerup.host_identity()
    try:
        machine_id = open("/etc/machine-id").read().strip()
    except OSError:
        machine_id = ""
    assert identity == (machine_id if machine_id not in ("", "uninitialized") else os.uname().nodename)


# ---- the plan ----------------------------------------------------------------------

def rolling_spec(name="web", rolling=True, **doc):
    return spec(name, update={"rolling": rolling}, **doc)


def pushed(web, image=OLD_IMAGE_ID, **kwargs):
    """The host after a pull moved web's tag (app:1, now IMAGE_ID) past its container."""
    return state(container(web.name, web, image=image, **kwargs), dangling={image})


def plan_with_host(declared, host, memory=None, now=NOW, **settings):
    settings.setdefault("probation", 0)
    return dockerup.plan_changes(declared, host, memory, dockerup.default_config(**settings), now=now,
                                 host_identity=HOST)


def test_a_new_image_is_held_until_the_hosts_turn_and_said_once():
    web = rolling_spec()
    delay = dockerup.rolling_delay(HOST, IMAGE_ID, 3600)
    first = plan_with_host(declare(web), pushed(web))
    assert first.actions == [] and first.outcomes == {"web": Outcome.HELD}
    assert first.held_until == {"web": NOW + delay}
    assert first.memory.sightings == {"web": Sighting(IMAGE_ID, NOW)}
    assert first.notes == [f"update of web to app:1 ({IMAGE_ID[7:19]}) held until {dockerup.clock(NOW + delay)} "
                           "(rolling: this host's turn in a 3600s window)"]

    later = plan_with_host(declare(web), pushed(web), first.memory, now=NOW + delay - 1)
    assert later.actions == [] and later.outcomes == {"web": Outcome.HELD}
    assert later.held_until == {"web": NOW + delay} and later.notes == []

    turn = plan_with_host(declare(web), pushed(web), later.memory, now=NOW + delay)
    action, cleanup = turn.actions
    assert isinstance(action, ReplaceContainer) and action.want.image_id == IMAGE_ID
    assert isinstance(cleanup, RemoveImage) and cleanup.image_id == OLD_IMAGE_ID
    assert action.reason == f"image updated: {OLD_IMAGE_ID[7:19]} -> {IMAGE_ID[7:19]}"
    assert turn.held_until == {} and turn.outcomes == {"web": Outcome.REPLACE}


def test_a_dry_run_always_shows_the_hold():
    web = rolling_spec()
    first = plan_with_host(declare(web), pushed(web))
    dry = plan_with_host(declare(web), pushed(web), first.memory, now=NOW + 1, dry_run=True)
    assert len(dry.notes) == 1 and dry.notes[0].startswith("update of web to app:1 ")
    assert dry.held_until == first.held_until


def test_the_window_sets_the_delay():
    web = rolling_spec(rolling={"window": 10})
    plan = plan_with_host(declare(web), pushed(web))
    assert plan.held_until == {"web": NOW + dockerup.rolling_delay(HOST, IMAGE_ID, 10)}
    assert "in a 10s window" in plan.notes[0]
    assert rolling_spec(rolling={}).rolling_window == 3600
    assert rolling_spec(rolling=False).rolling_window is None and spec("web").rolling_window is None


def test_a_held_image_is_not_removed_by_the_cleanup():
    web = rolling_spec()
    plan = plan_with_host(declare(web), pushed(web), Memory(images={OLD_IMAGE_ID}))
    assert not [a for a in plan.actions if isinstance(a, RemoveImage)]


def test_a_spec_change_is_not_held_back():
    old, new = rolling_spec(env={"A": "1"}), rolling_spec(env={"A": "2"})
    plan = plan_with_host(declare(new), state(container("web", old, image=OLD_IMAGE_ID), dangling={OLD_IMAGE_ID}))
    replace = [a for a in plan.actions if isinstance(a, ReplaceContainer)]
    assert len(replace) == 1 and replace[0].want.image_id == IMAGE_ID and replace[0].reason == "spec changed: env"
    assert plan.held_until == {} and plan.notes == []


def test_a_missing_container_is_not_held_back():
    web = rolling_spec()
    plan = plan_with_host(declare(web), state(), Memory(sightings={"web": Sighting(IMAGE_ID, NOW)}))
    assert [type(a) for a in plan.actions] == [CreateContainer] and plan.held_until == {}


def test_a_spec_without_rolling_updates_at_once_and_forgets_its_sighting():
    web = spec("web")
    plan = plan_with_host(declare(web), pushed(web), Memory(sightings={"web": Sighting(IMAGE_ID, NOW)}))
    assert [type(a) for a in plan.actions] == [ReplaceContainer, RemoveImage]
    assert plan.memory.sightings == {}


def test_a_tag_that_moves_again_starts_a_new_wait():
    web = rolling_spec()
    memory = Memory(sightings={"web": Sighting(NEWER_IMAGE_ID, NOW - 7200)})
    plan = plan_with_host(declare(web), pushed(web), memory, now=NOW)
    assert plan.memory.sightings == {"web": Sighting(IMAGE_ID, NOW)}
    assert plan.held_until == {"web": NOW + dockerup.rolling_delay(HOST, IMAGE_ID, 3600)}
    assert len(plan.notes) == 1


def test_the_sighting_outlives_the_update_so_a_rolled_back_image_stays_with_the_failure_memory():
    web = rolling_spec()
    sighting = Sighting(IMAGE_ID, NOW - 7200)
    # The update landed: nothing is held, and the sighting is kept.
    landed = plan_with_host(declare(web), state(container("web", web)), Memory(sightings={"web": sighting}))
    assert landed.actions == [] and landed.memory.sightings == {"web": sighting}
    # It was rolled back: the failure memory, not rolling, holds the image back now.
    failure = Failure(dockerup.spec_labels(declare(web).specs[0])[dockerup.LABEL_HASH], IMAGE_ID, "app:1",
                      NOW - 60, "it exited with code 1 after the update")
    back = plan_with_host(declare(web), pushed(web), Memory(failures={"web": failure}, sightings={"web": sighting}))
    assert back.actions == [] and back.outcomes == {"web": Outcome.HELD} and back.held_until == {}
    assert "web: not updating to app:1" in back.notes[0]


def test_a_failure_of_the_image_takes_over_even_before_the_turn():
    web = rolling_spec()
    failure = Failure(dockerup.spec_labels(declare(web).specs[0])[dockerup.LABEL_HASH], IMAGE_ID, "app:1",
                      NOW - 60, "it exited with code 1 after the update")
    plan = plan_with_host(declare(web), pushed(web), Memory(failures={"web": failure}))
    assert plan.held_until == {} and plan.memory.failures == {"web": failure}
    assert "web: not updating to app:1" in plan.notes[0]


def test_a_held_container_that_stopped_is_started_on_its_image():
    web = rolling_spec()
    plan = plan_with_host(declare(web), pushed(web, status="exited"))
    assert [type(a) for a in plan.actions] == [StartContainer] and plan.outcomes == {"web": Outcome.START}
    assert "web" in plan.held_until


def test_settings_applied_in_place_are_applied_while_held():
    old, new = rolling_spec(), rolling_spec(cpu=512)
    plan = plan_with_host(declare(new), state(container("web", old, image=OLD_IMAGE_ID), dangling={OLD_IMAGE_ID}))
    assert [type(a) for a in plan.actions] == [UpdateContainer] and plan.outcomes == {"web": Outcome.UPDATE}
    assert "web" in plan.held_until


def test_a_dependent_recreated_while_held_keeps_its_image():
    db_old, db_new = spec("db", env={"V": "1"}), spec("db", env={"V": "2"})
    web = rolling_spec(links=["db"])
    host = state(container("db", db_old), container("web", web, image=OLD_IMAGE_ID), dangling={OLD_IMAGE_ID})
    plan = plan_with_host(declare(db_new, web), host, Memory(images={OLD_IMAGE_ID}))
    replaced = {a.spec.name: a for a in plan.actions if isinstance(a, ReplaceContainer)}
    assert replaced["web"].want.image_id == OLD_IMAGE_ID and replaced["web"].want.image == OLD_IMAGE_ID
    assert replaced["web"].reason == "db is being recreated, and this container refers to it"
    assert not [a for a in plan.actions if isinstance(a, RemoveImage)]


def test_a_probation_goes_on_while_a_newer_image_is_held():
    web = rolling_spec()
    current = replace(container("web", web, image=IMAGE_ID), created=NOW - 10)
    kept = container("web.dockerup-old-1", web, image=OLD_IMAGE_ID, status="exited", cid="1" * 64)
    host = state(current, kept, images={"app:1": NEWER_IMAGE_ID, "other:1": IMAGE_ID}, dangling={OLD_IMAGE_ID})
    plan = plan_with_host(declare(web), host, probation=300)
    assert plan.actions == [] and plan.outcomes == {"web": Outcome.PROBATION}
    assert plan.held_until == {"web": NOW + dockerup.rolling_delay(HOST, NEWER_IMAGE_ID, 3600)}
    assert "update of web to app:1 (cccccccccccc) held until" in plan.notes[0]


def test_reports_read_the_hold_and_its_time():
    web = rolling_spec()
    plan = plan_with_host(declare(web), pushed(web))
    assert dockerup.held_back("web", plan) == dockerup.Hold(
        NOW + dockerup.rolling_delay(HOST, IMAGE_ID, 3600), "update.rolling: this host's turn in the window comes then")
    started = plan_with_host(declare(web), pushed(web, status="exited"))
    assert started.outcomes == {"web": Outcome.START}
    assert dockerup.held_back("web", started).until == started.held_until["web"]
    assert dockerup.held_back("web", plan_with_host(declare(spec("web")), pushed(spec("web")))) is None


def test_sightings_of_specs_no_longer_declared_are_forgotten_unless_a_source_is_incomplete():
    web = rolling_spec()
    memory = Memory(sightings={"web": Sighting(IMAGE_ID, NOW), "gone": Sighting(IMAGE_ID, NOW)})
    assert set(plan_with_host(declare(web), pushed(web), memory).memory.sightings) == {"web"}
    kept = plan_with_host(declare(web, incomplete={"confdir"}), pushed(web), memory).memory.sightings
    assert set(kept) == {"web", "gone"}


def test_sightings_are_remembered_as_written_and_nothing_else_is_read():
    memory = Memory(sightings={"web": Sighting(IMAGE_ID, NOW)})
    text = json.dumps(memory.to_json())
    assert Memory.from_json(json.loads(text)).sightings == memory.sightings
    for bad in ({"image_id": IMAGE_ID, "at": "soon"}, {"image_id": 1, "at": NOW}, {"image_id": IMAGE_ID}):
        value = {**memory.to_json(), "sightings": {"web": bad}}
        try:
            Memory.from_json(value)
        except (ValueError, TypeError):
            continue
        raise AssertionError(f"accepted {bad}")


# ---- the server's view of its files -------------------------------------------------

def test_any_change_of_a_spec_file_is_seen_and_named(tmp_path):
    confdir, config = tmp_path / "containers.d", tmp_path / "dockerup.conf"
    confdir.mkdir()
    (confdir / "web.json").write_text("{}")
    (confdir / "notes.txt").write_text("x")
    before = dockerup.look_at_configuration(str(config), str(confdir))
    assert before == dockerup.look_at_configuration(str(config), str(confdir))
    (confdir / "notes.txt").write_text("other")
    (confdir / ".web.json.swp").write_text("x")
    assert dockerup.look_at_configuration(str(config), str(confdir)) == before
    (confdir / "web.json").write_text("{}")  # same size, same content: a write all the same
    after = dockerup.look_at_configuration(str(config), str(confdir))
    assert after != before and dockerup.describe_change(before, after) == "web.json changed"
    os.rename(confdir / "web.json", confdir / "app.json")
    renamed = dockerup.look_at_configuration(str(config), str(confdir))
    assert dockerup.describe_change(after, renamed) == "app.json, web.json changed"
    config.write_text("pull=false\n")
    assert dockerup.look_at_configuration(str(config), str(confdir)).config_file != renamed.config_file


def test_a_file_copied_with_its_old_modification_time_is_seen(tmp_path):
    path = tmp_path / "web.json"
    path.write_text('{"a": 1}')
    before = dockerup.file_signature(str(path))
    stat = os.stat(path)
    path.write_text('{"a": 2}')
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dockerup.file_signature(str(path)) != before
