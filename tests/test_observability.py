"""What a run tells, against the real engine: the plan as JSON (and that a real run
executes exactly its commands), the Prometheus metrics file (read with
prometheus_client's own parser), and webhook notifications (received by an HTTP
server on 127.0.0.1). Plus the memory that keeps their state across runs."""

import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

import dockerup
from conftest import ENGINE, IMAGE, IMAGE_2, LOCAL, docker, free_port, image_id, made, wait_until
from faults_support import Wrapper, assert_clean_output, changing_commands

SECRET = "s3cr3t-" + uuid.uuid4().hex[:8]


# ---- The plan as JSON ------------------------------------------------------------------------

def json_plan(host, *args):
    result = host.run("--dry-run", "--format", "json", *args)
    assert_clean_output(result)
    return result.returncode, json.loads(result.stdout)


def executed(result):
    """The argv of every command a real run logged as changing the host."""
    return [shlex.split(line.split("  # ")[0]) for line in changing_commands(result.stderr)]


def planned(plan):
    return [argv for action in plan["actions"] for argv in action["commands"]]


def test_the_json_plan_of_a_create_is_what_the_run_executes(host):
    web = host.name("web")
    host.spec("web.json", name=web, env={"TOKEN": SECRET}, portMappings=[{"containerPort": 80}])
    code, plan = json_plan(host)
    assert code == 0 and set(plan) == {"actions", "problems", "warnings"}
    (action,) = plan["actions"]
    assert {key: action[key] for key in ("action", "container", "image", "imageId", "reason")} == {
        "action": "create", "container": web, "image": IMAGE, "imageId": image_id(IMAGE), "reason": "absent"}
    (argv,) = action["commands"]
    assert argv[:7] == ["docker", "-H", ENGINE, "run", "--detach", "--name", web] and argv[-1] == IMAGE
    assert argv[argv.index("--env") + 1] in ("TOKEN", "TOKEN=***")
    assert plan["problems"] == [] and plan["warnings"] == []
    assert host.managed() == {}, "a dry run changes nothing"

    for output in (host.run("--dry-run", "--format", "json").stdout,
                   host.run("--dry-run", "--format", "json", "--show-secrets").stdout):
        assert SECRET not in output
    assert executed(host.converge()) == planned(plan)


def test_the_json_plan_of_a_replace_lists_every_command_of_it(host):
    web, eager = host.name("web"), host.name("eager")
    host.spec("web.json", name=web, env={"V": "1"})
    host.spec("eager.json", name=eager, env={"V": "1"}, update={"eager": True})
    host.converge()
    old, old_eager = host.inspect(web)["Id"], host.inspect(eager)["Id"]
    host.spec("web.json", name=web, env={"V": "2"})
    host.spec("eager.json", name=eager, env={"V": "2"}, update={"eager": True})

    code, plan = json_plan(host)
    assert code == 0
    by_container = {action["container"]: action for action in plan["actions"]}
    assert {a["action"] for a in plan["actions"]} == {"replace"} and set(by_container) == {web, eager}
    assert by_container[web]["reason"] == "spec changed: env"
    assert [argv[3:5] for argv in by_container[web]["commands"]] == [
        ["stop", web], ["rename", web], ["run", "--detach"], ["rm", f"{web}.dockerup-old-{old[:12]}"]]
    new_name = next(argv[6] for argv in by_container[eager]["commands"] if argv[3] == "run")
    assert new_name.startswith(f"{eager}.dockerup-new-")
    assert [argv[3:] for argv in by_container[eager]["commands"] if argv[3] != "run"] == [
        ["rename", eager, f"{eager}.dockerup-old-{old_eager[:12]}"], ["rename", new_name, eager],
        ["stop", f"{eager}.dockerup-old-{old_eager[:12]}"], ["rm", f"{eager}.dockerup-old-{old_eager[:12]}"]]
    assert executed(host.converge()) == planned(plan)


def test_the_json_plan_of_a_remove_and_of_problems(host):
    web, gone, taken = host.name("web"), host.name("gone"), host.name("taken")
    host.spec("web.json", name=web)
    host.spec("gone.json", name=gone)
    host.converge()
    (host.confdir / "gone.json").unlink()
    docker("create", "--name", taken, "--label", host.label, IMAGE)
    host.spec("taken.json", name=taken)

    code, plan = json_plan(host)
    assert code == 1
    (action,) = plan["actions"]
    assert {key: action[key] for key in ("action", "container", "image", "imageId", "reason")} == {
        "action": "remove", "container": gone, "image": IMAGE, "imageId": image_id(IMAGE),
        "reason": f"{gone} is no longer declared"}
    assert action["commands"] == [["docker", "-H", ENGINE, "stop", gone], ["docker", "-H", ENGINE, "rm", gone]]
    (problem,) = plan["problems"]
    assert (problem["file"], problem["path"]) == (str(host.confdir / "taken.json"), "name")
    assert problem["message"].startswith(f"container {taken} (") and "was not created by dockerup" in problem["message"]
    result = host.run()
    assert result.returncode == 1 and executed(result) == planned(plan)

    (host.confdir / "taken.json").unlink()
    (host.confdir / "broken.json").write_text('{"image": "%s", "cpu": "many"}' % IMAGE)
    code, plan = json_plan(host)
    assert code == 1 and plan["actions"] == []
    assert plan["problems"] == [{"file": str(host.confdir / "broken.json"), "path": "cpu",
                                 "message": "expected an integer, got a string \"many\""}]


def test_the_json_plan_pulls_first_and_the_run_pulls_the_same(host, registry):
    reference = registry.push(IMAGE, f"json-{uuid.uuid4().hex[:6]}:latest")
    web = host.name("web")
    host.spec("web.json", name=web, image=reference)
    host.configure(pull="true")
    code, plan = json_plan(host)
    assert code == 0
    assert [(a["action"], a["container"], a["image"], a["reason"]) for a in plan["actions"]] == [
        ("pull", None, reference, "look for a newer image"), ("create", web, reference, "absent")]
    assert plan["actions"][0]["commands"] == [["docker", "-H", ENGINE, "pull", reference]]
    assert executed(host.converge()) == planned(plan)
    docker("rmi", reference, check=False)


def test_text_stays_the_default_and_json_is_only_for_plans_and_status(host):
    web = host.name("web")
    host.spec("web.json", name=web)
    default, text = host.run("--dry-run"), host.run("--dry-run", "--format", "text")
    assert default.returncode == text.returncode == 0 and default.stdout == text.stdout
    assert default.stdout.startswith(f"docker -H {ENGINE} run --detach --name {web} ")
    assert default.stdout.rstrip().endswith(f"{IMAGE}  # absent ({web})")
    wrong = host.run("--format", "json")
    assert wrong.returncode == 2 and wrong.stderr.strip().endswith(
        "dockerup ERROR --format json is for `dockerup status` and --dry-run")
    unknown = host.run("--dry-run", "--format", "xml")
    assert unknown.returncode == 2 and unknown.stderr.strip().endswith(
        "dockerup ERROR --format: format='xml': expected text or json")
    assert host.managed() == {}


# ---- Metrics -----------------------------------------------------------------------------------

def read_metrics(path):
    """{(name, labels without scope): value}, and {family: (type, help)}, by prometheus_client."""
    samples, families = {}, {}
    for family in text_string_to_metric_families(path.read_text()):
        families[family.name] = (family.type, family.documentation)
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "scope"}
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return samples, families


def test_metrics_are_written_atomically_after_every_run_with_counters_kept(host, tmp_path):
    metrics = tmp_path / "textfile" / "dockerup.prom"
    metrics.parent.mkdir()
    web, worker = host.name("web"), host.name("worker")
    host.configure(metrics=metrics)
    host.spec("web.json", name=web)
    host.spec("worker.json", name=worker)
    before = time.time()
    host.converge()
    samples, families = read_metrics(metrics)
    assert families["dockerup_last_run_timestamp_seconds"][0] == "gauge"
    assert families["dockerup_actions"][0] == "counter" and families["dockerup_runs"][0] == "counter"
    assert all(text for _, text in families.values())
    assert before <= samples[("dockerup_last_run_timestamp_seconds", ())] <= time.time()
    assert 0 < samples[("dockerup_last_run_duration_seconds", ())] < 60
    assert samples[("dockerup_last_run_success", ())] == 1
    assert samples[("dockerup_last_run_exit_code", ())] == 0
    assert samples[("dockerup_actions_total", (("action", "create"),))] == 2
    assert samples[("dockerup_runs_total", (("result", "converged"),))] == 1
    for name in (web, worker):
        assert samples[("dockerup_container_running", (("name", name),))] == 1
        assert samples[("dockerup_update_failed", (("name", name),))] == 0
        assert samples[("dockerup_update_available", (("name", name),))] == 0
    assert all(sample.labels["scope"] == host.scope
               for family in text_string_to_metric_families(metrics.read_text()) for sample in family.samples)
    assert oct(metrics.stat().st_mode & 0o777) == "0o644"

    inode = metrics.stat().st_ino
    docker("stop", worker)
    host.converge()
    samples, _ = read_metrics(metrics)
    assert metrics.stat().st_ino != inode, "a new file renamed over the old one"
    assert os.listdir(metrics.parent) == ["dockerup.prom"], "no temporary file left"
    assert samples[("dockerup_actions_total", (("action", "create"),))] == 2
    assert samples[("dockerup_actions_total", (("action", "start"),))] == 1
    assert samples[("dockerup_runs_total", (("result", "converged"),))] == 2
    assert samples[("dockerup_container_running", (("name", worker),))] == 1

    docker("stop", worker)
    (host.confdir / "worker.json").write_text(json.dumps({"name": worker, "image": IMAGE, "restart": "never"}))
    other = tmp_path / "other.prom"
    host.converge("--metrics", str(other))
    samples, _ = read_metrics(other)
    assert samples[("dockerup_runs_total", (("result", "converged"),))] == 3
    assert samples[("dockerup_container_running", (("name", worker),))] == 0


def test_metrics_after_failed_runs(host, tmp_path, bad_image):
    metrics = tmp_path / "dockerup.prom"
    web = host.name("web")
    host.configure(metrics=metrics)
    host.spec("web.json", name=web)
    host.converge()
    host.spec("web.json", name=web, image=bad_image)
    assert host.run().returncode == 1
    samples, _ = read_metrics(metrics)
    assert samples[("dockerup_last_run_success", ())] == 0
    assert samples[("dockerup_last_run_exit_code", ())] == 1
    assert samples[("dockerup_runs_total", (("result", "problems"),))] == 1
    assert samples[("dockerup_update_failed", (("name", web),))] == 1
    assert samples[("dockerup_update_available", (("name", web),))] == 1
    assert samples[("dockerup_container_running", (("name", web),))] == 1, "the old container keeps running"

    assert host.run().returncode == 0  # held: not tried again
    samples, _ = read_metrics(metrics)
    assert samples[("dockerup_last_run_success", ())] == 1
    assert samples[("dockerup_update_failed", (("name", web),))] == 1

    unreachable = host.run("--remote", f"unix://{tmp_path}/nothing.sock")
    assert unreachable.returncode == 2
    samples, families = read_metrics(metrics)
    assert samples[("dockerup_last_run_success", ())] == 0
    assert samples[("dockerup_last_run_exit_code", ())] == 2
    assert samples[("dockerup_runs_total", (("result", "failed"),))] == 1
    assert samples[("dockerup_runs_total", (("result", "converged"),))] == 2
    assert "dockerup_container_running" not in families, "nothing is known of the containers"


def test_metrics_after_every_sync_of_the_server(host, tmp_path):
    metrics = tmp_path / "dockerup.prom"
    host.configure(metrics=metrics, interval="0.5")
    host.spec("web.json", name=host.name("web"))
    server = subprocess.Popen(host.command("--server"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: metrics.exists() and read_metrics(metrics)[0].get(
            ("dockerup_runs_total", (("result", "converged"),)), 0) >= 3, timeout=30, what="three syncs")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    samples, _ = read_metrics(metrics)
    assert samples[("dockerup_actions_total", (("action", "create"),))] == 1


# ---- Notifications ------------------------------------------------------------------------------

class Hooks:
    """Webhooks on 127.0.0.1: every POST's path and JSON body, in order. A path
    beginning /slow is never answered (until the test ends)."""

    def __init__(self):
        self.posts, self.release = [], threading.Event()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/slow"):
                    hooks.release.wait(60)
                    return
                hooks.posts.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bodies(self, path):
        return [body for p, _, body in self.posts if p == path]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    hooks = Hooks()
    yield hooks
    hooks.close()


def events(body):
    return [(e["event"], e["container"]) for e in body["events"]]


def test_one_post_per_url_per_eventful_run_and_none_for_a_no_op(host, hooks):
    web, gone = host.name("web"), host.name("gone")
    host.configure(notify=f"{hooks.url('/a/T0/secret-token')}, {hooks.url('/b')}")
    host.spec("web.json", name=web, env={"TOKEN": SECRET})
    host.spec("gone.json", name=gone)
    host.converge()
    assert sorted(p for p, _, _ in hooks.posts) == ["/a/T0/secret-token", "/b"]
    (body,) = hooks.bodies("/b")
    assert hooks.bodies("/a/T0/secret-token") == [body]
    assert set(body) == {"host", "scope", "time", "events", "text"}
    assert (body["host"], body["scope"]) == (socket.gethostname(), host.scope)
    assert body["events"] == [
        {"event": "created", "container": gone, "image": IMAGE, "imageId": image_id(IMAGE), "reason": "absent"},
        {"event": "created", "container": web, "image": IMAGE, "imageId": image_id(IMAGE), "reason": "absent"}]
    where = f"{socket.gethostname()} ({host.scope})"
    assert body["text"].splitlines() == [f"{where}: {gone} created ({IMAGE}): absent",
                                         f"{where}: {web} created ({IMAGE}): absent"]
    assert all(content_type == "application/json" for _, content_type, _ in hooks.posts)

    for _ in range(2):
        host.converge()
    assert len(hooks.posts) == 2, "a run that changes nothing tells nothing"

    host.spec("web.json", name=web, env={"TOKEN": SECRET + "2"}, memory="64m")
    (host.confdir / "gone.json").unlink()
    host.converge()
    (body,) = hooks.bodies("/b")[1:]
    assert [(e["event"], e["container"], e["reason"]) for e in body["events"]] == [
        ("removed", gone, f"{gone} is no longer declared"), ("updated", web, "spec changed: env")]
    host.spec("web.json", name=web, env={"TOKEN": SECRET + "2"}, memory="96m")
    host.converge()
    (body,) = hooks.bodies("/b")[2:]
    assert events(body) == [("updated-in-place", web)] and "spec changed: memory" in body["events"][0]["reason"]
    assert len(hooks.posts) == 6
    assert SECRET not in json.dumps([body for _, _, body in hooks.posts])


def test_a_bad_image_is_told_once_across_runs(host, registry, hooks, bad_image):
    repository = f"svc-{uuid.uuid4().hex[:6]}"
    reference = registry.push(IMAGE, f"{repository}:latest")
    web = host.name("web")
    host.configure(pull="true", notify=hooks.url("/hook"))
    host.spec("web.json", name=web, image=reference)
    host.converge()
    registry.push(bad_image, f"{repository}:latest")
    docker("tag", IMAGE, reference)

    assert host.run().returncode == 1
    for _ in range(3):
        assert host.run().returncode == 0
    bodies = hooks.bodies("/hook")
    assert [events(body) for body in bodies] == [[("created", web)], [("update-failed", web)]]
    assert bodies[1]["events"][0] == {
        "event": "update-failed", "container": web, "image": reference, "imageId": image_id(bad_image),
        "reason": "exited with exit code 1; its last output: 'cannot start'"}
    assert bodies[1]["text"].endswith(f"{web} update failed ({reference}): exited with exit code 1; its last "
                                      "output: 'cannot start'")

    # `dockerup retry` tries it again and it fails again: nothing new to tell
    assert host.run("retry", web).returncode == 1
    assert len(hooks.bodies("/hook")) == 2
    docker("rmi", reference, check=False)


def test_a_rollback_on_probation_is_told_once(host, hooks):
    web = host.name("web")
    host.configure(probation="60", notify=hooks.url("/hook"))
    host.spec("web.json", name=web, env={"V": "1"})
    host.converge()
    host.spec("web.json", name=web, env={"V": "2"}, command=["sh", "-c", "sleep 2; exit 2"])
    host.converge()
    wait_until(lambda: not host.inspect(web)["State"]["Running"], timeout=15, what="the late crash")
    assert host.run().returncode == 1
    assert host.run().returncode == 0
    bodies = hooks.bodies("/hook")
    assert [events(body) for body in bodies] == [[("created", web)], [("updated", web)], [("rolled-back", web)]]
    assert bodies[2]["events"][0]["reason"] == "it exited with code 2 after the update"


def test_a_rollback_by_hand_after_probation_is_told_as_one(host, hooks):
    tag = made(f"{LOCAL}/told-{uuid.uuid4().hex[:8]}:latest")
    docker("tag", IMAGE, tag)
    web = host.name("web")
    host.configure(notify=hooks.url("/hook"))
    host.spec("web.json", name=web, image=tag)
    host.converge()
    docker("tag", IMAGE_2, tag)
    host.converge()
    host.converge("rollback", web)
    bodies = hooks.bodies("/hook")
    assert [events(body) for body in bodies] == [[("created", web)], [("updated", web)], [("rolled-back", web)]]
    assert bodies[2]["events"][0]["imageId"] == image_id(IMAGE)
    assert bodies[2]["events"][0]["reason"] == f"rolled back by hand to {image_id(IMAGE)[7:19]} (dockerup rollback)"
    docker("rmi", tag, check=False)


def test_a_problem_is_told_once_while_it_stands(host, hooks, tmp_path):
    host.configure(notify=hooks.url("/hook"))
    broken = host.confdir / "broken.json"
    broken.write_text("{")
    for _ in range(2):
        assert host.run().returncode == 1
    (body,) = hooks.bodies("/hook")
    (event,) = body["events"]
    assert (event["event"], event["container"], event["image"]) == ("problem", None, None)
    assert event["reason"] == (f"{broken}: line 1, column 2: invalid JSON: Expecting property name enclosed in "
                               "double quotes")
    broken.unlink()
    host.converge()
    broken.write_text("{")
    assert host.run().returncode == 1
    assert len(hooks.bodies("/hook")) == 2, "told again once it came back"

    broken.unlink()
    for _ in range(2):
        assert host.run("--remote", f"unix://{tmp_path}/nothing.sock").returncode == 2
    (body,) = hooks.bodies("/hook")[2:]
    assert events(body) == [("problem", None)] and "nothing.sock" in body["events"][0]["reason"]


def test_a_dead_or_slow_url_costs_at_most_the_bound(host, hooks):
    dead = f"http://127.0.0.1:{free_port()}/dead/secret-a"
    slow = hooks.url("/slow/secret-b")
    web = host.name("web")
    host.spec("web.json", name=web)
    started = time.monotonic()
    result = host.run("--notify", slow, "--notify", f"{dead} {hooks.url('/good')}")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert_clean_output(result)
    assert dockerup.NOTIFY_DEADLINE <= elapsed < dockerup.NOTIFY_DEADLINE + 4, elapsed
    assert [events(body) for body in hooks.bodies("/good")] == [[("created", web)]]
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, result.stderr
    port = slow.split(":")[2].split("/")[0]
    assert warnings[0].endswith(
        f"WARNING notify: 2 notifications of 3 not delivered: http://127.0.0.1:{port}/...: no answer within 5s; "
        f"http://127.0.0.1:{dead.split(':')[2].split('/')[0]}/...: [Errno 111] Connection refused")
    assert "secret" not in result.stderr
    assert host.running_ids().keys() == {web}, "notifications never change what is converged"


def test_a_no_op_run_with_metrics_and_notify_makes_three_docker_calls(host, hooks, tmp_path):
    host.configure(metrics=tmp_path / "dockerup.prom", notify=hooks.url("/hook"))
    host.spec("web.json", name=host.name("web"))
    host.converge()
    wrapper = Wrapper(tmp_path / "calls", match="none")
    host.converge(env=wrapper.env)
    assert sorted(call.split()[2] for call in wrapper.calls()) == ["images", "inspect", "ps"]
    assert len(hooks.posts) == 1


# ---- The memory keeps it --------------------------------------------------------------------------

def test_the_memory_keeps_the_last_run_counters_and_what_was_told():
    memory = dockerup.Memory(last_run=dockerup.LastRun(1.5, 0.25, 1, "ran in 0.25s"), actions_total={"create": 2},
                             runs_total={"problems": 1}, notified={"abc"})
    again = dockerup.Memory.from_json(json.loads(json.dumps(memory.to_json())))
    assert again == memory
    assert dockerup.Memory.from_json({"version": 1}) == dockerup.Memory()


@pytest.mark.parametrize("key, value", [
    ("last_run", {"at": 1.0, "duration": 1.0, "exit_code": "0", "summary": ""}),
    ("last_run", {"at": 1.0, "duration": True, "exit_code": 0, "summary": ""}),
    ("last_run", {"at": 1.0, "duration": 1.0, "exit_code": 0}),
    ("last_run", "yesterday"),
    ("actions_total", {"create": -1}),
    ("actions_total", {"create": 1.5}),
    ("actions_total", {"create": True}),
    ("runs_total", []),
    ("notified", [1]),
    ("notified", "abc"),
])
def test_the_memory_refuses_what_dockerup_would_not_write(key, value):
    with pytest.raises((ValueError, TypeError, AttributeError)):
        dockerup.Memory.from_json({"version": 1, key: value})


def test_a_damaged_memory_starts_afresh(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "runs_total": {"converged": "many"}}))
    assert dockerup.read_memory(str(tmp_path), "") == dockerup.Memory()


def test_metrics_text_escapes_label_values_and_parses():
    memory = dockerup.Memory(last_run=dockerup.LastRun(1700000000.5, 0.5, 0, "converged"))
    text = dockerup.metrics_text(memory, "blue", [('we"b\\1\n', True, False, True)])
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "dockerup_container_running"]
    assert family.samples[0].labels == {"name": 'we"b\\1\n', "scope": "blue"}
    assert 'dockerup_update_available{name="we\\"b\\\\1\\n",scope="blue"} 1' in text.splitlines()


def test_notify_urls_are_split_on_commas_and_spaces():
    assert dockerup.parse_urls("http://a/x, https://b:8443/y  http://c") == (
        "http://a/x", "https://b:8443/y", "http://c")
    for text in ("a/x", "ftp://a/x", "http://", "http://a:port/x"):
        with pytest.raises(ValueError) as error:
            dockerup.parse_urls(f"http://ok/secret {text}")
        assert str(error.value) == ("expected http:// or https:// URLs separated by commas or spaces; "
                                    "URL 2 is not one")
    assert dockerup.redact_url("https://user:pw@hooks.example:8443/services/T0/B0/secret") == \
        "https://hooks.example:8443/..."


def test_a_bad_notify_option_exits_2_without_repeating_the_url(host):
    result = host.run("--notify", "hooks.example/T0/secret")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("dockerup ERROR --notify: notify: expected http:// or https:// URLs "
                                          "separated by commas or spaces; URL 1 is not one")
