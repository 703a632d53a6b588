"""The planner is a pure function of (declared specs, engine state): these tests
build both by hand and read the plan, with no engine."""

import pytest

import dockerup
from dockerup import (LABEL_HASH, LABEL_ID, LABEL_SOURCE, Container, CreateContainer, Declared, HostState, Images,
                      Memory, RemoveContainer, RemoveImage, RenameContainer, ReplaceContainer, Spec, StartContainer)

NOW = 1_800_000_000.0
IMAGE_ID = "sha256:" + "a" * 64
OLD_IMAGE_ID = "sha256:" + "b" * 64


def spec(name=None, source="confdir", **doc):
    doc.setdefault("image", "app:1")
    if name:
        doc["name"] = name
    return Spec(doc, f"{name or 'x'}.json", source)


def declare(*specs, incomplete=()):
    return Declared(dockerup.assign_identities(list(specs)), [], set(incomplete))


def container(name, of=None, *, status="running", image=IMAGE_ID, stale=False, ports=(), cid=None, labels=None):
    """A container as inspect would show it; `of` is the Spec it was made from."""
    if labels is None and of is not None:
        of = dockerup.assign_identities([of])[0] if not of.identity else of
        labels = dockerup.spec_labels(of)
        if stale:
            labels = {**labels, LABEL_HASH: "0" * 16}
    cid = cid or (name.encode().hex() * 64)[:64]
    return Container(cid, name, image, status, "", 0, labels or {}, frozenset(ports))


def plan_of(declared, host, memory=None, now=NOW, own_id=None, pending_pulls=(), pull_errors=None, **settings):
    settings.setdefault("probation", 0)
    return dockerup.plan_changes(declared, host, memory, dockerup.default_config(**settings), now=now, own_id=own_id,
                                 pending_pulls=pending_pulls, pull_errors=pull_errors)


def state(*containers, images=None, dangling=()):
    images = images if images is not None else {"app:1": IMAGE_ID}
    refs = {}
    for ref, image_id in images.items():
        refs.setdefault(image_id, []).append(ref)
    return HostState(list(containers), Images(dict(images), refs, set(dangling)))


def test_absent_spec_is_created_and_a_current_one_kept():
    web, db = spec("web"), spec("db")
    plan = plan_of(declare(web, db), state(container("db", db)))
    assert [type(a) for a in plan.actions] == [CreateContainer]
    assert plan.actions[0].spec.name == "web"
    assert [s.name for s in plan.kept] == ["db"]


def test_stopped_current_container_is_started():
    web = spec("web")
    plan = plan_of(declare(web), state(container("web", web, status="exited")))
    assert [type(a) for a in plan.actions] == [StartContainer]


def test_changed_spec_is_replaced_and_the_reason_names_the_field():
    old = spec("web", env={"A": "1"})
    new = spec("web", env={"A": "2"})
    plan = plan_of(declare(new), state(container("web", old)))
    (action,) = plan.actions
    assert isinstance(action, ReplaceContainer) and not action.eager
    assert action.reason == "spec changed: env"


def test_new_image_for_the_same_tag_replaces():
    web = spec("web")
    # After the pull, the tag points at the new image; the old one is untagged.
    old = container("web", web, image=OLD_IMAGE_ID)
    plan = plan_of(declare(web), state(old, dangling={OLD_IMAGE_ID}), Memory(images={OLD_IMAGE_ID}))
    (action, cleanup) = plan.actions
    assert isinstance(action, ReplaceContainer)
    assert action.reason == f"image updated: {'b' * 12} -> {'a' * 12}"
    assert action.previous.image_id == OLD_IMAGE_ID
    assert isinstance(cleanup, RemoveImage) and cleanup.image_id == OLD_IMAGE_ID


def test_undeclared_managed_container_is_removed_but_not_an_unmanaged_one():
    gone = spec("gone")
    plan = plan_of(declare(), state(container("gone", gone), container("bystander")))
    assert [(type(a), a.container.name) for a in plan.actions] == [(RemoveContainer, "gone")]


def test_exclusive_mode_removes_unmanaged_containers_but_never_dockerup_itself():
    me = container("dockerup-itself", cid="c" * 64)
    plan = plan_of(declare(), state(container("bystander"), me), exclusive=True, own_id="c" * 64)
    assert [a.container.name for a in plan.actions] == ["bystander"]


def test_a_source_that_failed_to_load_loses_no_container():
    from_user_data = spec("api", source="user-data")
    plan = plan_of(declare(incomplete={"user-data"}), state(container("api", from_user_data)))
    assert plan.actions == []
    assert plan.notes == [f"not removing api ({('api'.encode().hex() * 64)[:12]}): its source (user-data) "
                          "could not be read completely"]


def test_unmanaged_container_holding_a_declared_name_is_a_problem():
    web, other = spec("web"), spec("other")
    plan = plan_of(declare(web, other), state(container("web")))
    assert [a.spec.name for a in plan.actions] == ["other"]
    assert "already has this name and was not created by dockerup" in str(plan.problems[0])


def test_eager_replacement_falls_back_when_a_fixed_host_port_is_held():
    old = spec("web", portMappings=[{"containerPort": 80, "hostPort": 8080}], update={"eager": True})
    new = spec("web", portMappings=[{"containerPort": 80, "hostPort": 8080}], update={"eager": True}, env={"V": "2"})
    plan = plan_of(declare(new), state(container("web", old, ports={(8080, "tcp")})))
    (action,) = plan.actions
    assert not action.eager
    assert action.not_eager_because == "host port 8080/tcp cannot be bound by two containers at once"


def test_dockerup_replacing_its_own_container_is_always_eager():
    me = spec("dockerup", env={"V": "1"})
    new = spec("dockerup", env={"V": "2"})
    own = container("dockerup", me, cid="d" * 64)
    plan = plan_of(declare(new), state(own), own_id="d" * 64)
    assert plan.actions[0].eager


def test_dependents_are_recreated_after_a_dependency_is():
    data = spec("data")
    app = spec("app", volumes=[{"from": "data"}])
    proxy = spec("proxy", links=["app"])
    unrelated = spec("unrelated")
    plan = plan_of(declare(data, app, proxy, unrelated),
                                 state(container("app", app), container("proxy", proxy), container("unrelated", unrelated)))
    assert [(type(a).__name__, a.spec.name) for a in plan.actions] == [
        ("CreateContainer", "data"), ("ReplaceContainer", "app"), ("ReplaceContainer", "proxy")]
    assert plan.actions[1].reason == "data is being recreated, and this container refers to it"


def test_leftovers_of_an_interrupted_update_are_finished():
    web = spec("web")
    temporary = container("web.dockerup-new-12345678", web)
    retired = container("web.dockerup-old-abc", web, stale=True, status="exited")
    plan = plan_of(declare(web), state(temporary, retired))
    assert [type(a) for a in plan.actions] == [RemoveContainer, RenameContainer]
    assert plan.actions[0].container is retired
    assert plan.actions[1].container is temporary


def test_a_failed_replacement_left_stopped_is_not_started_over_the_running_old_one():
    old, new = spec("web", env={"V": "1"}), spec("web", env={"V": "2"})
    running_old = container("web", old)
    failed_new = container("web.dockerup-new-12345678", new, status="exited")
    plan = plan_of(declare(new), state(running_old, failed_new))
    assert [type(a) for a in plan.actions] == [RemoveContainer, ReplaceContainer]
    assert plan.actions[0].container is failed_new and plan.actions[1].old is running_old


def test_an_unavailable_image_leaves_the_running_container_alone():
    web = spec("web", image="gone:1")
    plan = plan_of(declare(web), state(container("web", web, stale=True), images={}),
                                 pull_errors={"gone:1": "connection refused"})
    assert plan.actions == []
    assert "gone:1 is not available locally and pulling it failed (connection refused); web (" in str(plan.problems[0])


def test_dry_run_assumes_pending_pulls_arrive():
    web = spec("web", image="new:1")
    plan = plan_of(declare(web), state(images={}), pending_pulls={"new:1"})
    assert [type(a) for a in plan.actions] == [CreateContainer]


def test_cleanup_removes_dangling_and_used_images_but_never_a_declared_one():
    web = spec("web")
    dangling_id, used_id = "sha256:" + "d" * 64, "sha256:" + "e" * 64
    host = state(container("web", web), images={"app:1": IMAGE_ID, "app:0": used_id}, dangling={dangling_id})
    plan = plan_of(declare(web), host, Memory(images={IMAGE_ID, used_id, dangling_id}))
    assert [(a.image_id, a.refs) for a in plan.actions] == [(dangling_id, (dangling_id,)), (used_id, ("app:0",))]


def test_images_unmanaged_containers_use_are_kept():
    used_id = "sha256:" + "e" * 64
    host = state(container("bystander", image=used_id), images={"app:1": IMAGE_ID}, dangling={used_id})
    assert plan_of(declare(), host, Memory(images={used_id})).actions == []


def test_pulls_follow_the_global_and_per_spec_settings():
    config = dockerup.default_config()
    specs = dockerup.assign_identities([spec("a", image="app:1"), spec("b", image="app:1"),
                                        spec("c", image="lib:1", update={"pull": False}),
                                        spec("d", image="missing:1", update={"pull": False})])
    images = state(images={"app:1": IMAGE_ID, "lib:1": OLD_IMAGE_ID}).images
    assert dockerup.plan_pulls(specs, images, config) == {"app:1": "look for a newer image",
                                                          "missing:1": "image missing locally"}
    no_pull = dockerup.default_config(pull=False)
    assert dockerup.plan_pulls(specs, images, no_pull) == {"missing:1": "image missing locally"}


@pytest.mark.parametrize("image, listed", [
    ("nginx:1.25", "nginx:1.25"),
    ("library/nginx:1.25", "nginx:1.25"),
    ("docker.io/library/nginx:1.25", "nginx:1.25"),
    ("docker.io/nginx:1.25", "nginx:1.25"),
    ("index.docker.io/nginx:1.25", "nginx:1.25"),
    ("index.docker.io/library/nginx", "nginx:latest"),
    ("docker.io/team/app", "team/app:latest"),
    # library/ is dropped only before an official image's one-word name, as docker does.
    ("library/team/app:1", "library/team/app:1"),
    ("docker.io/library/team/app:1", "library/team/app:1"),
    ("localhost:5000/library/app:1", "localhost:5000/library/app:1"),
    ("registry.example.com/docker.io/app:1", "registry.example.com/docker.io/app:1"),
    ("library/nginx@sha256:" + "a" * 64, "nginx@sha256:" + "a" * 64),
])
def test_image_references_are_the_names_docker_images_lists(image, listed):
    assert dockerup.normalize_image_ref(image) == listed
    images = state(images={listed: IMAGE_ID}).images
    assert images.resolve(image) == IMAGE_ID


def test_identity_of_unnamed_specs_is_their_file_or_position_in_user_data():
    specs = dockerup.assign_identities([
        Spec({"image": "registry.example.com:5000/app:1"}, "/etc/dockerup/containers.d/a.json", "confdir"),
        Spec({"image": "registry.example.com:5000/app:2"}, "/etc/dockerup/containers.d/b.json", "confdir"),
        spec("named"),
        Spec({"image": "registry.example.com:5000/app:3"}, "user-data", "user-data", "containers[0]"),
        Spec({"image": "other:1"}, "user-data", "user-data", "containers[1]")])
    assert [s.identity for s in specs] == ["file:a.json", "file:b.json", "named", "user-data#1", "user-data#2"]
    # What dockerup 0.1 called them, to adopt the containers it made.
    assert [s.legacy_identity for s in specs] == [
        "image:registry.example.com:5000/app", "image:registry.example.com:5000/app#2", "named",
        "image:registry.example.com:5000/app#3", "image:other"]


def test_labels_mark_the_source():
    labels = dockerup.spec_labels(dockerup.assign_identities([spec("api", source="user-data")])[0])
    assert labels[LABEL_ID] == "api" and labels[LABEL_SOURCE] == "user-data"


# ---- Safe updates: probation, failure memory, rollback, pins, one-shot jobs ----------

from dockerup import Failure, Mount, Outcome, Pin, Previous, RollBack, UpdateContainer  # noqa: E402

HOUR = 3600.0


def aged(c, seconds):
    """The same container, created `seconds` before NOW."""
    return dockerup.replace(c, created=NOW - seconds, started_at=NOW - seconds)


def on_probation(new_spec, old_spec, *, age=10, **current):
    """A replacement made `age` seconds ago and the container it replaced, kept stopped."""
    kept = aged(container("web.dockerup-old-0123456789ab", old_spec, status="exited", image=OLD_IMAGE_ID,
                          cid="b" * 64), age + 5)
    now = aged(container("web", new_spec, cid="c" * 64), age)
    return dockerup.replace(now, **current), kept


def test_a_replacement_on_probation_is_watched_and_its_predecessor_kept():
    web = spec("web")
    current, kept = on_probation(web, web, age=10)
    plan = plan_of(declare(web), state(current, kept), probation=300)
    assert plan.actions == [] and plan.outcomes["web"] == Outcome.PROBATION


def test_a_clean_probation_removes_the_kept_container_and_its_image():
    web = spec("web")
    current, kept = on_probation(web, web, age=301)
    plan = plan_of(declare(web), state(current, kept, dangling={OLD_IMAGE_ID}), Memory(images={OLD_IMAGE_ID}),
                   probation=300)
    assert [(type(a), getattr(a, "container", None)) for a in plan.actions][:1] == [(RemoveContainer, kept)]
    assert plan.actions[0].reason == "probation of web ended: it ran 300s without failing"
    assert isinstance(plan.actions[1], RemoveImage) and plan.actions[1].image_id == OLD_IMAGE_ID


@pytest.mark.parametrize("change, reason", [
    ({"status": "exited", "exit_code": 1}, "it exited with code 1 after the update"),
    ({"restart_count": 2}, "docker restarted it 2 times after the update"),
    ({"health": "unhealthy"}, "it became unhealthy after the update"),
])
def test_a_replacement_failing_on_probation_is_rolled_back_and_remembered(change, reason):
    web = spec("web")
    current, kept = on_probation(web, web, **change)
    plan = plan_of(declare(web), state(current, kept), probation=300)
    (action,) = plan.actions
    assert isinstance(action, RollBack) and action.kept is kept and action.current is current
    assert action.reason == reason
    assert (action.failure.spec_hash, action.failure.image_id, action.failure.manual) == (
        dockerup.spec_labels(web)[LABEL_HASH], IMAGE_ID, False)
    assert plan.outcomes["web"] == Outcome.ROLL_BACK


def test_a_one_shot_job_that_finished_needs_no_probation():
    job = spec("web", restart="never")
    current, kept = on_probation(job, job, status="exited", exit_code=0)
    plan = plan_of(declare(job), state(current, kept), probation=300)
    assert [a.container for a in plan.actions] == [kept]
    assert plan.outcomes["web"] == Outcome.FINISHED


def test_probation_off_removes_the_predecessor_at_once():
    web = spec("web")
    current, kept = on_probation(web, web)
    plan = plan_of(declare(web), state(current, kept), probation=0)
    assert [a.container for a in plan.actions] == [kept]


def failed_update(of, image_id=IMAGE_ID, at=NOW - 60, attempts=1, manual=False):
    return Failure(dockerup.spec_labels(of)[LABEL_HASH], image_id, "app:1", at, "exited with code 1", attempts, manual)


def test_a_remembered_failure_keeps_the_running_container_untouched():
    web = spec("web")
    old = container("web", web, image=OLD_IMAGE_ID)
    plan = plan_of(declare(web), state(old), Memory(failures={"web": failed_update(web)}))
    assert plan.actions == [] and plan.outcomes["web"] == Outcome.HELD
    (note,) = plan.notes
    assert note.startswith(f"web: not updating to app:1 ({'a' * 12}): it failed at ")
    assert "(exited with code 1); next try at " in note and note.endswith(", or run `dockerup retry web`")


def test_a_remembered_failure_restarts_the_old_container_if_it_stopped():
    web = spec("web")
    old = container("web", web, image=OLD_IMAGE_ID, status="exited")
    plan = plan_of(declare(web), state(old), Memory(failures={"web": failed_update(web)}))
    assert [(type(a), a.container) for a in plan.actions] == [(StartContainer, old)]


@pytest.mark.parametrize("attempts, wait", [(1, 600), (2, 1200), (3, 2400), (9, 86400), (20, 86400)])
def test_failed_updates_are_tried_again_after_a_doubling_back_off(attempts, wait):
    web = spec("web")
    old = container("web", web, image=OLD_IMAGE_ID)
    memory = Memory(failures={"web": failed_update(web, at=NOW - wait + 1, attempts=attempts)})
    assert plan_of(declare(web), state(old), memory).outcomes["web"] == Outcome.HELD
    memory.failures["web"].at = NOW - wait
    plan = plan_of(declare(web), state(old), memory)
    (action,) = plan.actions
    assert isinstance(action, ReplaceContainer) and action.attempts == attempts + 1


def test_a_failure_rolled_back_by_hand_has_no_back_off():
    web = spec("web")
    old = container("web", web, image=OLD_IMAGE_ID)
    memory = Memory(failures={"web": failed_update(web, at=NOW - 30 * 86400, manual=True)})
    assert plan_of(declare(web), state(old), memory).outcomes["web"] == Outcome.HELD


def test_a_new_image_or_spec_forgets_the_failure():
    web = spec("web")
    old = container("web", web, image=OLD_IMAGE_ID)
    memory = Memory(failures={"web": failed_update(web, image_id="sha256:" + "f" * 64)})
    plan = plan_of(declare(web), state(old), memory)
    assert isinstance(plan.actions[0], ReplaceContainer) and plan.memory.failures == {}
    assert "web" in memory.failures, "the planner works on a copy"


def test_a_finished_one_shot_job_is_not_started_again():
    job = spec("job", restart="on-failure")
    plan = plan_of(declare(job), state(container("job", job, status="exited")))
    assert plan.actions == [] and plan.outcomes["job"] == Outcome.FINISHED and plan.problems == []


def test_a_failed_never_restart_job_is_reported_not_restarted():
    job = spec("job", restart="never")
    failed = dockerup.replace(container("job", job, status="exited"), exit_code=3)
    plan = plan_of(declare(job), state(failed))
    assert plan.actions == []
    assert [str(p) for p in plan.problems] == [
        f"job.json: {failed.short} exited with code 3; restart is never, so it stays stopped"]


def test_a_dead_container_is_replaced_not_started():
    web = spec("web")
    plan = plan_of(declare(web), state(container("web", web, status="dead")))
    (action,) = plan.actions
    assert isinstance(action, ReplaceContainer) and action.reason == "container is dead"


def test_limits_and_restart_policy_are_updated_in_place():
    old, new = spec("web", memory="64m"), spec("web", memory="128m", cpu=512, restart="always")
    current = dockerup.replace(container("web", old), resources=dockerup.resource_settings(old.doc))
    (action,) = plan_of(declare(new), state(current)).actions
    assert isinstance(action, UpdateContainer)
    assert action.flags == ("--cpu-shares", "512", "--memory", "134217728", "--memory-swap", "268435456",
                            "--restart", "always")
    assert action.reason == "spec changed: cpu, memory, restart; updated in place"


def test_a_removed_limit_needs_a_new_container():
    old, new = spec("web", memory="64m"), spec("web")
    current = dockerup.replace(container("web", old), resources=dockerup.resource_settings(old.doc))
    (action,) = plan_of(declare(new), state(current)).actions
    assert isinstance(action, ReplaceContainer)
    assert action.reason == "memory removed from the spec (docker cannot remove a limit from a container)"


def with_volume(c, name="v" * 64, path="/data", declared=True):
    return dockerup.replace(c, mounts=(Mount("volume", name, f"/var/lib/docker/volumes/{name}/_data", path),),
                            declared_volumes=frozenset([path] if declared else []))


def test_anonymous_volumes_are_carried_and_force_a_stop_first_update():
    old, new = spec("db", update={"eager": True}), spec("db", update={"eager": True}, env={"V": "2"})
    (action,) = plan_of(declare(new), state(with_volume(container("db", old)))).actions
    assert action.carry == (("v" * 64, "/data"),)
    assert not action.eager
    assert action.not_eager_because == "its data (/data) must never be used by two containers at once"


def test_a_spec_volume_without_host_path_is_carried_a_bound_one_is_not():
    old = spec("db", volumes=[{"containerPath": "/data"}])
    carried = with_volume(container("db", old), declared=False)
    (action,) = plan_of(declare(spec("db", volumes=[{"containerPath": "/data"}], env={"V": "2"})),
                        state(carried)).actions
    assert action.carry == (("v" * 64, "/data"),)
    (action,) = plan_of(declare(spec("db", volumes=[{"containerPath": "/data", "hostPath": "/srv/db"}])),
                        state(carried)).actions
    assert action.carry == ()


def test_volumes_from_another_container_are_not_carried():
    data, app = spec("data"), spec("app", volumes=[{"from": "data"}])
    shared = with_volume(container("data", data))
    user = with_volume(dockerup.replace(container("app", app, stale=True), volumes_from=("data",)), declared=False)
    plan = plan_of(declare(data, app), state(shared, user))
    (action,) = plan.actions
    assert action.spec.name == "app" and action.carry == ()


def test_eager_with_host_networking_falls_back_to_stop_first():
    old = spec("web", network="host", update={"eager": True})
    new = spec("web", network="host", update={"eager": True}, env={"V": "2"})
    (action,) = plan_of(declare(new), state(container("web", old))).actions
    assert not action.eager
    assert action.not_eager_because == "with host networking two containers at once would compete for the host's ports"


def test_replacements_keep_their_predecessor_for_probation():
    old, new = spec("web", env={"V": "1"}), spec("web", env={"V": "2"})
    (action,) = plan_of(declare(new), state(container("web", old)), probation=300).actions
    assert action.keep_old
    stopped = container("web", old, status="exited")
    (action,) = plan_of(declare(new), state(stopped), probation=300).actions
    assert not action.keep_old, "a container that was not running is nothing to go back to"


# ---- No collateral damage: scopes, identities, dependents, cleanup -------------------

def scoped(c, scope):
    return dockerup.replace(c, labels={**c.labels, dockerup.LABEL_SCOPE: scope})


def test_an_instance_sees_only_its_own_scope():
    web, api = spec("web"), spec("api")
    others = scoped(container("api", api), "team-b")
    plan = plan_of(declare(web), state(others, container("web", web)))
    assert plan.actions == [], "not removed: it belongs to another scope"
    plan = plan_of(declare(api), state(others), scope="team-a")
    assert plan.actions == []
    assert str(plan.problems[0]).endswith("already has this name and belongs to dockerup scope 'team-b'")


def test_exclusive_mode_leaves_other_scopes_alone():
    others = scoped(container("api", spec("api")), "team-b")
    plan = plan_of(declare(), state(others, container("bystander")), exclusive=True)
    assert [a.container.name for a in plan.actions] == ["bystander"]


def test_untagged_images_of_others_are_left_without_exclusive():
    foreign = "sha256:" + "d" * 64
    assert plan_of(declare(), state(dangling={foreign})).actions == []
    (action,) = plan_of(declare(), state(dangling={foreign}), exclusive=True).actions
    assert action.image_id == foreign


def unnamed(filename, **doc):
    doc.setdefault("image", "app:1")
    return Spec(doc, f"/etc/dockerup/containers.d/{filename}", "confdir")


def test_a_broken_file_never_moves_another_spec_to_another_container():
    api, worker = unnamed("a.json", command="api"), unnamed("b.json", command="worker")
    identified = dockerup.assign_identities([api, worker])
    host = state(container("api-1", identified[0], cid="1" * 64), container("worker-1", identified[1], cid="2" * 64))
    # a.json now has a syntax error: only b.json is declared, and confdir is incomplete.
    plan = plan_of(declare(worker, incomplete={"confdir"}), host)
    assert plan.actions == [] and plan.outcomes["file:b.json"] == Outcome.KEEP


def test_containers_of_dockerup_0_1_are_adopted_without_a_change():
    worker = unnamed("worker.json", command="work")
    legacy_labels = {LABEL_ID: "image:app", LABEL_HASH: dockerup.legacy_fingerprint(worker.doc)[0],
                     dockerup.LABEL_FIELDS: dockerup.legacy_fingerprint(worker.doc)[1], LABEL_SOURCE: "confdir"}
    web = spec("web", env={"A": "1"})
    legacy_web = {LABEL_ID: "web", LABEL_HASH: dockerup.legacy_fingerprint(web.doc)[0], LABEL_SOURCE: "confdir"}
    plan = plan_of(declare(worker, web), state(container("happy_turing", labels=legacy_labels),
                                               container("web", labels=legacy_web)))
    assert plan.actions == []
    assert plan.outcomes == {"file:worker.json": Outcome.KEEP, "web": Outcome.KEEP}


def test_a_changed_spec_of_dockerup_0_1_replaces_its_container_with_its_volumes():
    old, new = unnamed("db.json", env={"V": "1"}), unnamed("db.json", env={"V": "2"})
    legacy = {LABEL_ID: "image:app", LABEL_HASH: dockerup.legacy_fingerprint(old.doc)[0], LABEL_SOURCE: "confdir",
              dockerup.LABEL_FIELDS: dockerup.legacy_fingerprint(old.doc)[1]}
    plan = plan_of(declare(new), state(with_volume(container("happy_turing", labels=legacy))))
    (action,) = plan.actions
    assert isinstance(action, ReplaceContainer) and action.reason == "spec changed: env"
    assert action.carry == (("v" * 64, "/data"),)


def test_a_renamed_file_keeps_its_container():
    before = dockerup.assign_identities([unnamed("old-name.json", command="work")])[0]
    after = unnamed("new-name.json", command="work")
    plan = plan_of(declare(after), state(container("happy_turing", before)))
    assert plan.actions == [] and plan.outcomes["file:new-name.json"] == Outcome.KEEP


def test_a_new_image_repository_of_an_unnamed_spec_is_a_replacement():
    before = dockerup.assign_identities([unnamed("app.json", image="app:1")])[0]
    after = unnamed("app.json", image="registry.example.com/app:1")
    host = state(container("happy_turing", before), images={"registry.example.com/app:1": IMAGE_ID})
    (action,) = plan_of(declare(after), host).actions
    assert isinstance(action, ReplaceContainer) and action.reason == "spec changed: image"
    # ... and an image that cannot be pulled touches nothing
    plan = plan_of(declare(after), state(container("happy_turing", before), images={}),
                   pull_errors={"registry.example.com/app:1": "no such host"})
    assert plan.actions == [] and plan.outcomes["file:app.json"] == Outcome.STALE


def test_a_dependent_follows_its_target_across_runs():
    db, app = spec("db"), spec("app", network="container:db")
    target = dockerup.replace(container("db", db, cid="d" * 64), started_at=NOW - 10)
    attached = dockerup.replace(container("app", app), network_mode="container:" + "d" * 64, started_at=NOW - 5)
    assert plan_of(declare(db, app), state(target, attached)).actions == []
    stale = dockerup.replace(attached, network_mode="container:" + "e" * 64)
    (action,) = plan_of(declare(db, app), state(target, stale)).actions
    assert isinstance(action, ReplaceContainer) and action.spec.name == "app"
    assert action.reason == "it shares the network of an earlier db container"


def test_a_dependent_follows_a_rollback():
    db, app = spec("db"), spec("app", volumes=[{"from": "db"}])
    current, kept = on_probation(db, db, status="exited", exit_code=1)
    current, kept = dockerup.replace(current, name="db"), dockerup.replace(kept, name="db.dockerup-old-x")
    plan = plan_of(declare(db, app), state(current, kept, container("app", app)), probation=300)
    assert [type(a) for a in plan.actions] == [RollBack, ReplaceContainer]
    assert plan.actions[1].reason == "db is being recreated, and this container refers to it"


# ---- Rollback by hand and pins ---------------------------------------------------------

def test_rollback_by_hand_during_probation_puts_back_the_kept_container():
    web = spec("web")
    current, kept = on_probation(web, web)
    plan = plan_of(declare(web), state(current, kept), Memory(rollbacks={"web"}), probation=300)
    (action,) = plan.actions
    assert isinstance(action, RollBack) and action.failure.manual and action.kept is kept


def test_rollback_by_hand_after_probation_pins_the_previous_image():
    web = spec("web")
    host = state(container("web", web), images={"app:1": IMAGE_ID, "app@sha256:" + "0" * 64: OLD_IMAGE_ID})
    memory = Memory(previous={"web": Previous(OLD_IMAGE_ID, "app@sha256:" + "0" * 64, NOW - HOUR)}, rollbacks={"web"})
    plan = plan_of(declare(web), host, memory)
    (action,) = plan.actions
    assert isinstance(action, ReplaceContainer) and action.want.image == "app@sha256:" + "0" * 64
    assert action.reason == f"rolled back by hand to {'b' * 12} (dockerup rollback)"
    assert plan.memory.pins["web"] == Pin(OLD_IMAGE_ID, "app@sha256:" + "0" * 64, IMAGE_ID)


def test_rollback_with_nothing_to_go_back_to_says_so():
    web = spec("web")
    plan = plan_of(declare(web), state(container("web", web)), Memory(rollbacks={"web"}))
    assert plan.actions == []
    assert [str(p) for p in plan.problems] == ["web.json: nothing to roll back to: no earlier image is remembered for it"]


def test_a_pin_holds_while_the_tag_stays_and_lifts_when_it_moves():
    web = spec("web")
    pinned = container("web", web, image=OLD_IMAGE_ID)
    memory = Memory(pins={"web": Pin(OLD_IMAGE_ID, "", IMAGE_ID)})
    host = state(pinned, images={"app:1": IMAGE_ID}, dangling={OLD_IMAGE_ID})
    plan = plan_of(declare(web), host, memory)
    assert plan.actions == [] and plan.outcomes["web"] == Outcome.KEEP
    assert plan.notes == [f"web is pinned to {'b' * 12} by a rollback, until app:1 points at another image "
                          "(or `dockerup retry web`)"]
    moved = state(pinned, images={"app:1": "sha256:" + "9" * 64}, dangling={OLD_IMAGE_ID, IMAGE_ID})
    plan = plan_of(declare(web), moved, memory)
    assert isinstance(plan.actions[0], ReplaceContainer) and plan.memory.pins == {}
