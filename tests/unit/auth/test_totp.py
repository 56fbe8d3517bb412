import pyotp

from xenkeep.auth import totp


def test_matching_step_allows_one_step_of_drift() -> None:
    secret = totp.new_secret()
    gen = pyotp.TOTP(secret)
    now = 1_700_000_000.0
    step = int(now // 30)
    assert totp.matching_step(secret, gen.at(now), now) == step
    assert totp.matching_step(secret, gen.at(now - 30), now) == step - 1
    assert totp.matching_step(secret, gen.at(now + 30), now) == step + 1
    assert totp.matching_step(secret, gen.at(now - 90), now) is None
    assert totp.matching_step(secret, "12345", now) is None
    assert totp.matching_step(secret, " " + gen.at(now)[:3] + " " + gen.at(now)[3:], now) == step


def test_qr_is_inline_svg() -> None:
    svg = totp.qr_svg(totp.provisioning_uri(totp.new_secret(), "alice", "XenKeep"))
    assert svg.startswith("<svg") and "</svg>" in svg
