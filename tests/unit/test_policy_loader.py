"""Loading a policy folder with real Cedar: every way it can be wrong is reported at its
place, and a registry whose reload fails keeps deciding with the previous policies."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratum.authz import PolicyRegistry, TriggerContext, check_policies, load_policies
from stratum.authz._statements import split_statements
from stratum.errors import PolicyError
from stratum.trust.principal import Principal
from tests.conftest import ROOT

CLI = Principal(kind="source", name="stratum-cli", tenant="acme")
CONTEXT = TriggerContext(
    subject="stratum.events.acme.crate.push",
    time=datetime(2026, 11, 22, tzinfo=UTC),
    event_id="e",
    event_type="crate.push",
    event_source="stratum-cli",
)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped policies to break."""
    return Path(shutil.copytree(ROOT / "deploy" / "policies", tmp_path / "policies"))


def only_problem(folder: Path) -> str:
    problems = check_policies(folder)
    assert len(problems) == 1, problems
    return str(problems[0])


def test_the_shipped_policies_load_and_name_their_places() -> None:
    policies = load_policies(ROOT / "deploy" / "policies")
    assert policies.places["tenant-isolation"].endswith("deploy/policies/tenancy.cedar:3")
    assert len(policies.places) == 15


def test_statements_end_at_semicolons_outside_strings_and_comments() -> None:
    text = (
        "// a comment; not an end\n"
        '@id("a") permit (principal, action, resource) when { "x;y" == "x;y" };\n'
        '\n  @id("b")\nforbid (principal, action, resource); // trailing; comment\n'
        '@id("c") permit (principal, action, resource)'
    )
    statements = split_statements(text)
    assert [(s.line, s.column) for s in statements] == [(2, 1), (4, 3), (6, 1)]
    assert statements[0].text.endswith('"x;y" };')
    assert statements[2].text == '@id("c") permit (principal, action, resource)'


def test_a_syntax_error_is_located_at_its_policy(folder: Path) -> None:
    releases = folder / "releases.cedar"
    releases.write_text(releases.read_text().replace("unless {", "unless {{", 1))
    assert only_problem(folder).startswith(f"{releases}:3:1: Cedar syntax: ")


def test_a_policy_that_does_not_fit_the_schema_is_located(folder: Path) -> None:
    (folder / "extra.cedar").write_text(
        "// a typo in an attribute\n"
        '@id("typo")\npermit (principal, action == Stratum::Action::"trigger", resource)\n'
        'when { principal.role == "releaser" };\n'
    )
    problems = [str(problem) for problem in check_policies(folder)]
    # one per principal type the policy could see
    assert len(problems) == 2
    for problem in problems:
        assert problem.startswith(f"{folder / 'extra.cedar'}:2:1: policy 'typo': ")
        assert "attribute `role`" in problem


def test_every_policy_needs_a_unique_id(folder: Path) -> None:
    (folder / "anonymous.cedar").write_text(
        'permit (principal, action == Stratum::Action::"trigger", resource);\n'
    )
    assert "needs an @id" in only_problem(folder)
    (folder / "anonymous.cedar").write_text(
        '@id("tenant-isolation")\npermit (principal, action, resource);\n'
    )
    problem = only_problem(folder)
    assert "'tenant-isolation' is already used at" in problem and "tenancy.cedar:3" in problem


def test_the_schema_and_the_entities_are_checked(folder: Path) -> None:
    entities = folder / "entities.json"
    entities.write_text('[{"uid": {"type": "Stratum::Topic", "id": "acme/x"}}]')
    assert "come from each event" in only_problem(folder)
    entities.write_text('[\n  {"uid": {"type": "Stratum::Source", "id": "no-tenant"}}\n]')
    assert "must be <tenant>/<name>" in only_problem(folder)
    entities.write_text("[\n  {,\n]")
    assert only_problem(folder).startswith(f"{entities}:2:")
    entities.unlink()  # optional: then nobody has a role or a group
    assert check_policies(folder) == []

    schema = folder / "stratum.cedarschema"
    schema.write_text(schema.read_text().replace("entity Topic", "entity Topik"))
    assert "schema" in str(check_policies(folder)[0])
    schema.unlink()
    assert "needs exactly one *.cedarschema" in only_problem(folder)


def test_a_schema_stratum_cannot_send_requests_to_is_refused(folder: Path) -> None:
    schema = folder / "stratum.cedarschema"
    schema.write_text(schema.read_text().replace("subject: String,", "subject: Long,"))
    assert (
        "does not fit the trigger request Stratum sends for a Stratum::Publisher"
        in only_problem(folder)
    )


def test_a_schema_whose_cancel_stratum_cannot_ask_is_refused(folder: Path) -> None:
    """The cancel request is probed too, for every principal the API may send, the
    operator included (its entity has no tenant)."""
    schema = folder / "stratum.cedarschema"
    text = schema.read_text()
    schema.write_text(text.replace("reason: String,", "reason: Long,"))
    assert "the cancel request Stratum sends for a Stratum::Publisher" in only_problem(folder)
    schema.write_text(
        text.replace("principal: [Publisher, Source, Operator]", "principal: [Publisher, Source]")
    )
    (folder / "operators.cedar").unlink()  # its permit would not fit either
    assert "cancel request Stratum sends for a Stratum::Operator" in only_problem(folder)


def test_load_raises_with_the_first_problem_located(folder: Path) -> None:
    (folder / "tenancy.cedar").write_text("forbid (principal, action, resource")
    with pytest.raises(PolicyError) as raised:
        load_policies(folder)
    assert str(raised.value).splitlines()[0].startswith(f"{folder / 'tenancy.cedar'}:1:1: ")


def test_a_failed_reload_keeps_the_previous_policies_and_says_why(folder: Path) -> None:
    registry = PolicyRegistry(folder)
    assert registry.reload() and registry.error is None
    version = registry.current.version if registry.current else None
    assert registry.decide(CLI, "acme", "crate.push", CONTEXT).allowed

    # a permit that would open globex to unsigned events, written wrong
    (folder / "globex.cedar").write_text(
        '@id("dev-globex")\npermit (principal is Stratum::Sourze, action, resource);\n'
    )
    assert not registry.reload()
    assert registry.error is not None
    assert registry.error.startswith(f"{folder / 'globex.cedar'}:1:1: policy 'dev-globex': ")
    assert registry.current is not None and registry.current.version == version
    assert registry.decide(CLI, "acme", "crate.push", CONTEXT).allowed

    (folder / "globex.cedar").unlink()
    assert not registry.reload()  # the same content as before: not a new set
    assert registry.error is None and registry.current.version == version


def test_with_no_valid_policies_every_trigger_is_denied(tmp_path: Path) -> None:
    registry = PolicyRegistry(tmp_path / "missing")
    assert not registry.reload()
    decision = registry.decide(CLI, "acme", "crate.push", CONTEXT)
    assert not decision.allowed and decision.policy_ids == []
    assert decision.reasons[0].startswith("no valid policies are loaded: ")
    assert "policies folder not found" in decision.reasons[0]
