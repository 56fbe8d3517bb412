"""The LDAP provider against a real OpenLDAP (tests/support/slapd.py): search
then bind, TLS pinned to a CA, disabled accounts, groups, filter injection,
servers that are down or silent, and "test this configuration"."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.slapd import AD_GUIDS, BASE_DN, PASSWORDS, SERVICE_DN, RunningSlapd
from xenkeep.auth.errors import CredentialsRejectedError, ProviderUnavailableError
from xenkeep.auth.providers.base import (
    CheckResult,
    ProviderEnv,
    ProviderKind,
    ProviderRecord,
)
from xenkeep.auth.providers.ldap import LdapProvider, LdapType


def provider(values: dict[str, str]) -> LdapProvider:
    """A provider built from form values, as the framework builds a saved one."""
    config, secrets = LdapType().clean(values, {})
    record = ProviderRecord(
        id=1,
        kind=ProviderKind.LDAP,
        name="Test directory",
        slug="directory",
        enabled=True,
        is_default=False,
        config=config,
        secrets=secrets,
    )
    env = ProviderEnv("https://keep.test/cb", "https://keep.test/md", Path("/nonexistent"))
    return LdapType().build(record, env)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.fixture
def hanging_up_port() -> Iterator[int]:
    """A loopback port whose server closes every connection it accepts."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    listener.close()


def steps(result: CheckResult) -> dict[str, tuple[bool, str]]:
    return {s.label: (s.ok, s.detail) for s in result.steps}


# --- signing in ------------------------------------------------------------------


async def test_starttls_with_the_pinned_ca_signs_in(slapd: RunningSlapd) -> None:
    who = await provider(slapd.provider_values()).authenticate("alice", PASSWORDS["alice"])
    assert uuid.UUID(who.subject)  # entryUUID, not the DN
    assert who.username == "alice"
    assert who.display_name == "Alice Archer"
    assert who.email == "alice@xenkeep.test"
    assert who.groups == ("backup-admins", "staff")


async def test_ldaps_signs_in_and_the_name_is_the_directorys(slapd: RunningSlapd) -> None:
    ldaps = provider(slapd.provider_values(servers=slapd.ldaps_url, security="ldaps"))
    first = await ldaps.authenticate("alice", PASSWORDS["alice"])
    # Directories compare names without case: the account is the same one.
    again = await ldaps.authenticate("ALICE", PASSWORDS["alice"])
    assert again.username == "alice" and again.subject == first.subject


async def test_a_non_ascii_password_signs_in(slapd: RunningSlapd) -> None:
    who = await provider(slapd.provider_values()).authenticate("zoe", PASSWORDS["zoe"])
    assert who.display_name == "Zoë Zimmer"


async def test_wrong_password_and_unknown_user_get_the_same_answer(slapd: RunningSlapd) -> None:
    ldap = provider(slapd.provider_values())
    answers = []
    for username, password in (
        ("alice", "not her password"),
        ("nobody-here", PASSWORDS["alice"]),
        ("alice", ""),  # an unauthenticated bind would "succeed" as anonymous
        ("", PASSWORDS["alice"]),
    ):
        with pytest.raises(CredentialsRejectedError) as refused:
            await ldap.authenticate(username, password)
        answers.append(refused.value.message)
    assert set(answers) == {"wrong user name or password"}


@pytest.mark.parametrize(
    "username",
    [
        "*",
        "*)(uid=*",
        "alice)(|(uid=*",
        "al*",
        "*)(objectClass=*))(&(uid=alice",
        "alice\x00",
        "alice)(userPassword=*",
        "\\2a",
    ],
)
async def test_filter_injection_finds_nobody(slapd: RunningSlapd, username: str) -> None:
    ldap = provider(slapd.provider_values())
    with pytest.raises(CredentialsRejectedError, match="wrong user name or password"):
        await ldap.authenticate(username, PASSWORDS["alice"])
    result = await ldap.check(username, "")
    ok, detail = steps(result)[f"Find {username}"]
    assert not ok and "no entry" in detail and result.identity is None


async def test_a_locked_account_is_refused_only_with_its_password(slapd: RunningSlapd) -> None:
    ldap = provider(slapd.provider_values())
    with pytest.raises(CredentialsRejectedError, match="wrong user name or password"):
        await ldap.authenticate("carol", "a guess")
    with pytest.raises(CredentialsRejectedError, match="disabled in Test directory"):
        await ldap.authenticate("carol", PASSWORDS["carol"])
    # Without the check, the directory alone lets her bind (no lockout policy).
    unchecked = provider(slapd.provider_values(disabled_check="none"))
    assert (await unchecked.authenticate("carol", PASSWORDS["carol"])).username == "carol"


async def test_active_directory_accounts(slapd: RunningSlapd) -> None:
    ad = provider(slapd.ad_values())
    ann = await ad.authenticate("ad.ann", PASSWORDS["ad.ann"])
    assert ann.subject == str(AD_GUIDS["ad.ann"])  # objectGUID as AD shows it
    assert ann.username == "ad.ann" and ann.display_name == "Ann Adams"
    assert ann.groups == ("AD Backup Operators",)
    with pytest.raises(CredentialsRejectedError, match="disabled"):
        await ad.authenticate("ad.dan", PASSWORDS["ad.dan"])
    by_dn = provider(slapd.ad_values(group_name="dn"))
    assert (await by_dn.authenticate("ad.ann", PASSWORDS["ad.ann"])).groups == (
        f"cn=AD Backup Operators,ou=ad,{BASE_DN}",
    )


async def test_posix_groups_by_member_uid(slapd: RunningSlapd) -> None:
    ldap = provider(
        slapd.provider_values(
            group_filter="(&(objectClass=posixGroup)(memberUid={username}))", group_name="dn"
        )
    )
    # Typed in capitals: the filter gets the directory's spelling, "bob".
    bob = await ldap.authenticate("BOB", PASSWORDS["bob"])
    assert bob.groups == (f"cn=operators,ou=groups,{BASE_DN}",)


async def test_a_dn_with_special_characters_is_escaped_in_the_group_filter(
    slapd: RunningSlapd,
) -> None:
    frank = await provider(slapd.provider_values()).authenticate("frank", PASSWORDS["frank"])
    assert frank.groups == ("backup-admins",)
    via_member_of = provider(slapd.provider_values(group_source="memberof"))
    assert (await via_member_of.authenticate("frank", PASSWORDS["frank"])).groups == (
        "backup-admins",
    )


async def test_anonymous_search_then_bind(slapd: RunningSlapd) -> None:
    anonymous = provider(slapd.provider_values(bind_dn="", bind_password=""))
    assert (await anonymous.authenticate("bob", PASSWORDS["bob"])).groups == ("staff",)
    result = await anonymous.check()
    assert result.ok and "Anonymous search" in steps(result)


async def test_without_a_stable_attribute_the_dn_is_the_identifier(slapd: RunningSlapd) -> None:
    ldap = provider(slapd.provider_values(attr_subject="employeeNumber"))
    assert (await ldap.authenticate("bob", PASSWORDS["bob"])).subject == (
        f"uid=bob,ou=people,{BASE_DN}"
    )
    ok, detail = steps(await ldap.check("bob"))["Stable identifier"]
    assert ok and "employeeNumber is absent" in detail and "renaming" in detail


async def test_a_filter_matching_two_people_is_a_fault_not_a_sign_in(slapd: RunningSlapd) -> None:
    ldap = provider(
        slapd.provider_values(
            user_filter="(&(objectClass=inetOrgPerson)(|(uid={username})(uid=bob)))"
        )
    )
    with pytest.raises(ProviderUnavailableError, match="more than one entry"):
        await ldap.authenticate("alice", PASSWORDS["alice"])


# --- servers down, TLS refused ------------------------------------------------


async def test_a_server_that_is_down_is_named(slapd: RunningSlapd, closed_port: int) -> None:
    ldap = provider(slapd.provider_values(servers=f"ldap://127.0.0.1:{closed_port}"))
    with pytest.raises(ProviderUnavailableError) as down:
        await ldap.authenticate("alice", PASSWORDS["alice"])
    assert f"cannot reach ldap://127.0.0.1:{closed_port}: " in down.value.message
    assert "refused" in down.value.message.lower()


async def test_a_silent_server_times_out(slapd: RunningSlapd, silent_port: int) -> None:
    for security, scheme in (("starttls", "ldap"), ("ldaps", "ldaps")):
        ldap = provider(
            slapd.provider_values(
                servers=f"{scheme}://127.0.0.1:{silent_port}", security=security, timeout="1"
            )
        )
        with pytest.raises(ProviderUnavailableError) as silent:
            await ldap.authenticate("alice", PASSWORDS["alice"])
        assert f"cannot reach {scheme}://127.0.0.1:{silent_port}: no answer in time" in (
            silent.value.message
        )


@pytest.mark.parametrize(
    ("security", "scheme"), [("starttls", "ldap"), ("ldaps", "ldaps"), ("none", "ldap")]
)
async def test_a_server_that_hangs_up(
    slapd: RunningSlapd, hanging_up_port: int, security: str, scheme: str
) -> None:
    ldap = provider(
        slapd.provider_values(
            servers=f"{scheme}://127.0.0.1:{hanging_up_port}",
            security=security,
            allow_insecure="on",
        )
    )
    with pytest.raises(ProviderUnavailableError) as gone:
        await ldap.authenticate("alice", PASSWORDS["alice"])
    assert f"{scheme}://127.0.0.1:{hanging_up_port}" in gone.value.message
    result = await ldap.check("alice", PASSWORDS["alice"])
    assert not result.ok and result.identity is None


async def test_failover_to_the_next_server(slapd: RunningSlapd, closed_port: int) -> None:
    servers = f"ldap://127.0.0.1:{closed_port} {slapd.ldap_url}"
    ldap = provider(slapd.provider_values(servers=servers))
    assert (await ldap.authenticate("bob", PASSWORDS["bob"])).username == "bob"
    result = await ldap.check()
    found = steps(result)
    assert not found[f"Connect to ldap://127.0.0.1:{closed_port}"][0]
    assert found[f"Connect to {slapd.ldap_url}"][0]


@pytest.mark.parametrize("security", ["starttls", "ldaps"])
async def test_a_wrong_ca_is_refused(slapd: RunningSlapd, security: str) -> None:
    url = slapd.ldap_url if security == "starttls" else slapd.ldaps_url
    ldap = provider(
        slapd.provider_values(servers=url, security=security, ca_pem=slapd.wrong_ca_pem)
    )
    with pytest.raises(ProviderUnavailableError) as refused:
        await ldap.authenticate("alice", PASSWORDS["alice"])
    assert "not signed by the CA this provider trusts" in refused.value.message
    assert ("StartTLS" if security == "starttls" else "TLS") in refused.value.message


async def test_no_pinned_ca_means_public_cas_only(slapd: RunningSlapd) -> None:
    ldap = provider(slapd.provider_values(ca_pem=""))
    with pytest.raises(ProviderUnavailableError, match="not signed by the CA"):
        await ldap.authenticate("alice", PASSWORDS["alice"])


async def test_the_host_name_is_checked_unless_told_not_to(slapd: RunningSlapd) -> None:
    values = slapd.provider_values(servers=slapd.mismatched_ldaps_url, security="ldaps")
    with pytest.raises(ProviderUnavailableError, match=r"certificate is not for 127\.0\.0\.2"):
        await provider(values).authenticate("alice", PASSWORDS["alice"])
    relaxed = provider({**values, "skip_hostname_check": "on"})
    assert (await relaxed.authenticate("alice", PASSWORDS["alice"])).username == "alice"


async def test_ldaps_to_a_plain_port_says_tls_failed(slapd: RunningSlapd) -> None:
    plain = slapd.ldap_url.replace("ldap://", "ldaps://")
    ldap = provider(slapd.provider_values(servers=plain, security="ldaps"))
    with pytest.raises(
        ProviderUnavailableError,
        match=r"TLS with .* failed: the server closed .* \(an ldap:// port\?\)",
    ):
        await ldap.authenticate("alice", PASSWORDS["alice"])


async def test_a_refused_service_account(slapd: RunningSlapd) -> None:
    ldap = provider(slapd.provider_values(bind_password="not the service password"))
    with pytest.raises(ProviderUnavailableError, match="refused the service account"):
        await ldap.authenticate("alice", PASSWORDS["alice"])
    ok, detail = steps(await ldap.check("alice"))[f"Bind as {SERVICE_DN}"]
    assert not ok and "invalidCredentials" in detail


async def test_plain_ldap_needs_the_explicit_choice_and_works(slapd: RunningSlapd) -> None:
    ldap = provider(slapd.provider_values(security="none", allow_insecure="on", ca_pem=""))
    assert (await ldap.authenticate("bob", PASSWORDS["bob"])).username == "bob"


# --- testing a configuration ---------------------------------------------------


async def test_check_shows_each_step_and_the_person(slapd: RunningSlapd) -> None:
    result = await provider(slapd.provider_values()).check("alice", PASSWORDS["alice"])
    found = steps(result)
    assert result.ok, result.steps
    assert "TLSv1." in found[f"Connect to {slapd.ldap_url}"][1]
    assert result.steps[0].label == "Pinned CA ca"
    assert found[f"Read ou=people,{BASE_DN}"] == (True, "readable")
    assert found[f"Read ou=groups,{BASE_DN}"] == (True, "readable")
    assert found["Find alice"] == (True, f"uid=alice,ou=people,{BASE_DN}")
    assert found["Account enabled"] == (True, "yes")
    assert found["Groups"] == (True, "backup-admins, staff")
    assert found["Sign in with the password"][0]
    assert result.identity is not None and result.identity.groups == ("backup-admins", "staff")


async def test_check_says_what_is_wrong(slapd: RunningSlapd) -> None:
    ldap = provider(slapd.provider_values())
    carol = await ldap.check("carol", "not her password")
    found = steps(carol)
    assert found["Account enabled"] == (
        False,
        "disabled: it does not match (!(pwdAccountLockedTime=*))",
    )
    assert found["Sign in with the password"] == (False, "the directory refused this password")
    missing_base = await provider(slapd.provider_values(base_dn=f"ou=nowhere,{BASE_DN}")).check(
        "alice"
    )
    ok, detail = steps(missing_base)[f"Read ou=nowhere,{BASE_DN}"]
    assert not ok and "does not exist" in detail
    assert "Find alice" not in steps(missing_base)


async def test_check_of_a_wrong_ca_stops_at_the_connection(slapd: RunningSlapd) -> None:
    result = await provider(slapd.provider_values(ca_pem=slapd.wrong_ca_pem)).check("alice")
    assert not result.ok and result.identity is None
    ok, detail = steps(result)[f"Connect to {slapd.ldap_url}"]
    assert not ok and "not signed by the CA" in detail
    assert [s.label for s in result.steps] == ["Pinned CA wrong-ca", f"Connect to {slapd.ldap_url}"]


async def test_many_sign_ins_at_once(slapd: RunningSlapd) -> None:
    ldap = provider(slapd.provider_values())
    names = ["alice", "bob", "zoe", "frank"] * 4
    found = await asyncio.gather(*(ldap.authenticate(n, PASSWORDS[n]) for n in names))
    assert [w.username for w in found] == names
