"""The shipped policies (deploy/policies), decided by real Cedar for every tenant, every
principal and every topic, cross-tenant attempts included.

The principals: verified publishers (`publisher`) and unsigned sources (`source`) of the
tenants `acme` (the example tenant, which has a releasers group and a `releaser` role in
entities.json) and `globex` (nothing declared). Each row is what the policies must answer
and which policies decide; an empty id list is Cedar's default deny (nothing permits).
The second table is `cancel` (an operator's action on a run), the operator included.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stratum.authz import (
    Decision,
    Policies,
    SteerContext,
    TriggerContext,
    decide,
    decide_steer,
    load_policies,
)
from stratum.trust.principal import Principal
from tests.conftest import ROOT

ISOLATION = "tenant-isolation"
PUBLISHERS = "publishers-trigger-own-tenant"
DEV = "dev-unsigned-in-acme"
RELEASERS = "releases-need-a-releaser"
PULL_REQUESTS = "no-releases-from-pull-requests"

PRINCIPALS = {
    "acme publisher": Principal(kind="publisher", name="ci-bot", tenant="acme"),
    "acme releaser (role)": Principal(kind="publisher", name="release-bot", tenant="acme"),
    "acme releaser (group)": Principal(kind="publisher", name="local-acme", tenant="acme"),
    "acme source": Principal(kind="source", name="tests", tenant="acme"),
    "acme source releaser": Principal(kind="source", name="stratum-cli", tenant="acme"),
    # same names as acme's releasers: roles and groups do not cross tenants
    "globex publisher": Principal(kind="publisher", name="release-bot", tenant="globex"),
    "globex publisher (group name)": Principal(
        kind="publisher", name="local-acme", tenant="globex"
    ),
    "globex source": Principal(kind="source", name="stratum-cli", tenant="globex"),
}
TENANTS = ("acme", "globex")
TOPICS = ("crate.push", "release.request")

# (principal, tenant of the event subject, topic) -> (allowed, deciding policy ids)
TABLE: dict[tuple[str, str, str], tuple[bool, list[str]]] = {
    # acme's own principals in acme: publishers and sources may; releases need a releaser
    ("acme publisher", "acme", "crate.push"): (True, [PUBLISHERS]),
    ("acme publisher", "acme", "release.request"): (False, [RELEASERS]),
    ("acme releaser (role)", "acme", "crate.push"): (True, [PUBLISHERS]),
    ("acme releaser (role)", "acme", "release.request"): (True, [PUBLISHERS]),
    ("acme releaser (group)", "acme", "crate.push"): (True, [PUBLISHERS]),
    ("acme releaser (group)", "acme", "release.request"): (True, [PUBLISHERS]),
    ("acme source", "acme", "crate.push"): (True, [DEV]),
    ("acme source", "acme", "release.request"): (False, [RELEASERS]),
    ("acme source releaser", "acme", "crate.push"): (True, [DEV]),
    ("acme source releaser", "acme", "release.request"): (True, [DEV]),
    # acme's principals into globex: never, whatever their roles
    ("acme publisher", "globex", "crate.push"): (False, [ISOLATION]),
    ("acme publisher", "globex", "release.request"): (False, [RELEASERS, ISOLATION]),
    ("acme releaser (role)", "globex", "crate.push"): (False, [ISOLATION]),
    ("acme releaser (role)", "globex", "release.request"): (False, [ISOLATION]),
    ("acme releaser (group)", "globex", "crate.push"): (False, [ISOLATION]),
    ("acme releaser (group)", "globex", "release.request"): (False, [ISOLATION]),
    ("acme source", "globex", "crate.push"): (False, [ISOLATION]),
    ("acme source", "globex", "release.request"): (False, [RELEASERS, ISOLATION]),
    ("acme source releaser", "globex", "crate.push"): (False, [ISOLATION]),
    ("acme source releaser", "globex", "release.request"): (False, [ISOLATION]),
    # globex's principals in globex: publishers may, but nobody there is a releaser;
    # unsigned events are only accepted in the development tenant acme (default deny)
    ("globex publisher", "globex", "crate.push"): (True, [PUBLISHERS]),
    ("globex publisher", "globex", "release.request"): (False, [RELEASERS]),
    ("globex publisher (group name)", "globex", "crate.push"): (True, [PUBLISHERS]),
    ("globex publisher (group name)", "globex", "release.request"): (False, [RELEASERS]),
    ("globex source", "globex", "crate.push"): (False, []),
    ("globex source", "globex", "release.request"): (False, [RELEASERS]),
    # globex's principals into acme: never, not even the unsigned development permit
    ("globex publisher", "acme", "crate.push"): (False, [ISOLATION]),
    ("globex publisher", "acme", "release.request"): (False, [RELEASERS, ISOLATION]),
    ("globex publisher (group name)", "acme", "crate.push"): (False, [ISOLATION]),
    ("globex publisher (group name)", "acme", "release.request"): (False, [RELEASERS, ISOLATION]),
    ("globex source", "acme", "crate.push"): (False, [ISOLATION]),
    ("globex source", "acme", "release.request"): (False, [RELEASERS, ISOLATION]),
}


@pytest.fixture(scope="module")
def policies() -> Policies:
    return load_policies(ROOT / "deploy" / "policies")


def context(tenant: str, topic: str, source: str = "ci") -> TriggerContext:
    return TriggerContext(
        subject=f"stratum.events.{tenant}.{topic}",
        time=datetime(2026, 11, 22, 9, 30, tzinfo=UTC),
        event_id="evt-1",
        event_type=topic,
        event_source=source,
    )


def ask(policies: Policies, who: str, tenant: str, topic: str, source: str = "ci") -> Decision:
    return decide(policies, PRINCIPALS[who], tenant, topic, context(tenant, topic, source))


def test_the_table_covers_every_combination() -> None:
    assert set(TABLE) == {(p, t, topic) for p in PRINCIPALS for t in TENANTS for topic in TOPICS}


@pytest.mark.parametrize(("who", "tenant", "topic"), sorted(TABLE), ids="|".join)
def test_truth_table(policies: Policies, who: str, tenant: str, topic: str) -> None:
    allowed, ids = TABLE[(who, tenant, topic)]
    decision = ask(policies, who, tenant, topic)
    assert (decision.allowed, decision.policy_ids) == (allowed, sorted(ids))
    assert decision.reasons  # a decision always says why


def test_every_cross_tenant_attempt_is_denied_by_tenant_isolation(policies: Policies) -> None:
    for who, principal in PRINCIPALS.items():
        for tenant in TENANTS:
            if tenant == principal.tenant:
                continue
            for topic in TOPICS:
                decision = ask(policies, who, tenant, topic)
                assert not decision.allowed
                assert ISOLATION in decision.policy_ids, (who, tenant, topic)


def test_a_denial_says_why_in_the_policy_s_own_words(policies: Policies) -> None:
    denied = ask(policies, "acme source", "acme", "release.request")
    assert denied.reasons == [
        "release.request may only be triggered by a releaser "
        "(role `releaser` or group acme/releasers)"
    ]
    nobody = ask(policies, "globex source", "globex", "crate.push")
    assert nobody.reasons == [
        "no policy permits source:stratum-cli to trigger crate.push in tenant globex"
    ]


@pytest.mark.parametrize("who", ["acme releaser (role)", "acme source releaser"])
def test_the_context_decides_too_no_release_from_a_pull_request(
    policies: Policies, who: str
) -> None:
    source = "github.com/acme/app/pull/7"
    denied = ask(policies, who, "acme", "release.request", source=source)
    assert (denied.allowed, denied.policy_ids) == (False, [PULL_REQUESTS])
    assert denied.reasons == ["a release is never started by an event from a pull request"]
    # the same source may still trigger what is not a release
    assert ask(policies, who, "acme", "crate.push", source=source).allowed


def test_names_cedar_cannot_parse_are_just_names(policies: Policies) -> None:
    """A CloudEvents source is any string: quotes, newlines, `::` decide nothing."""
    odd = Principal(kind="source", name='x"::Group::"acme/releasers\n', tenant="acme")
    decision = decide(policies, odd, "acme", "release.request", context("acme", "release.request"))
    assert (decision.allowed, decision.policy_ids) == (False, [RELEASERS])


# --- cancel: who may stop a run (the resource is the run's topic; no rule looks at it) ---

CANCEL_PUBLISHERS = "publishers-cancel-own-tenant"
CANCEL_DEV = "dev-unsigned-cancel-in-acme"
CANCEL_OPERATOR = "operator-cancels-every-run"
CANCEL_ISOLATION = "cancel-stays-in-tenant"
OPERATOR = Principal(kind="operator", name="operator", tenant="")

# (principal, tenant of the run) -> (allowed, deciding policy ids)
CANCEL_TABLE: dict[tuple[str, str], tuple[bool, list[str]]] = {
    ("acme publisher", "acme"): (True, [CANCEL_PUBLISHERS]),
    ("acme releaser (role)", "acme"): (True, [CANCEL_PUBLISHERS]),
    ("acme releaser (group)", "acme"): (True, [CANCEL_PUBLISHERS]),
    ("acme source", "acme"): (True, [CANCEL_DEV]),
    ("acme source releaser", "acme"): (True, [CANCEL_DEV]),
    ("acme publisher", "globex"): (False, [CANCEL_ISOLATION]),
    ("acme releaser (role)", "globex"): (False, [CANCEL_ISOLATION]),
    ("acme releaser (group)", "globex"): (False, [CANCEL_ISOLATION]),
    ("acme source", "globex"): (False, [CANCEL_ISOLATION]),
    ("acme source releaser", "globex"): (False, [CANCEL_ISOLATION]),
    ("globex publisher", "globex"): (True, [CANCEL_PUBLISHERS]),
    ("globex publisher (group name)", "globex"): (True, [CANCEL_PUBLISHERS]),
    # unsigned callers steer only the development tenant's runs (default deny elsewhere)
    ("globex source", "globex"): (False, []),
    # the development permit covers acme's runs, but not for a principal of another tenant
    ("globex publisher", "acme"): (False, [CANCEL_ISOLATION]),
    ("globex publisher (group name)", "acme"): (False, [CANCEL_ISOLATION]),
    ("globex source", "acme"): (False, [CANCEL_ISOLATION]),
}


def steer_context(status: str = "Running", actor: str = "publisher:ci-bot") -> SteerContext:
    return SteerContext(
        run_id="run-1",
        run_actor=actor,
        run_status=status,
        reason="wrong branch",
        time=datetime(2026, 12, 4, 9, 30, tzinfo=UTC),
    )


def test_the_cancel_table_covers_every_combination() -> None:
    assert set(CANCEL_TABLE) == {(p, t) for p in PRINCIPALS for t in TENANTS}


@pytest.mark.parametrize(("who", "tenant"), sorted(CANCEL_TABLE), ids="|".join)
@pytest.mark.parametrize("topic", TOPICS)
def test_cancel_truth_table(policies: Policies, who: str, tenant: str, topic: str) -> None:
    allowed, ids = CANCEL_TABLE[(who, tenant)]
    decision = decide_steer(policies, PRINCIPALS[who], "cancel", tenant, topic, steer_context())
    assert (decision.allowed, decision.policy_ids) == (allowed, sorted(ids))
    assert decision.reasons


@pytest.mark.parametrize("tenant", TENANTS)
def test_the_operator_cancels_every_tenant_s_runs_but_triggers_nothing(
    policies: Policies, tenant: str
) -> None:
    cancel = decide_steer(policies, OPERATOR, "cancel", tenant, "crate.push", steer_context())
    assert (cancel.allowed, cancel.policy_ids) == (True, [CANCEL_OPERATOR])
    assert cancel.reasons == ["the operator may cancel any run"]
    trigger = decide(policies, OPERATOR, tenant, "crate.push", context(tenant, "crate.push"))
    assert not trigger.allowed


def test_a_refused_cancel_names_the_action_and_the_run_s_topic(policies: Policies) -> None:
    denied = decide_steer(
        policies, PRINCIPALS["globex source"], "cancel", "globex", "crate.push", steer_context()
    )
    assert denied.reasons == [
        "no policy permits source:stratum-cli to cancel runs of crate.push in tenant globex"
    ]


# resuming and rerunning a run are allowed to exactly whom cancelling is, by permits of
# their own (so each can be narrowed alone)
STEER_PERMITS = {
    "resume": {
        CANCEL_PUBLISHERS: "publishers-resume-own-tenant",
        CANCEL_DEV: "dev-unsigned-resume-in-acme",
        CANCEL_ISOLATION: CANCEL_ISOLATION,
    },
    "rerun": {
        CANCEL_PUBLISHERS: "publishers-rerun-own-tenant",
        CANCEL_DEV: "dev-unsigned-rerun-in-acme",
        CANCEL_ISOLATION: CANCEL_ISOLATION,
    },
}


@pytest.mark.parametrize("action", sorted(STEER_PERMITS))
@pytest.mark.parametrize(("who", "tenant"), sorted(CANCEL_TABLE), ids="|".join)
def test_resume_and_rerun_truth_table(
    policies: Policies, action: str, who: str, tenant: str
) -> None:
    allowed, ids = CANCEL_TABLE[(who, tenant)]
    context = steer_context(status="Held" if action == "resume" else "Failed")
    decision = decide_steer(policies, PRINCIPALS[who], action, tenant, "crate.push", context)
    expected = sorted(STEER_PERMITS[action][i] for i in ids)
    assert (decision.allowed, decision.policy_ids) == (allowed, expected)


@pytest.mark.parametrize("tenant", TENANTS)
def test_the_operator_resumes_and_reruns_every_tenant_s_runs(
    policies: Policies, tenant: str
) -> None:
    for action, permit, reason in (
        ("resume", "operator-resumes-every-run", "the operator may resume any held run"),
        (
            "rerun",
            "operator-reruns-every-run",
            "the operator may rerun any run (its trigger is decided again)",
        ),
    ):
        decision = decide_steer(policies, OPERATOR, action, tenant, "crate.push", steer_context())
        assert (decision.allowed, decision.policy_ids, decision.reasons) == (
            True,
            [permit],
            [reason],
        )
