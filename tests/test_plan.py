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
