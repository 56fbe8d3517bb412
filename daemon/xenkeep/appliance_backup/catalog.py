"""What the appliance's configuration is: every table of the database, and how
each column is carried into a copy. Pure data.

A column is carried **as is**, as a **secret** (a :class:`~xenkeep.secretbox.SecretBox`
token: opened when the copy is written, since the appliance's key is lost
with the appliance, and sealed again under the new appliance's key when the
copy is restored; the whole copy is encrypted under the backup key), as a
secret **inside a JSON value** (the mail settings' password), or **left out**
(state of this appliance's life: sign-ins, throttling, history). A table
left out is left out whole. The ``settings`` table is chosen row by row, by
key (:data:`SETTINGS`).

A new table or column is one line here. ``tests/unit/appliance_backup/
test_catalog.py`` fails while the schema has a table or a column this list
neither carries nor leaves out, and the restore refuses a left-out column
that has no default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class Carry(StrEnum):
    """How a column (or a setting) travels in a copy."""

    AS_IS = "as is"
    SECRET = "secret"
    SECRET_IN_JSON = "secret in JSON"
    LEFT_OUT = "left out"


@dataclass(frozen=True)
class Rule:
    """How one column or setting is carried, and why when it is left out."""

    carry: Carry
    #: For SECRET_IN_JSON: the member of the JSON object holding the token.
    member: str = ""
    why: str = ""
    #: Carried, but its change alone is not a change of the configuration
    #: (a time stamp, a schedule's last slot): it neither starts a copy nor
    #: makes one differ from the last.
    noise: bool = False


AS_IS: Final = Rule(Carry.AS_IS)
SECRET: Final = Rule(Carry.SECRET)
#: Carried as is, but moves without the configuration changing.
NOISE: Final = Rule(Carry.AS_IS, noise=True)


def secret_in_json(member: str) -> Rule:
    """A JSON object whose ``member`` is a SecretBox token."""
    return Rule(Carry.SECRET_IN_JSON, member=member)


def left_out(why: str) -> Rule:
    """Not configuration: ``why`` says what it is instead."""
    return Rule(Carry.LEFT_OUT, why=why)


@dataclass(frozen=True)
class Table:
    """One table: carried column by column, or left out whole."""

    name: str
    #: Every column and its rule; empty for a table left out whole.
    columns: Mapping[str, Rule] = field(default_factory=dict)
    #: Why the whole table is left out ("" for a carried table).
    why: str = ""
    #: The column choosing rows by :data:`SETTINGS` (the settings table only).
    key_column: str = ""

    @property
    def carried(self) -> bool:
        """True unless the table is left out whole."""
        return not self.why

    def carried_columns(self) -> list[str]:
        """Columns that travel, in declaration order."""
        return [c for c, r in self.columns.items() if r.carry is not Carry.LEFT_OUT]

    def meaningful_columns(self) -> list[str]:
        """Carried columns whose change is a change of the configuration."""
        return [c for c in self.carried_columns() if not self.columns[c].noise]


def carried(name: str, columns: Mapping[str, Rule], *, key_column: str = "") -> Table:
    """A table whose carried columns travel (in this order: parents before children)."""
    return Table(name, dict(columns), key_column=key_column)


def left_out_table(name: str, why: str) -> Table:
    """A table that is not configuration."""
    return Table(name, why=why)


_ACTIVITY: Final = "activity, not configuration"

#: Every table of the schema. Carried tables are restored in this order
#: (a table before those whose rows point at it) and emptied in reverse.
TABLES: Final[tuple[Table, ...]] = (
    carried(
        "settings",
        {"key": AS_IS, "value": AS_IS, "updated_at": NOISE},
        key_column="key",
    ),
    carried(
        "auth_providers",
        {
            "id": AS_IS,
            "kind": AS_IS,
            "name": AS_IS,
            "slug": AS_IS,
            "enabled": AS_IS,
            "is_default": AS_IS,
            "config": AS_IS,
            "secrets_enc": SECRET,
            "created_at": AS_IS,
            "updated_at": NOISE,
        },
    ),
    carried(
        "users",
        {
            "id": AS_IS,
            "username": AS_IS,
            "display_name": AS_IS,
            "password_hash": AS_IS,
            "role": AS_IS,
            "source": AS_IS,
            # Kept in clear in the database today; the copy is encrypted whole.
            "totp_secret": AS_IS,
            "disabled": AS_IS,
            "created_at": AS_IS,
            "password_changed_at": AS_IS,
            "email": AS_IS,
            "provider_id": AS_IS,
            "external_id": AS_IS,
            "must_change_password": AS_IS,
            "last_sign_in": left_out(_ACTIVITY),
        },
    ),
    carried(
        "api_tokens",
        {
            "id": AS_IS,
            "user_id": AS_IS,
            "name": AS_IS,
            "token_hash": AS_IS,
            "created_at": AS_IS,
            "expires_at": AS_IS,
            "max_role": AS_IS,
            "last_used": left_out(_ACTIVITY),
        },
    ),
    carried(
        "recovery_codes",
        {"user_id": AS_IS, "code_hash": AS_IS, "created_at": AS_IS, "used_at": AS_IS},
    ),
    carried(
        "groups",
        {"id": AS_IS, "name": AS_IS, "description": AS_IS, "created_at": AS_IS},
    ),
    carried(
        "group_members",
        # A provider's memberships are written again at each sign-in through it.
        {"group_id": AS_IS, "user_id": AS_IS, "source": AS_IS, "added_at": NOISE},
    ),
    carried(
        "group_mappings",
        {"id": AS_IS, "provider_id": AS_IS, "external_group": AS_IS, "group_id": AS_IS},
    ),
    carried(
        "grants",
        {
            "id": AS_IS,
            "subject_kind": AS_IS,
            "subject_id": AS_IS,
            "object_kind": AS_IS,
            "object_ref": AS_IS,
            "role": AS_IS,
            "created_at": AS_IS,
            "created_by": AS_IS,
        },
    ),
    carried(
        "pools",
        {
            "id": AS_IS,
            "uuid": AS_IS,
            "name": AS_IS,
            "url": AS_IS,
            "username": AS_IS,
            "password_enc": SECRET,
            "fingerprint": AS_IS,
            "created_at": AS_IS,
            "updated_at": NOISE,
            "last_error": left_out("the connection's state, found again at the next connection"),
            "last_error_at": left_out("the connection's state"),
            "last_connected_at": left_out("the connection's state"),
        },
    ),
    carried(
        "backup_jobs",
        {
            "id": AS_IS,
            "name": AS_IS,
            "spec": AS_IS,
            "created_at": AS_IS,
            "updated_at": NOISE,
            # The slot last run: a slot missed while the appliance was lost
            # runs once, as after any downtime. Moves at every scheduled run.
            "last_slot": NOISE,
            "next_run": left_out("recomputed by the scheduler from the schedule"),
        },
    ),
    carried(
        "replication_jobs",
        {
            "id": AS_IS,
            "name": AS_IS,
            "spec": AS_IS,
            "created_at": AS_IS,
            "updated_at": NOISE,
            "last_slot": NOISE,
            "next_run": left_out("recomputed by the scheduler from the schedule"),
            # A replica started (failover) keeps its job waiting: a restored
            # appliance must not overwrite what runs on the target site.
            "paused": AS_IS,
        },
    ),
    carried(
        # Which replica VM of the target pool is whose: without it a restored
        # appliance would copy every VM in full again, beside the old replicas.
        "replicas",
        {
            "id": AS_IS,
            "job_id": AS_IS,
            "job_name": AS_IS,
            "source_pool_id": AS_IS,
            "source_vm_uuid": AS_IS,
            "source_vm_name": AS_IS,
            "target_pool_id": AS_IS,
            "target_sr_uuid": AS_IS,
            "vm_uuid": AS_IS,
            "vm_name": AS_IS,
            "state": AS_IS,
            "started_vm_uuid": AS_IS,
            "started_point_uuid": AS_IS,
            "started_at": AS_IS,
            "safety_snapshot_uuid": AS_IS,
            # What each run updates: carried, but no change of configuration.
            "latest_point_uuid": NOISE,
            "latest_point_at": NOISE,
            "points": NOISE,
            "last_success_at": NOISE,
            "last_attempt_at": NOISE,
            "last_run_id": left_out("an operation of this appliance's history"),
            "last_bytes": NOISE,
            "last_seconds": NOISE,
            "last_error": NOISE,
            "created_at": AS_IS,
        },
    ),
    carried(
        "ssh_keys",
        {
            "id": AS_IS,
            "user_id": AS_IS,
            "name": AS_IS,
            "key": AS_IS,
            "fingerprint": AS_IS,
            "created_at": AS_IS,
        },
    ),
    carried(
        "resource_sets",
        {
            "id": AS_IS,
            "name": AS_IS,
            "cpus": AS_IS,
            "memory": AS_IS,
            "disk": AS_IS,
            "disks": AS_IS,
            "vms": AS_IS,
            "count_snapshots": AS_IS,
            "created_at": AS_IS,
        },
    ),
    carried(
        "resource_set_subjects",
        {"set_id": AS_IS, "subject_kind": AS_IS, "subject_id": AS_IS},
    ),
    carried(
        "resource_set_objects",
        {"set_id": AS_IS, "object_kind": AS_IS, "object_ref": AS_IS},
    ),
    carried(
        # Which member's VM is charged to which set: without it a restored
        # appliance would count the members' VMs nowhere and let them over.
        "resource_allocations",
        {
            "id": AS_IS,
            "set_id": AS_IS,
            "user_id": AS_IS,
            "pool_id": AS_IS,
            "vm_uuid": AS_IS,
            "name": AS_IS,
            "cpus": AS_IS,
            "memory": AS_IS,
            "disk": AS_IS,
            "disks": AS_IS,
            "state": AS_IS,
            "created_at": AS_IS,
        },
    ),
    left_out_table("sessions", "signed-in browsers: everyone signs in again"),
    left_out_table("setup_sessions", "the first-boot wizard of this appliance"),
    left_out_table("auth_failures", "sign-in throttling counters"),
    left_out_table("auth_flows", "redirect sign-ins under way, valid for minutes"),
    left_out_table("auth_replay", "tokens already used, valid for minutes"),
    left_out_table("audit_log", "this appliance's own history; the restore is audited here"),
    left_out_table("operations", "history of runs; the restore points stay in the datastore"),
    left_out_table("operation_tasks", "history of runs"),
    left_out_table("operation_log", "history of runs"),
)

#: Settings rows by key: an exact key, or a prefix ending in "." or "_".
#: The longest match decides; a key no rule matches is left out and logged.
SETTINGS: Final[Mapping[str, Rule]] = {
    "appliance.name": AS_IS,
    "appliance.timezone": AS_IS,
    "auth.public_url": AS_IS,
    "backup.smtp": secret_in_json("password_enc"),
    "backup.verify.schedule": AS_IS,
    "appliance_backup.retention": AS_IS,
    # A person's choice to go on without a second factor, by user id.
    "wizard.totp_skipped.": AS_IS,
    "backup.datastore": left_out("where this appliance keeps its backups: the disk attached here"),
    "appliance_backup.key": left_out("the backup key itself, set on each appliance"),
    "appliance_backup.content_mac": left_out("what the last copy held, to skip an identical one"),
    "wizard.": left_out("the first-boot wizard of this appliance"),
    "setup.": left_out("the first-boot setup token of this appliance"),
    "totp.pending.": left_out("an enrolment under way"),
    "totp.last_step.": left_out("codes already used, valid for seconds"),
}


def setting_rule(key: str) -> Rule | None:
    """The rule for a settings key (the longest matching entry), or None."""
    best: tuple[int, Rule] | None = None
    for name, rule in SETTINGS.items():
        is_prefix = name.endswith((".", "_"))
        matches = key == name or (is_prefix and key.startswith(name))
        if matches and (best is None or len(name) > best[0]):
            best = (len(name), rule)
    return None if best is None else best[1]


def setting_carried(key: str) -> bool:
    """True when a settings row with this key is configuration."""
    rule = setting_rule(key)
    return rule is not None and rule.carry is not Carry.LEFT_OUT


def table(name: str) -> Table:
    """The declaration of one table (KeyError when undeclared)."""
    for t in TABLES:
        if t.name == name:
            return t
    raise KeyError(name)


def carried_tables() -> list[Table]:
    """Tables that travel, in restore order."""
    return [t for t in TABLES if t.carried]


@dataclass(frozen=True)
class ColumnFact:
    """What the schema says of a column (``PRAGMA table_info``)."""

    name: str
    not_null: bool
    has_default: bool


def coverage(schema: Mapping[str, Iterable[ColumnFact]]) -> list[str]:
    """What the declarations miss in ``schema`` (table → its columns), in words.

    Empty when every table and column is declared, every declared one
    exists, and every left-out column of a carried table can be left out
    (nullable or with a default: the restore leaves it to its default).
    """
    problems = []
    declared = {t.name: t for t in TABLES}
    for name in sorted(set(schema) - set(declared)):
        problems.append(f"table {name} is neither carried nor left out in the catalog")
    for name in sorted(set(declared) - set(schema)):
        problems.append(f"table {name} is declared but not in the schema")
    for name, columns in schema.items():
        decl = declared.get(name)
        if decl is None or not decl.carried:
            continue
        facts = {c.name: c for c in columns}
        for col in sorted(set(facts) - set(decl.columns)):
            problems.append(f"column {name}.{col} is neither carried nor left out")
        for col in sorted(set(decl.columns) - set(facts)):
            problems.append(f"column {name}.{col} is declared but not in the schema")
        for col, rule in decl.columns.items():
            fact = facts.get(col)
            if rule.carry is Carry.LEFT_OUT and fact and fact.not_null and not fact.has_default:
                problems.append(
                    f"column {name}.{col} is left out but NOT NULL without a default: "
                    "a restore could not fill it"
                )
    return problems
