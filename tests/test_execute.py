"""The executor's transactions, driven with a recording stand-in for the docker runner:
which docker commands run, in which order, what is put back when a step fails, and what
the memory of failed updates records. tests/test_safe_updates.py does the same on the
real engine; these are the fast, exhaustive companions."""

import json

import pytest

import dockerup
from dockerup import Failure, Memory, Previous, ReplaceContainer, RollBack, Spec, Want

NOW = 1_800_000_000.0
OLD_IMAGE = "sha256:" + "b" * 64
NEW_IMAGE = "sha256:" + "a" * 64


class RecordingDocker:
    """Records every command; `inspect` answers with the given container states in
    turn; a command whose first words match a key of `fail` fails with that text."""

    dry_run = False
    timeout = 30

    def __init__(self, states=("running",), fail=None):
        self.commands, self.states, self.fail = [], list(states), fail or {}

    def change(self, *args, reason, env=None):
        self.commands.append(list(args))
        for prefix, detail in self.fail.items():
            if " ".join(args).startswith(prefix):
                raise dockerup.DockerError(" ".join(args), detail)
        return "f" * 64 if args[0] == "run" else ""

    def read(self, *args, **kwargs):
        if args[0] == "inspect":
            status = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            code = 0 if status in ("running", "exited-0") else 1
            return json.dumps({"Status": status.replace("-0", ""), "ExitCode": code})
        return ""

    def _run(self, args, level):
        return dockerup.CommandResult("", "", 0)


def spec(**doc):
    doc.setdefault("image", "app:1")
    doc.setdefault("name", "web")
    return dockerup.assign_identities([Spec(doc, "web.json", "confdir")])[0]


def container(name="web", cid="c" * 64, status="running", image=OLD_IMAGE):
    return dockerup.Container(cid, name, image, status, "", 0, {})


def replacement(of, old, **options):
    want = Want(dockerup.spec_labels(of), NEW_IMAGE, of.image)
    options.setdefault("previous", Previous(OLD_IMAGE, "app@sha256:" + "0" * 64, NOW))
    return ReplaceContainer(of, old, want, "spec changed: env", **options)


def execute(action, docker, memory=None):
    memory = memory if memory is not None else Memory()
    executor = dockerup.Executor(docker, settle=0, memory=memory, now=lambda: NOW)
    return executor.execute([action]), memory


def words(docker):
    """Each command as its verb and the names it acts on (no labels or flags)."""
    return [" ".join(c[:1] + [w for w in c[1:] if not w.startswith("-") and "=" not in w]) if c[0] != "run"
            else "run " + c[c.index("--name") + 1] if "--name" in c else "run" for c in docker.commands]


def test_stop_first_keeps_the_old_container_stopped_aside_for_probation():
    web = spec(env={"V": "2"})
    docker = RecordingDocker()
    problems, memory = execute(replacement(web, container(), keep_old=True), docker)
    assert problems == []
    assert words(docker) == ["stop web", "rename web web.dockerup-old-cccccccccccc", "run web"]
    assert memory.previous["web"].image_id == OLD_IMAGE and memory.failures == {}


def test_stop_first_without_probation_removes_the_old_container():
    docker = RecordingDocker()
    execute(replacement(spec(), container()), docker)
    assert words(docker)[-1] == "rm web.dockerup-old-cccccccccccc"


def test_a_failed_replacement_puts_the_old_container_back_and_is_remembered():
    docker = RecordingDocker(states=["exited"])
    problems, memory = execute(replacement(spec(), container(), keep_old=True), docker)
    assert words(docker) == ["stop web", "rename web web.dockerup-old-cccccccccccc", "run web", "rm web",
                             "rename web.dockerup-old-cccccccccccc web", "start web"]
    assert ["rm", "--force", "--volumes", "web"] in docker.commands, "no new volume is left behind"
    (problem,) = problems
    assert str(problem) == ("web.json: replacement of web failed: exited with exit code 1; "
                            "put back web (cccccccccccc) as it was")
    failure = memory.failures["web"]
    assert (failure.image_id, failure.at, failure.reason, failure.attempts) == (
        NEW_IMAGE, NOW, "exited with exit code 1", 1)
    assert "web" not in memory.previous


def test_a_retry_counts_its_attempts():
    docker = RecordingDocker(states=["exited"])
    _, memory = execute(replacement(spec(), container(), attempts=3), docker)
    assert memory.failures["web"].attempts == 3


def test_the_carried_volumes_are_mounted_by_name_at_their_paths():
    docker = RecordingDocker()
    db = spec(volumes=[{"containerPath": "/data"}], env={"V": "2"})
    execute(replacement(db, container(), carry=(("v" * 64, "/data"), ("w" * 64, "/var/lib/db"))), docker)
    run = next(c for c in docker.commands if c[0] == "run")
    volumes = [run[i + 1] for i, word in enumerate(run) if word == "--volume"]
    assert volumes == ["v" * 64 + ":/data", "w" * 64 + ":/var/lib/db"]


def test_eager_starts_first_then_swaps_and_stops_the_old_one_for_probation():
    docker = RecordingDocker()
    labels = dockerup.spec_labels(spec())
    problems, _ = execute(replacement(spec(), container(), eager=True, keep_old=True), docker)
    temporary = f"web.dockerup-new-{labels['dockerup.hash'][-8:]}"
    assert problems == []
    assert words(docker) == [f"run {temporary}", "rename web web.dockerup-old-cccccccccccc",
                             f"rename {temporary} web", "stop web.dockerup-old-cccccccccccc"]


def test_a_failed_eager_replacement_leaves_the_old_one_running():
    docker = RecordingDocker(states=["exited"])
    problems, memory = execute(replacement(spec(), container(), eager=True, keep_old=True), docker)
    assert [c[0] for c in docker.commands] == ["run", "rm"]
    assert "keeps running" in str(problems[0]) and memory.failures["web"].image_id == NEW_IMAGE


def test_a_one_shot_replacement_that_exits_0_succeeded():
    docker = RecordingDocker(states=["exited-0"])
    problems, memory = execute(replacement(spec(restart="never"), container(status="exited")), docker)
    assert problems == [] and memory.failures == {}


def test_rollback_removes_the_replacement_and_restarts_the_kept_container():
    web = spec()
    kept = container("web.dockerup-old-bbbbbbbbbbbb", cid="b" * 64, status="exited")
    failure = Failure("2:x", NEW_IMAGE, "app:1", NOW, "it exited with code 1 after the update")
    action = RollBack(web, container(cid="c" * 64, image=NEW_IMAGE), kept, failure, failure.reason)
    docker = RecordingDocker()
    problems, memory = execute(action, docker)
    assert docker.commands == [["rm", "--force", "--volumes", "c" * 64],
                               ["rename", "web.dockerup-old-bbbbbbbbbbbb", "web"], ["start", "web"]]
    assert memory.failures["web"] is failure
    (problem,) = problems
    assert str(problem) == ("web.json: rolled back to web.dockerup-old-bbbbbbbbbbbb (bbbbbbbbbbbb): the update to "
                            "app:1 failed (it exited with code 1 after the update); it is not tried again until the "
                            "spec or the image changes or the back-off has passed (dockerup retry web)")


@pytest.mark.parametrize("failing, undone", [
    ("stop", []),
    ("rename web", ["start web"]),
    ("run", ["rename web.dockerup-old-cccccccccccc web", "start web"]),
])
def test_every_step_of_a_failed_replacement_is_undone(failing, undone):
    docker = RecordingDocker(fail={failing: "boom"})
    problems, _ = execute(replacement(spec(), container(), keep_old=True), docker)
    assert len(problems) == 1
    done = words(docker)
    failed_at = next(i for i, c in enumerate(docker.commands) if " ".join(c).startswith(failing))
    assert [w for w in done[failed_at + 1:] if not w.startswith("ps")] == undone
