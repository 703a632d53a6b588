"""EC2 user-data as a second source of containers (aws=true), against a fake
instance metadata service on loopback (tests/imds.py) and the real engine.

The rule under test: only an HTTP 404 means "no containers from user-data".
Any other failure keeps what the last good user-data declared, exits 1, and
still converges everything else."""

import gzip
import json
import os
import stat
import subprocess
import sys
import time

import pytest

import dockerup
from conftest import DOCKERUP, IMAGE, free_port
from imds import (INVALID_DOCUMENT, MALFORMED_BODY, TOKEN_HEADER, TOKEN_PATH, TTL_HEADER, USER_DATA_PATH,
                  FakeIMDS)

# dockerup's documented bound is 5 s for the whole lookup; the rest of a run
# (python start-up, docker ps/inspect) gets the difference.
RUN_BOUND = 8.0


@pytest.fixture
def imds():
    with FakeIMDS() as server:
        yield server


def container(name, **fields):
    return {"name": name, "image": IMAGE, **fields}


def run_aws(host, imds, *args, endpoint=None, **env):
    env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint or imds.endpoint, "AWS_EC2_METADATA_DISABLED": "false",
           **env}
    result = host.run("--aws", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def logged(result, level):
    """The messages of one log level, without timestamp and prefix."""
    marker = f" dockerup {level} "
    return [line.split(marker, 1)[1] for line in result.stderr.splitlines() if marker in line]


def env_of(inspect):
    return dict(item.split("=", 1) for item in inspect["Config"]["Env"] or [])


def fetch_failure(endpoint, reason, deadline=5):
    return f"user-data: cannot fetch EC2 user-data from {endpoint} within {deadline} seconds: {reason}"


# ---- both sources -------------------------------------------------------------


def test_confdir_and_user_data_are_merged(host, imds):
    host.spec("web.json", name=host.name("web"))
    imds.document = {"containers": [container(host.name("api")),
                                    container(host.name("worker"), env={"ROLE": "worker"})]}
    result = run_aws(host, imds)
    assert result.returncode == 0, result.stderr
    managed = host.managed()
    assert {name: c["Config"]["Labels"]["dockerup.source"] for name, c in managed.items()} == {
        host.name("web"): "confdir", host.name("api"): "user-data", host.name("worker"): "user-data"}
    assert all(c["State"]["Running"] for c in managed.values())
    assert env_of(managed[host.name("worker")])["ROLE"] == "worker"


def test_imdsv2_token_is_requested_and_sent(host, imds):
    imds.document = {"containers": [container(host.name("api"))]}
    result = run_aws(host, imds)
    assert result.returncode == 0, result.stderr
    assert set(host.running_ids()) == {host.name("api")}
    assert [(r.method, r.path) for r in imds.requests] == [("PUT", TOKEN_PATH), ("GET", USER_DATA_PATH)]
    put, get = imds.requests
    assert int(put.header(TTL_HEADER)) > 0
    assert get.header(TOKEN_HEADER) in imds.tokens


@pytest.mark.parametrize("mode, refusal", [("v1", 403), ("v1", 405), ("hung-token", None)],
                         ids=["token refused 403", "token refused 405", "token request hangs"])
def test_imdsv1_is_used_where_the_token_is_refused_or_never_comes(host, imds, mode, refusal):
    """On first boot, a container beyond the hop limit never gets the token: the lookup
    must not spend its whole deadline waiting for it (it would fail, as with `slow`)."""
    imds.mode, imds.refuse_token_with = mode, refusal
    imds.document = {"containers": [container(host.name("api"))]}
    result = run_aws(host, imds)
    assert result.returncode == 0, result.stderr
    assert set(host.running_ids()) == {host.name("api")}
    assert [(r.method, r.path) for r in imds.requests] == [("PUT", TOKEN_PATH), ("GET", USER_DATA_PATH)]
    assert imds.requests[1].header(TOKEN_HEADER) is None


def test_gzip_compressed_user_data(host, imds):
    imds.mode = "gzip"
    imds.document = {"containers": [container(host.name("api"))]}
    result = run_aws(host, imds)
    assert result.returncode == 0, result.stderr
    assert set(host.running_ids()) == {host.name("api")}


def test_endpoint_with_a_trailing_slash(host, imds):
    imds.document = {"containers": [container(host.name("api"))]}
    result = run_aws(host, imds, endpoint=imds.endpoint + "/")
    assert result.returncode == 0, result.stderr
    assert set(host.running_ids()) == {host.name("api")}
    assert [r.path for r in imds.requests] == [TOKEN_PATH, USER_DATA_PATH]


def test_a_name_in_both_sources_is_an_error_naming_both(host, imds):
    name, api = host.name("web"), host.name("api")
    web = host.spec("web.json", name=name)
    imds.document = {"containers": [container(api)]}
    assert run_aws(host, imds).returncode == 0
    before = host.running_ids()

    imds.document = {"containers": [container(api), container(name, env={"FROM": "user-data"})]}
    result = run_aws(host, imds)
    assert result.returncode == 1
    assert sorted(logged(result, "ERROR")) == sorted([
        f"{web}: name: '{name}' is also declared in user-data: containers[1]",
        f"user-data: containers[1].name: '{name}' is also declared in {web}",
    ])
    # Neither declaration wins: the running container is left as it is.
    assert host.running_ids() == before
    assert "FROM" not in env_of(host.inspect(name))


# ---- AWS_EC2_METADATA_* ---------------------------------------------------------


def test_metadata_disabled_skips_the_lookup(host, imds):
    host.spec("web.json", name=host.name("web"))
    imds.document = {"containers": [container(host.name("api"))]}
    result = run_aws(host, imds, AWS_EC2_METADATA_DISABLED="true")
    assert result.returncode == 0, result.stderr
    assert imds.requests == []
    assert "aws=true, but AWS_EC2_METADATA_DISABLED=true: EC2 user-data is not read" in logged(result, "WARNING")
    assert set(host.running_ids()) == {host.name("web")}


def test_metadata_disabled_does_not_remove_user_data_containers(host, imds):
    # Not looking is not the same as being told there is nothing (a 404):
    # an environment variable must not take down what user-data deployed.
    host.spec("web.json", name=host.name("web"))
    imds.document = {"containers": [container(host.name("api"))]}
    assert run_aws(host, imds).returncode == 0
    before = host.running_ids()
    result = run_aws(host, imds, AWS_EC2_METADATA_DISABLED="true")
    assert host.running_ids() == before, result.stderr


@pytest.mark.parametrize("environment, expected", [
    ({}, "http://169.254.169.254"),
    ({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:8111"}, "http://127.0.0.1:8111"),
    ({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:8111/"}, "http://127.0.0.1:8111"),
    ({"AWS_EC2_METADATA_SERVICE_ENDPOINT": ""}, "http://169.254.169.254"),
    ({"AWS_EC2_METADATA_DISABLED": "true"}, None),
    ({"AWS_EC2_METADATA_DISABLED": "TRUE"}, None),
    ({"AWS_EC2_METADATA_DISABLED": "false"}, "http://169.254.169.254"),
    ({"AWS_EC2_METADATA_DISABLED": "true", "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:8111"}, None),
])
def test_metadata_endpoint(monkeypatch, environment, expected):
    monkeypatch.delenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert dockerup.metadata_endpoint() == expected


# ---- 404 and failures ---------------------------------------------------------------


def test_404_removes_the_user_data_containers(host, imds):
    host.spec("web.json", name=host.name("web"))
    imds.document = {"containers": [container(host.name("api"))]}
    assert run_aws(host, imds).returncode == 0
    web = host.running_ids()[host.name("web")]

    imds.mode = "404"
    result = run_aws(host, imds)
    assert result.returncode == 0, result.stderr
    assert "the instance has no user-data (HTTP 404): no containers from it" in logged(result, "INFO")
    assert host.running_ids() == {host.name("web"): web}
    assert not (host.cache / dockerup.USER_DATA_CACHE).exists()


def fail(imds, how):
    if how == "outage":
        imds.stop()
    else:
        imds.mode = how


# (how the service fails, the first error line; {endpoint} is the service's)
FAILURES = [
    ("outage", fetch_failure("{endpoint}", "cannot connect")),
    ("500", fetch_failure("{endpoint}", "token request answered HTTP 500")),
    ("slow", fetch_failure("{endpoint}", "no answer in time")),
    ("malformed", "user-data: line 1, column 32: invalid JSON: Expecting property name enclosed in double quotes"),
    ("invalid", "user-data: containers[2].image: expected a string, got a number 42"),
]


@pytest.mark.parametrize("how, error", FAILURES, ids=[how for how, _ in FAILURES])
def test_a_failure_keeps_the_last_good_user_data(host, imds, how, error):
    web, api, worker = host.name("web"), host.name("api"), host.name("worker")
    host.spec("web.json", name=web, env={"VERSION": "1"})
    imds.document = {"containers": [container(api), container(worker)]}
    assert run_aws(host, imds).returncode == 0
    before = host.running_ids()

    fail(imds, how)
    host.spec("web.json", name=web, env={"VERSION": "2"})
    result = run_aws(host, imds)
    assert result.returncode == 1
    assert logged(result, "ERROR") == [error.format(endpoint=imds.endpoint),
                                       "user-data: keeping the last good user-data (2 containers)"]
    after = host.running_ids()
    assert (after[api], after[worker]) == (before[api], before[worker])
    # The confdir change is converged in the same run.
    assert after[web] != before[web]
    assert env_of(host.inspect(web))["VERSION"] == "2"


def test_a_failure_without_a_cached_document_leaves_user_data_containers(host, imds):
    host.spec("web.json", name=host.name("web"))
    imds.document = {"containers": [container(host.name("api"))]}
    assert run_aws(host, imds).returncode == 0
    before = host.running_ids()

    (host.cache / dockerup.USER_DATA_CACHE).unlink()
    imds.mode = "500"
    result = run_aws(host, imds)
    assert result.returncode == 1
    assert logged(result, "ERROR") == [
        fetch_failure(imds.endpoint, "token request answered HTTP 500"),
        "user-data: no earlier good user-data is cached: containers from user-data are left as they are"]
    assert host.running_ids() == before


@pytest.mark.parametrize("dead", ["closed port", "slow"])
def test_a_dead_endpoint_ends_the_run_within_the_bound(host, imds, dead):
    host.spec("web.json", name=host.name("web"))
    host.converge()
    if dead == "slow":
        imds.mode, endpoint, reason = "slow", imds.endpoint, "no answer in time"
    else:
        endpoint, reason = f"http://127.0.0.1:{free_port()}", "cannot connect"
    started = time.monotonic()
    result = run_aws(host, imds, endpoint=endpoint)
    elapsed = time.monotonic() - started
    assert elapsed < RUN_BOUND
    assert result.returncode == 1
    assert logged(result, "ERROR")[0] == fetch_failure(endpoint, reason)
    assert set(host.running_ids()) == {host.name("web")}


# ---- the cache ---------------------------------------------------------------


@pytest.mark.parametrize("existing_mode", [None, 0o755])
def test_the_cached_document_is_private(host, imds, existing_mode):
    if existing_mode is not None:
        host.cache.mkdir(mode=existing_mode)
        host.cache.chmod(existing_mode)
    imds.mode = "gzip"
    imds.document = {"containers": [container(host.name("api"), env={"TOKEN": "secret"})]}
    assert run_aws(host, imds).returncode == 0
    cached = host.cache / dockerup.USER_DATA_CACHE
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(host.cache.stat().st_mode) == 0o700
    # Kept decompressed: what was declared, readable by whoever debugs the host.
    assert json.loads(cached.read_bytes()) == imds.document


def planted_user_data(host):
    """A user-data document in the cache that no metadata service ever served."""
    host.cache.mkdir(mode=0o700, exist_ok=True)
    planted = host.cache / dockerup.USER_DATA_CACHE
    planted.write_text(json.dumps({"containers": [container(host.name("planted"), privileged=True,
                                                            volumes=[{"hostPath": "/", "containerPath": "/host"}])]}))
    return planted


def test_user_data_planted_in_a_cache_of_another_user_is_never_run(host, imds):
    planted_user_data(host)
    os.chown(host.cache, 65534, 65534)
    imds.mode = "500"
    result = run_aws(host, imds)
    assert result.returncode == 2
    assert logged(result, "ERROR") == [f"{host.cache}: refusing the cache directory: it belongs to nobody "
                                       "(uid 65534), not to root (uid 0) running dockerup"]
    assert host.managed() == {} and imds.requests == []


def test_user_data_planted_as_a_symlink_is_never_run(host, imds, tmp_path):
    outside = planted_user_data(host).rename(tmp_path / "elsewhere.json")
    (host.cache / dockerup.USER_DATA_CACHE).symlink_to(outside)
    imds.mode = "500"
    result = run_aws(host, imds)
    assert result.returncode == 1
    assert logged(result, "WARNING") == [f"{host.cache / dockerup.USER_DATA_CACHE}: cannot read the cache: a symbolic "
                                         "link, which dockerup does not follow there; ignored"]
    assert logged(result, "ERROR")[1] == ("user-data: no earlier good user-data is cached: containers from user-data "
                                          "are left as they are")
    assert host.managed() == {}


# ---- dockerup validate --user-data FILE ---------------------------------------------

GOOD = json.dumps({"containers": [container("api")]}).encode()
BAD = json.dumps(INVALID_DOCUMENT).encode()
ZIPPED = gzip.compress(GOOD)

VALIDATE_CASES = [
    # (case, file content, exit code, stdout lines; {file} is the document's path)
    ("good", GOOD, 0, []),
    ("good gzip", ZIPPED, 0, []),
    ("bad", BAD, 1, ["{file}: containers[2].image: expected a string, got a number 42"]),
    ("bad gzip", gzip.compress(BAD), 1, ["{file}: containers[2].image: expected a string, got a number 42"]),
    ("malformed", MALFORMED_BODY, 1,
     ["{file}: line 1, column 32: invalid JSON: Expecting property name enclosed in double quotes"]),
    ("not an array", b'{"containers": {}}', 1, ["{file}: containers: expected an array, got an object {{}}"]),
    ("corrupt gzip", ZIPPED[:10] + b"\xff" * 20, 1,
     ["{file}: looks gzip-compressed but cannot be decompressed: Error -3 while decompressing data: invalid block type"]),
    # Cut short, a gzip stream still inflates to a prefix of the document: the
    # error must be about the compression, not about the JSON it cut off.
    ("truncated gzip", ZIPPED[:len(ZIPPED) // 2], 1,
     ["{file}: looks gzip-compressed but is truncated: the compressed data ends early"]),
]


def validate(tmp_path, document, *confdir_specs):
    """`dockerup validate --user-data DOCUMENT`, with a confdir of its own."""
    confdir = tmp_path / "containers.d"
    confdir.mkdir()
    for spec in confdir_specs:
        (confdir / f"{spec['name']}.json").write_text(json.dumps(spec))
    config = tmp_path / "dockerup.conf"
    config.write_text(f"confdir={confdir}\ncache={tmp_path / 'cache'}\n")
    result = subprocess.run([sys.executable, str(DOCKERUP), "--config", str(config), "validate", "--user-data",
                             str(document)], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr
    return result, confdir


@pytest.mark.parametrize("content, code, lines", [case[1:] for case in VALIDATE_CASES],
                         ids=[case[0] for case in VALIDATE_CASES])
def test_validate_user_data_file(tmp_path, content, code, lines):
    document = tmp_path / "user-data"
    document.write_bytes(content)
    result, _ = validate(tmp_path, document)
    assert (result.returncode, result.stdout.splitlines()) == (code, [line.format(file=document) for line in lines])


def test_validate_user_data_file_against_confdir(tmp_path):
    document = tmp_path / "user-data"
    document.write_bytes(GOOD)
    result, confdir = validate(tmp_path, document, container("api"))
    assert result.returncode == 1
    assert sorted(result.stdout.splitlines()) == sorted([
        f"{confdir / 'api.json'}: name: 'api' is also declared in {document}: containers[0]",
        f"{document}: containers[0].name: 'api' is also declared in {confdir / 'api.json'}",
    ])


def test_validate_missing_user_data_file(tmp_path):
    missing = tmp_path / "nowhere.json"
    result, _ = validate(tmp_path, missing)
    assert result.returncode == 2
    assert logged(result, "ERROR") == [f"{missing}: cannot read: No such file or directory"]


# ---- fetch_user_data against the fake service, no engine -------------------------------

DOCUMENT = {"containers": [container("api")]}


@pytest.mark.parametrize("mode, refusal, expected", [
    ("v2", None, json.dumps(DOCUMENT).encode()),
    ("v1", 403, json.dumps(DOCUMENT).encode()),
    ("v1", 405, json.dumps(DOCUMENT).encode()),
    ("404", None, None),
    ("gzip", None, gzip.compress(json.dumps(DOCUMENT).encode())),
])
def test_fetch_user_data(imds, mode, refusal, expected):
    imds.mode, imds.document = mode, DOCUMENT
    imds.refuse_token_with = refusal or imds.refuse_token_with
    data = dockerup.fetch_user_data(imds.endpoint)
    if mode == "gzip":
        data = gzip.decompress(data)
        expected = gzip.decompress(expected)
    assert data == expected


def test_fetch_waits_for_a_hung_token_request_a_share_of_the_deadline(imds):
    imds.mode, imds.document = "hung-token", DOCUMENT
    started = time.monotonic()
    assert dockerup.fetch_user_data(imds.endpoint) == json.dumps(DOCUMENT).encode()
    assert time.monotonic() - started < 3


def test_fetch_does_not_fall_back_to_imdsv1_when_the_service_fails(imds):
    # A 5xx from the token request is an outage, not a refusal of IMDSv2.
    imds.mode = "500"
    with pytest.raises(dockerup.UserDataUnavailable):
        dockerup.fetch_user_data(imds.endpoint, deadline=2)
    assert {(r.method, r.path) for r in imds.requests} == {("PUT", TOKEN_PATH)}
    assert len(imds.requests) == dockerup.IMDS_ATTEMPTS


@pytest.mark.parametrize("mode, reason", [
    ("slow", "no answer in time"),
    ("closed", "cannot connect"),
    # Each byte comes quickly, so no single read times out; the answer as a
    # whole takes far longer than the deadline.
    ("trickle", "no answer in time"),
])
def test_fetch_gives_up_at_the_deadline(imds, mode, reason):
    deadline = 1.5
    # Short, so that a run of this test that does not give up ends in seconds.
    imds.document, imds.trickle_interval = {"containers": []}, 0.25
    if mode == "closed":
        imds.stop()
    else:
        imds.mode = mode
    started = time.monotonic()
    with pytest.raises(dockerup.UserDataUnavailable) as failure:
        dockerup.fetch_user_data(imds.endpoint, deadline=deadline)
    assert time.monotonic() - started < deadline + 0.5
    assert str(failure.value) == f"cannot fetch EC2 user-data from {imds.endpoint} within {deadline:g} seconds: {reason}"


def test_read_user_data_caches_the_decompressed_document_and_forgets_it_on_404(imds, tmp_path):
    imds.mode, imds.document = "gzip", DOCUMENT
    user_data = dockerup.read_user_data(str(tmp_path), imds.endpoint)
    assert (user_data.complete, user_data.problems, [s.name for s in user_data.specs]) == (True, [], ["api"])
    assert json.loads((tmp_path / dockerup.USER_DATA_CACHE).read_bytes()) == DOCUMENT

    imds.mode = "404"
    user_data = dockerup.read_user_data(str(tmp_path), imds.endpoint)
    assert (user_data.complete, user_data.specs) == (True, [])
    assert not (tmp_path / dockerup.USER_DATA_CACHE).exists()
