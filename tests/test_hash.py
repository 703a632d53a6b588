"""The change hash decides when a container is recreated, on every host at once when a
new dockerup arrives by self-update. Its values are pinned here for a corpus of specs
that covers every field: a change of any of them is a deliberate, documented event
(raise HASH_VERSION and regenerate the "v2" values), never an accident."""

import json
from pathlib import Path

import pytest

import dockerup

CORPUS = json.loads((Path(__file__).parent / "hash_corpus.json").read_text())


def loaded(case):
    """A corpus spec as loading leaves it: ECS spellings ("ecs-..." cases) rewritten
    into dockerup's, which must hash as the spelling they stand for."""
    def fail(path, message):
        raise AssertionError(f"{case}: {path}: {message}")

    return dockerup.normalize_container(CORPUS["specs"][case], None, fail)[0]


def test_the_corpus_covers_every_field():
    schema = json.loads(dockerup.SCHEMA_TEXTS["container"])
    used = {key for doc in CORPUS["specs"].values() for key in doc}
    assert set(schema["properties"]) - used == set()


@pytest.mark.parametrize("case", sorted(CORPUS["specs"]))
def test_change_hash_is_pinned(case):
    assert list(dockerup.fingerprint(loaded(case))) == CORPUS["v2"][case]


@pytest.mark.parametrize("case", sorted(CORPUS["specs"]))
def test_the_hash_of_dockerup_0_1_is_still_recognised(case):
    """Containers made by dockerup 0.1 carry this hash; a spec whose hash matches keeps
    its container across the upgrade."""
    assert list(dockerup.legacy_fingerprint(loaded(case))) == CORPUS["v1"][case]


@pytest.mark.parametrize("ecs, dockerup_spelling", [("ecs-environment", "env-sorted"),
                                                    ("ecs-entryPoint", "entrypoint-array")])
def test_an_ecs_spelling_hashes_as_the_spelling_it_stands_for(ecs, dockerup_spelling):
    assert CORPUS["v2"][ecs] == CORPUS["v2"][dockerup_spelling]


def test_hash_labels_say_their_version():
    spec_hash, _ = dockerup.fingerprint({"image": "app:1"})
    assert spec_hash.startswith(f"{dockerup.HASH_VERSION}:") and not dockerup.is_legacy_hash(spec_hash)
    assert dockerup.is_legacy_hash(CORPUS["v1"]["name"][0])
