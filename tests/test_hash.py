"""The change hash decides when a container is recreated, on every host at once when a
new dockerup arrives by self-update. Its values are pinned here for a corpus of specs
that covers every field: a change of any of them is a deliberate, documented event
(raise HASH_VERSION and regenerate the "v2" values), never an accident."""

import json
from pathlib import Path

import pytest

import dockerup

CORPUS = json.loads((Path(__file__).parent / "hash_corpus.json").read_text())


def test_the_corpus_covers_every_field():
    schema = json.loads(dockerup.SCHEMA_TEXTS["container"])
    used = {key for doc in CORPUS["specs"].values() for key in doc}
    assert set(schema["properties"]) - used == set()


@pytest.mark.parametrize("case", sorted(CORPUS["specs"]))
def test_change_hash_is_pinned(case):
    assert list(dockerup.fingerprint(CORPUS["specs"][case])) == CORPUS["v2"][case]


@pytest.mark.parametrize("case", sorted(CORPUS["specs"]))
def test_the_hash_of_dockerup_0_1_is_still_recognised(case):
    """Containers made by dockerup 0.1 carry this hash; a spec whose hash matches keeps
    its container across the upgrade."""
    assert list(dockerup.legacy_fingerprint(CORPUS["specs"][case])) == CORPUS["v1"][case]


def test_hash_labels_say_their_version():
    spec_hash, _ = dockerup.fingerprint({"image": "app:1"})
    assert spec_hash.startswith(f"{dockerup.HASH_VERSION}:") and not dockerup.is_legacy_hash(spec_hash)
    assert dockerup.is_legacy_hash(CORPUS["v1"]["name"][0])
