"""The user's documentation stays complete: the field reference in docs/specs.md names
every field of the container schema and every sub-field of the fields that are objects,
and the README's configuration table names every configuration key with its default."""

import json
import re

import pytest

import dockerup
from conftest import ROOT

SCHEMA = json.loads(dockerup.SCHEMA_TEXTS["container"])


def table_rows(markdown, header):
    """The rows of the Markdown table that starts with `header`, as lists of cells."""
    lines = markdown.splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def field_reference():
    """docs/specs.md's field table: field name -> the text of its rows (a row with an
    empty first cell continues the field above it)."""
    rows = table_rows((ROOT / "docs" / "specs.md").read_text(), "| field | example | `docker run` |")
    fields, current = {}, None
    for first, *rest in rows:
        if first:
            current = re.match(r"`(\w+)`", first).group(1)
            assert current not in fields, f"{current} has two entries in docs/specs.md"
            fields[current] = ""
        fields[current] += " ".join(rest) + "\n"
    return fields


def resolve(schema):
    if "$ref" in schema:
        return SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def sub_fields(schema):
    """Property names of the objects a field holds: directly, as array items, or as
    any branch of a oneOf/anyOf, following $refs into $defs."""
    schema = resolve(schema)
    names = set(schema.get("properties", ()))
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        names |= sub_fields(branch)
    if isinstance(schema.get("items"), dict):
        names |= sub_fields(schema["items"])
    return names


def test_field_reference_names_every_schema_field():
    documented, fields = set(field_reference()), set(SCHEMA["properties"])
    assert (sorted(fields - documented), sorted(documented - fields)) == ([], []), \
        "docs/specs.md: (fields missing, names that are no field)"


@pytest.mark.parametrize("field", sorted(SCHEMA["properties"]))
def test_field_reference_names_every_sub_field(field):
    text = field_reference().get(field, "")
    missing = sorted(name for name in sub_fields(SCHEMA["properties"][field])
                     if not re.search(rf"[\"`]{name}[\"`]", text))
    assert missing == [], f"docs/specs.md does not show {field}'s {', '.join(missing)}"


def test_sub_fields_are_found_in_the_schema():
    """The walk above reaches the $defs objects and the inline ones alike."""
    assert sub_fields(SCHEMA["properties"]["portMappings"]) == {"containerPort", "hostPort", "hostIp", "protocol",
                                                                 "name", "appProtocol", "containerPortRange"}
    assert sub_fields(SCHEMA["properties"]["volumes"]) == {"containerPath", "hostPath", "mode", "from", "volume"}
    assert sub_fields(SCHEMA["properties"]["healthCheck"]) == {"command", "interval", "timeout", "retries",
                                                               "startPeriod"}


def test_readme_configuration_table_names_every_key_with_its_default():
    rows = table_rows((ROOT / "README.md").read_text(), "| key | default | meaning |")
    documented = {key.strip("`"): default.strip("`") for key, default, _ in rows}
    defaults = {key: format(value, "g") if isinstance(value, float) else str(value).lower() if value not in ("", ())
                else "(empty)" for key, value in dockerup.config_defaults().items()}
    assert documented == defaults


def anchors(markdown):
    """GitHub's anchors for the headings of a Markdown text."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("document", ["README.md", "CONTRIBUTING.md", *sorted(
    str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))])
def test_links_between_documents_lead_somewhere(document):
    path = ROOT / document
    broken = []
    for target in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", path.read_text()):
        file, anchor = target
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists() or (anchor and anchor not in anchors(linked.read_text())):
            broken.append(f"{file}#{anchor}" if anchor else file)
    assert broken == []
