from xenkeep.auth.throttle import (
    FREE_ATTEMPTS,
    MAX_DELAY_SECONDS,
    RESET_AFTER_SECONDS,
    required_delay,
    retry_after,
)


def test_free_attempts_then_exponential_backoff_capped() -> None:
    assert [required_delay(n) for n in range(FREE_ATTEMPTS)] == [0] * FREE_ATTEMPTS
    delays = [required_delay(n) for n in range(FREE_ATTEMPTS, FREE_ATTEMPTS + 6)]
    assert delays == [2, 4, 8, 16, 32, 64]
    assert required_delay(100) == MAX_DELAY_SECONDS


def test_retry_after_counts_down_and_resets() -> None:
    assert retry_after(FREE_ATTEMPTS, 1000.0, 1000.0) == 2
    assert retry_after(FREE_ATTEMPTS, 1000.0, 1001.5) == 1
    assert retry_after(FREE_ATTEMPTS, 1000.0, 1002.0) == 0
    assert retry_after(50, 0.0, RESET_AFTER_SECONDS + 1.0) == 0
