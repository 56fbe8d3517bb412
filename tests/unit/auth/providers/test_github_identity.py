"""Who a GitHub user is, from the REST API's answers (pure parts)."""

from __future__ import annotations

import pytest

from xenkeep.auth.errors import CredentialsRejectedError, ProviderUnavailableError
from xenkeep.auth.providers.github import groups_of, primary_email


def test_the_primary_verified_address() -> None:
    emails = [
        {"email": "old@example.com", "primary": False, "verified": True},
        {"email": "Mona@Example.com", "primary": True, "verified": True},
    ]
    assert primary_email(emails, "GitHub") == "Mona@Example.com"


@pytest.mark.parametrize(
    ("emails", "words"),
    [
        ([{"email": "m@example.com", "primary": True, "verified": False}], "is not verified"),
        ([{"email": "m@example.com", "primary": False, "verified": True}], "no primary"),
        ([{"email": None, "primary": True, "verified": True}], "no primary"),
        ([], "no primary"),
    ],
)
def test_no_usable_primary_address(emails: list[dict[str, object]], words: str) -> None:
    with pytest.raises(CredentialsRejectedError, match=words):
        primary_email(emails, "GitHub")


def test_not_a_list() -> None:
    with pytest.raises(ProviderUnavailableError):
        primary_email({"message": "Not Found"}, "GitHub")


def test_groups_are_orgs_and_org_slash_team_lower_cased() -> None:
    orgs = [{"login": "Acme"}, {"login": "widgets"}, {"login": "-bad-"}, "junk", {"login": 5}]
    teams = [
        {"slug": "ops", "organization": {"login": "Acme"}},
        {"slug": "Sales", "organization": {"login": "widgets"}},
        {"slug": "x", "organization": None},
        {"slug": "ops", "organization": {"login": "acme"}},
    ]
    assert groups_of(orgs, teams) == ("acme", "widgets", "acme/ops", "widgets/sales")
