"""The spec loader: size cap, alias bombs, duplicate keys, YAML 1.1 types, locations."""

from __future__ import annotations

import time

import pytest

from flowker.errors import SpecError
from flowker.validation.documents import ExecutorSpec, WorkflowSpec
from flowker.validation.loader import MAX_SPEC_BYTES, load_spec_file, load_spec_text
from flowker.validation.safe_yaml import MAX_DEPTH, resolve_plain_scalar

MINIMAL_WORKFLOW = """\
kind: Workflow
name: minimal
nodes:
  - {id: start, type: trigger, data: {triggerType: manual}}
edges: []
"""


def alias_bomb() -> str:
    """About 1 KiB of YAML that expands to 10^9 strings if aliases are followed."""
    lines = ["kind: Workflow", "name: bomb", "laugh0: &laugh0 [" + ", ".join(['"lol"'] * 10) + "]"]
    for level in range(1, 9):
        lines.append(f"laugh{level}: &laugh{level} [" + ", ".join([f"*laugh{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def problems_of(excinfo) -> list[str]:
    return [problem.format() for problem in excinfo.value.problems]


def test_alias_bomb_is_refused_in_well_under_a_second(tmp_path):
    text = alias_bomb()
    assert 900 <= len(text) <= 1100
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(SpecError) as excinfo:
        load_spec_file(path)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # generous: it stops at the first anchor
    assert problems_of(excinfo) == [f"{path}:3:9: YAML anchors are not allowed (&laugh0): write the value out"]


def test_an_alias_without_anchor_is_refused():
    with pytest.raises(SpecError) as excinfo:
        load_spec_text("kind: Workflow\nname: *x\n", "a.yaml")
    # libyaml reports the undefined alias or we see the alias event: either way line 2.
    assert problems_of(excinfo)[0].startswith("a.yaml:2:")


def test_file_over_256_kib_is_refused_before_parsing_in_under_a_second(tmp_path):
    path = tmp_path / "large.yaml"
    # Valid YAML would take a while to walk; invalid YAML proves it is not even parsed.
    path.write_text(MINIMAL_WORKFLOW + "description: " + "x" * (300 * 1024) + "\n  : [unclosed\n")
    started = time.perf_counter()
    with pytest.raises(SpecError) as excinfo:
        load_spec_file(path)
    assert time.perf_counter() - started < 1.0
    (message,) = problems_of(excinfo)
    assert message.startswith(f"{path}: file is ")
    assert f"limited to {MAX_SPEC_BYTES} bytes (256 KiB)" in message


def test_text_over_the_limit_is_refused_too():
    with pytest.raises(SpecError, match="256 KiB"):
        load_spec_text("x" * (MAX_SPEC_BYTES + 1), "<request>")


def test_a_file_exactly_at_the_limit_is_read(tmp_path):
    text = MINIMAL_WORKFLOW + "description: "
    text += "y" * (MAX_SPEC_BYTES - len(text) - 1) + "\n"
    path = tmp_path / "limit.yaml"
    path.write_text(text)
    assert path.stat().st_size == MAX_SPEC_BYTES
    assert load_spec_file(path).body["description"].startswith("yyy")


def test_duplicate_keys_are_reported_at_the_second_key():
    text = MINIMAL_WORKFLOW.replace("edges: []", "edges: []\nnodes: []")
    with pytest.raises(SpecError) as excinfo:
        load_spec_text(text, "dup.yaml")
    assert problems_of(excinfo) == ["dup.yaml:6:1: duplicate key 'nodes' (first at line 3) (at $.nodes)"]


def test_every_duplicate_key_is_reported_even_nested():
    text = "kind: Workflow\nname: a\nmetadata:\n  x: 1\n  x: 2\n  y: {p: 1, p: 2}\n"
    with pytest.raises(SpecError) as excinfo:
        load_spec_text(text, "d.yaml")
    assert problems_of(excinfo) == [
        "d.yaml:5:3: duplicate key 'x' (first at line 4) (at $.metadata.x)",
        "d.yaml:6:13: duplicate key 'p' (first at line 6) (at $.metadata.y.p)",
    ]


@pytest.mark.parametrize(
    "plain, expected",
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("Yes", "Yes"),
        ("y", "y"),
        ("n", "n"),
        ("true", True),
        ("false", False),
        ("True", True),
        ("FALSE", False),
        ("2024-01-01", "2024-01-01"),
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        ("12", 12),
        ("-3", -3),
        ("0", 0),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("0123", "0123"),
        ("0x1F", "0x1F"),
        ("0o17", "0o17"),
        ("1_000", "1_000"),
        ("12:30", "12:30"),
        (".inf", ".inf"),
        (".nan", ".nan"),
        ("~", None),
        ("null", None),
        ("", None),
        ("POST", "POST"),
        ("1.2.3", "1.2.3"),
        ("+", "+"),
        (".", "."),
    ],
)
def test_plain_scalars_follow_a_small_safe_subset(plain, expected):
    value = resolve_plain_scalar(plain)
    assert value == expected and type(value) is type(expected)


def test_yaml_11_surprises_do_not_change_types_in_a_document():
    text = (
        "kind: Workflow\nname: types\nnodes: []\nedges: []\n"
        "metadata:\n  country: no\n  flag: on\n  date: 2024-05-01\n  version: 1.10\n"
        "  octal: 0755\n  quoted: 'true'\n  real: true\n  time: 12:30:00\n"
    )
    metadata = load_spec_text(text, "t.yaml").body["metadata"]
    assert metadata == {
        "country": "no",
        "flag": "on",
        "date": "2024-05-01",
        "version": 1.1,
        "octal": "0755",
        "quoted": "true",
        "real": True,
        "time": "12:30:00",
    }


def test_keys_stay_strings_as_written():
    body = load_spec_text("kind: Workflow\nname: k\nmetadata: {on: 1, 200: 2, true: 3}\n", "k.yaml").body
    assert body["metadata"] == {"on": 1, "200": 2, "true": 3}


@pytest.mark.parametrize(
    "text, message",
    [
        ("kind: Workflow\nname: !!int 5\n", "2:7: YAML tags are not allowed (!!int)"),
        ("kind: Workflow\nname: !custom x\n", "2:7: YAML tags are not allowed (!custom)"),
        ("kind: Workflow\nname: ok\n---\nkind: Workflow\n", "3:1: a spec file holds one document"),
        ("kind: Workflow\n? [a, b]\n: c\n", "2:3: mapping keys must be plain strings"),
        ("kind: Workflow\nname: [unclosed\n", "YAML syntax error"),
        ("- just\n- a list\n", "1:1: the document must be a mapping"),
        ("", "1:1: the document is empty"),
        ("# only a comment\n", "1:1: the document is empty"),
        (
            "kind: Pipeline\nname: x\n",
            "1:7: unknown kind 'Pipeline': use Workflow, Executor or WorkflowTest (at $.kind)",
        ),
        ("name: x\n", "1:1: missing 'kind'"),
        ("kind: Workflow\nname: \x07\n", "2:7: YAML syntax error: control characters are not allowed"),
    ],
)
def test_documents_the_loader_refuses(text, message):
    with pytest.raises(SpecError) as excinfo:
        load_spec_text(text, "s.yaml")
    formatted = problems_of(excinfo)
    assert any(message in line for line in formatted), formatted
    assert all(line.startswith("s.yaml:") for line in formatted)


def test_nesting_is_capped():
    deep = "kind: Workflow\nname: deep\nmetadata: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(SpecError, match=f"nesting is deeper than {MAX_DEPTH} levels"):
        load_spec_text(deep, "deep.yaml")
    ok = "kind: Workflow\nname: deep\nmetadata: {a: " + "[" * 20 + "]" * 20 + "}\n"
    assert load_spec_text(ok, "ok.yaml").body["metadata"]["a"] == [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]


def test_invalid_utf8_and_byte_order_mark(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"kind: Workflow\nname: \xff\xfe\n")
    with pytest.raises(SpecError, match="not valid UTF-8") as excinfo:
        load_spec_file(bad)
    assert excinfo.value.problems[0].line == 2
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + MINIMAL_WORKFLOW.encode())
    assert load_spec_file(bom).name == "minimal"


def test_missing_file_is_a_problem_not_a_crash(tmp_path):
    with pytest.raises(SpecError, match="cannot read file"):
        load_spec_file(tmp_path / "absent.yaml")


def test_returns_typed_documents_with_locations(tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text(MINIMAL_WORKFLOW)
    document = load_spec_file(path)
    assert isinstance(document, WorkflowSpec)
    assert document.kind == "Workflow"
    assert document.name == "minimal"
    assert document.source == str(path)
    assert document.from_file is True
    assert "kind" not in document.body  # the body is exactly the REST body
    assert document.body["nodes"][0]["data"] == {"triggerType": "manual"}
    assert document.nodes[0]["id"] == "start" and document.edges == []
    # Values and keys are located 1-based; unknown paths fall back to their parent.
    assert document.location_of(("name",)) == (2, 7)
    assert document.location_of(("nodes", 0, "data", "triggerType")) == (4, 52)
    assert document.location_of(("nodes", 0, "data", "nope", 3)) == (4, 38)
    assert document.locations.locate_key(("nodes",)) == (3, 1)


def test_executor_documents_and_expected_kind():
    text = (
        "name: ex\nbaseUrl: https://api.example.com\n"
        "endpoints: [{name: a, path: /a, method: GET}, {name: b, path: /b, method: POST}]\n"
        "authentication: {type: bearer, config: {token: {$env: T}}}\n"
    )
    document = load_spec_text(text, "<request>", expected_kind="executor")
    assert isinstance(document, ExecutorSpec)
    assert document.from_file is False
    assert document.endpoint_names == {"a", "b"}
    assert document.auth_type == "bearer"
    with pytest.raises(SpecError, match="kind is 'Workflow' but this request takes 'Executor'"):
        load_spec_text("kind: Workflow\n" + text, "<request>", expected_kind="Executor")
