"""The one decision, on synthetic principals and paths: roles, inheritance
down the tree, groups, deny by default, support and capped tokens."""

from __future__ import annotations

import pytest

from xenkeep.auth.const import Role
from xenkeep.auth.permissions import (
    APPLIANCE,
    EVERYTHING,
    NEEDS,
    Action,
    ObjectKind,
    ObjectRef,
    ObjectRole,
    Principal,
    held_roles,
)

POOL = ObjectRef(ObjectKind.POOL, "p-1")
HOST = ObjectRef(ObjectKind.HOST, "h-1")
VM = ObjectRef(ObjectKind.VM, "v-1")
OTHER_VM = ObjectRef(ObjectKind.VM, "v-2")
SR = ObjectRef(ObjectKind.SR, "s-1")
JOB = ObjectRef(ObjectKind.BACKUP_JOB, "3")
VM_PATH = (EVERYTHING, POOL, HOST, VM)
OTHER_VM_PATH = (EVERYTHING, POOL, ObjectRef(ObjectKind.HOST, "h-2"), OTHER_VM)
SR_PATH = (EVERYTHING, POOL, SR)
JOB_PATH = (EVERYTHING, POOL, JOB)


def user(*grants: tuple[ObjectRef, ObjectRole], role: Role = Role.USER, **kw: object) -> Principal:
    return Principal(1, "u", role, held_roles(grants), **kw)  # type: ignore[arg-type]


def test_nothing_held_nothing_allowed() -> None:
    nobody = user()
    for path in (VM_PATH, SR_PATH, JOB_PATH, (EVERYTHING,), APPLIANCE):
        for action in Action:
            assert not nobody.may(action, path)
    assert not nobody.holds_any()


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (ObjectRole.VIEWER, {Action.VIEW}),
        (
            ObjectRole.OPERATOR,
            {Action.VIEW, Action.POWER, Action.MEDIA, Action.RUN, Action.RESTORE},
        ),
        (ObjectRole.ADMIN, set(Action)),
    ],
)
def test_each_role_allows_its_actions_and_no_more(role: ObjectRole, allowed: set[Action]) -> None:
    p = user((VM, role))
    assert {a for a in Action if p.may(a, VM_PATH)} == allowed


def test_every_action_needs_a_role() -> None:
    assert set(NEEDS) == set(Action)


@pytest.mark.parametrize("where", [EVERYTHING, POOL, HOST, VM])
def test_a_grant_holds_for_everything_below_it(where: ObjectRef) -> None:
    p = user((where, ObjectRole.OPERATOR))
    assert p.may(Action.POWER, VM_PATH)
    assert p.role_on(VM_PATH) is ObjectRole.OPERATOR


def test_a_grant_holds_for_nothing_beside_or_above_it() -> None:
    p = user((VM, ObjectRole.ADMIN), (HOST, ObjectRole.VIEWER))
    assert not p.may(Action.VIEW, OTHER_VM_PATH)  # a VM on another host
    assert not p.may(Action.VIEW, (EVERYTHING, POOL))  # the pool above
    assert not p.may(Action.VIEW, SR_PATH)
    assert not p.may(Action.VIEW, JOB_PATH)
    assert p.may(Action.VIEW, (EVERYTHING, POOL, HOST))


def test_the_best_role_on_the_path_wins() -> None:
    p = user((POOL, ObjectRole.VIEWER), (VM, ObjectRole.ADMIN))
    assert p.role_on(VM_PATH) is ObjectRole.ADMIN
    assert p.role_on(OTHER_VM_PATH) is ObjectRole.VIEWER


def test_held_roles_keep_the_best_of_a_user_and_their_groups() -> None:
    held = held_roles([(VM, ObjectRole.VIEWER), (VM, ObjectRole.ADMIN), (VM, ObjectRole.OPERATOR)])
    assert held == {VM: ObjectRole.ADMIN}


def test_the_appliance_is_for_super_administrators_only() -> None:
    assert user(role=Role.ADMIN).may(Action.MANAGE, APPLIANCE)
    assert not user((EVERYTHING, ObjectRole.ADMIN)).may(Action.VIEW, APPLIANCE)


def test_a_super_administrator_may_do_everything_on_every_object() -> None:
    admin = user(role=Role.ADMIN)
    assert admin.is_super_admin and admin.may_support and admin.holds_any()
    for path in (VM_PATH, SR_PATH, JOB_PATH, (EVERYTHING, ObjectRef(ObjectKind.POOL, ""))):
        assert admin.may(Action.MANAGE, path)


def test_support_sees_diagnostics_and_nothing_else_whatever_it_is_granted() -> None:
    support = user((EVERYTHING, ObjectRole.ADMIN), role=Role.SUPPORT)
    assert support.may_support and not support.is_super_admin and not support.sees_objects
    for path in (VM_PATH, (EVERYTHING,), APPLIANCE):
        assert not support.may(Action.VIEW, path)
    assert not support.holds_any()


def test_a_capped_token_acts_with_at_most_its_role() -> None:
    admin = user(role=Role.ADMIN, cap=ObjectRole.VIEWER)
    assert not admin.is_super_admin and not admin.may_support
    assert admin.may(Action.VIEW, VM_PATH)
    assert not admin.may(Action.POWER, VM_PATH)
    assert not admin.may(Action.VIEW, APPLIANCE)
    operator = user((VM, ObjectRole.ADMIN), cap=ObjectRole.OPERATOR)
    assert operator.role_on(VM_PATH) is ObjectRole.OPERATOR
    # A ceiling never raises: the owner's viewer stays a viewer.
    assert user((VM, ObjectRole.VIEWER), cap=ObjectRole.ADMIN).role_on(VM_PATH) is ObjectRole.VIEWER


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("all", EVERYTHING),
        ("vm:v-1", VM),
        ("backup-job:3", JOB),
        ("datastore", None),
        ("disk:xvdb", None),
        ("all:x", None),
        ("vm:", None),
        ("", None),
    ],
)
def test_object_refs_read_as_operation_targets(text: str, parsed: ObjectRef | None) -> None:
    assert ObjectRef.parse(text) == parsed
    if parsed is not None:
        assert str(parsed) == text
