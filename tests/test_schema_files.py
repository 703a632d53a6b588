"""dockerup.py carries its JSON Schemas; schema/*.json are the published copies for
editors and other validators, and must be exactly what `dockerup schema` prints."""

import subprocess
import sys

import pytest

from conftest import DOCKERUP, ROOT


@pytest.mark.parametrize("kind, filename", [("container", "container.schema.json"),
                                            ("user-data", "user-data.schema.json"),
                                            ("task-definition", "task-definition.schema.json")])
def test_published_schema_is_the_module_schema(kind, filename):
    printed = subprocess.run([sys.executable, str(DOCKERUP), "schema", kind], capture_output=True, text=True,
                             check=True).stdout
    published = (ROOT / "schema" / filename).read_text()
    assert printed == published, (f"schema/{filename} differs from the schema in dockerup.py; "
                                  f"regenerate it: python3 dockerup.py schema {kind} > schema/{filename}")


def test_schema_prints_the_container_schema_by_default():
    printed = subprocess.run([sys.executable, str(DOCKERUP), "schema"], capture_output=True, text=True, check=True)
    assert printed.stdout == (ROOT / "schema" / "container.schema.json").read_text()
