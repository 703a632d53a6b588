"""No collateral damage, against the real engine: an instance touches only its own
scope's containers and images, a broken file never moves a container to another spec,
dependents follow their targets whatever happened in between, upgrades of dockerup and
harmless edits recreate nothing, and limits change in place."""

import json
import uuid

from conftest import IMAGE, KEEP_RUNNING, LOCAL, Host, build_image, docker
from faults_support import KILL_DOCKERUP, Wrapper, assert_clean_output

import dockerup


def changing(result):
    return [line.split("$ ", 1)[1] for line in result.stderr.splitlines() if " INFO $ docker" in line]


def ids_by_name(host, scope):
    """name -> id of the containers of a scope ("": the default) on host's engine."""
    names = host.docker("ps", "-a", "--format", "{{.Names}} {{.ID}} {{.Label \"dockerup.scope\"}}").splitlines()
    return {n.split()[0]: n.split()[1] for n in names if n.split()[2:] == ([scope] if scope else [])}


def hosts_on(private_host, *scopes):
    """A Host on the private engine for each scope, under private_host's directory."""
    hosts = []
    for scope in scopes:
        root = private_host.root / f"scope-{scope or 'default'}"
        root.mkdir()
        hosts.append(Host(root, scope=scope, remote=private_host.remote))
    return hosts


# ---- scopes -------------------------------------------------------------------------------

def test_two_scopes_never_touch_each_others_containers(private_host):
    # The default scope, and exclusive mode: on the private engine, where no other
    # test has containers of either.
    host, other = hosts_on(private_host, "", "team-b")
    other.spec("api.json", name="api-b")
    other.spec("worker.json", command=["sh", "-c", KEEP_RUNNING])
    host.spec("web.json", name="web")
    host.spec("worker.json", command=["sh", "-c", KEEP_RUNNING])
    for _ in range(2):
        other.converge()
        host.converge()
    mine, theirs = ids_by_name(host, ""), ids_by_name(host, "team-b")
    assert "web" in mine and "api-b" in theirs and len(mine) == len(theirs) == 2
    # Removing everything from one scope removes nothing of the other.
    for path in host.confdir.iterdir():
        path.unlink()
    host.converge()
    assert ids_by_name(host, "") == {} and ids_by_name(host, "team-b") == theirs
    private_host.docker("run", "-d", "--name", "bystander", IMAGE)
    host.configure(exclusive="true")
    host.converge()
    assert ids_by_name(host, "team-b") == theirs, "exclusive mode removes only what no dockerup made"
    assert "bystander" not in private_host.engine.containers(), "exclusive mode removes what no dockerup made"
    for path in other.confdir.iterdir():
        path.unlink()
    other.converge()


def test_a_name_held_by_another_scope_is_reported_not_taken(host, neighbour):
    neighbour.spec("web.json", name=host.name("web"))
    neighbour.converge()
    host.spec("web.json", name=host.name("web"))
    result = host.run()
    assert result.returncode == 1
    assert f"already has this name and belongs to dockerup scope '{neighbour.scope}'" in result.stderr
    (neighbour.confdir / "web.json").unlink()
    neighbour.converge()


def test_an_untagged_image_dockerup_never_used_survives(host):
    # Someone else's untagged image: built, then its tag moved elsewhere.
    foreign = f"{LOCAL}/foreign-{uuid.uuid4().hex[:6]}:1"
    dangling = build_image(foreign, foreign)
    docker("tag", IMAGE, foreign)
    host.spec("web.json", name=host.name("web"))
    host.converge()
    host.converge()
    assert dangling in docker("images", "-q", "--no-trunc", "--filter", "dangling=true").split()
    docker("rmi", foreign, dangling, check=False)


# ---- stable identities ------------------------------------------------------------------

def test_a_syntax_error_in_one_unnamed_spec_moves_no_container(host):
    host.spec("a.json", command=["sh", "-c", "echo api; " + KEEP_RUNNING])
    host.spec("b.json", command=["sh", "-c", "echo worker; " + KEEP_RUNNING])
    host.converge()
    before = {c["Config"]["Labels"]["dockerup.id"]: c["Id"] for c in host.managed().values()}
    (host.confdir / "a.json").write_text('{"image": "broken",')
    broken = host.run()
    assert broken.returncode == 1 and changing(broken) == []
    (host.confdir / "a.json").write_text(json.dumps({"image": IMAGE, "command": ["sh", "-c", "echo api; " + KEEP_RUNNING]}))
    fixed = host.converge()
    assert changing(fixed) == []
    after = {c["Config"]["Labels"]["dockerup.id"]: c["Id"] for c in host.managed().values()}
    assert after == before == {"file:a.json": before["file:a.json"], "file:b.json": before["file:b.json"]}


def test_a_renamed_spec_file_keeps_its_container(host):
    host.spec("worker.json", command=["sh", "-c", KEEP_RUNNING])
    host.converge()
    before = set(host.running_ids().values())
    (host.confdir / "worker.json").rename(host.confdir / "jobs.json")
    result = host.converge()
    assert changing(result) == [] and set(host.running_ids().values()) == before


def test_a_new_image_repository_that_cannot_be_pulled_leaves_the_old_container(host):
    host.spec("app.json", command=["sh", "-c", KEEP_RUNNING])
    host.converge()
    before = set(host.running_ids().values())
    host.spec("app.json", image="localhost:1/typo/app:1", command=["sh", "-c", KEEP_RUNNING])
    result = host.run()
    assert result.returncode == 1 and "keeps running as it is" in result.stderr
    assert set(host.running_ids().values()) == before
    assert IMAGE in docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()


# ---- dependents follow their targets -------------------------------------------------------

def test_a_dependent_follows_a_target_removed_by_hand_once(host):
    host.spec("db.json", name=host.name("db"))
    host.spec("app.json", name=host.name("app"), network=f"container:{host.name('db')}")
    host.converge()
    docker("rm", "--force", host.name("db"))
    host.converge()
    db, app = host.inspect(host.name("db")), host.inspect(host.name("app"))
    assert app["HostConfig"]["NetworkMode"] == f"container:{db['Id']}" and app["State"]["Running"]
    quiet = host.converge()
    assert changing(quiet) == []


def test_an_interrupted_eager_update_ends_with_dependents_on_the_new_target(host, tmp_path):
    db_name = host.name("db")
    host.spec("db.json", name=db_name, env={"V": "1"}, update={"eager": True})
    host.spec("app.json", name=host.name("app"), network=f"container:{db_name}")
    host.spec("data.json", name=host.name("data-user"), volumes=[{"from": db_name}])
    host.converge()
    host.spec("db.json", name=db_name, env={"V": "2"}, update={"eager": True})
    # killed right after the old db was renamed aside and the new one into place
    wrapper = Wrapper(tmp_path / "bin", "rename", 2, after=KILL_DOCKERUP)
    assert host.run(env=wrapper.env).returncode == -9 and wrapper.fired
    host.run()
    final = host.converge()
    assert_clean_output(final)
    db, app = host.inspect(db_name), host.inspect(host.name("app"))
    assert "V=2" in db["Config"]["Env"]
    assert app["HostConfig"]["NetworkMode"] == f"container:{db['Id']}" and app["State"]["Running"]
    assert changing(host.converge()) == []


# ---- upgrades and harmless edits recreate nothing ----------------------------------------

def legacy_labels(doc, identity):
    """The labels dockerup 0.1 put on a container made from `doc`."""
    spec_hash, fields = dockerup.legacy_fingerprint(doc)
    return {"dockerup.id": identity, "dockerup.hash": spec_hash, "dockerup.fields": fields,
            "dockerup.source": "confdir"}


def test_containers_of_the_previous_release_are_kept(private_host):
    # dockerup 0.1 knew no scopes: its containers are the default scope's, which only
    # the private engine may have.
    host, = hosts_on(private_host, "")
    web = {"name": "web", "image": IMAGE, "env": {"A": "1"}, "memory": "64m"}
    worker = {"image": IMAGE, "command": ["sh", "-c", KEEP_RUNNING]}
    for name, doc, identity in (("web", web, "web"), ("old-worker", worker, f"image:{LOCAL}/app")):
        labels = [w for k, v in legacy_labels(doc, identity).items() for w in ("--label", f"{k}={v}")]
        host.docker("run", "-d", "--name", name, *labels,
                    *(["--memory", "64m", "--env", "A=1"] if name == "web" else []), IMAGE, *doc.get("command", []))
    before = host.running_ids()
    host.spec("web.json", **web)
    host.spec("worker.json", **worker)
    result = host.converge()
    assert changing(result) == [] and host.running_ids() == before
    host.spec("web.json", **{**web, "env": {"A": "2"}})
    changed = host.converge()
    assert "spec changed: env" in changed.stderr and host.inspect("web")["Config"]["Labels"]["dockerup.hash"][:2] == "2:"


def test_harmless_edits_recreate_nothing(host):
    path = host.spec("web.json", name=host.name("web"), memory="2g",
                     portMappings=[{"containerPort": 80}, {"containerPort": 81}],
                     volumes=[{"containerPath": "/a"}, {"containerPath": "/b"}])
    host.converge()
    before = host.running_ids()
    path.write_text(json.dumps({"volumes": [{"containerPath": "/b"}, {"containerPath": "/a"}], "memory": "2048m",
                                "portMappings": [{"containerPort": "81"}, {"containerPort": 80}],
                                "image": IMAGE, "name": host.name("web")}))
    assert changing(host.converge()) == [] and host.running_ids() == before


def test_limits_and_restart_policy_change_in_place(host):
    web = host.name("web")
    host.spec("web.json", name=web, memory="64m")
    host.converge()
    before = host.inspect(web)["Id"]
    host.spec("web.json", name=web, memory="128m", cpu=512, restart="always")
    result = host.converge()
    assert "spec changed: cpu, memory, restart; updated in place" in result.stderr
    after = host.inspect(web)
    assert after["Id"] == before
    assert (after["HostConfig"]["Memory"], after["HostConfig"]["CpuShares"], after["HostConfig"]["RestartPolicy"]["Name"]) \
        == (128 * 1024 * 1024, 512, "always")
    assert changing(host.converge()) == []
    host.spec("web.json", name=web, cpu=512, restart="always")
    removed = host.converge()
    assert "memory removed from the spec" in removed.stderr and host.inspect(web)["Id"] != before
