import pytest

from gateway.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_lets_its_burst_through_at_once_then_refuses_with_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(10, 10, clock=clock)
    assert [limiter.acquire("s") for _ in range(10)] == [0.0] * 10
    assert limiter.acquire("s") == pytest.approx(0.1)
    clock.now += 0.1
    assert limiter.acquire("s") == 0.0
    assert limiter.acquire("s") == pytest.approx(0.1)


def test_a_refused_request_takes_nothing_from_the_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(1, 2, clock=clock)
    assert limiter.acquire("s", 2) == 0.0
    for _ in range(5):
        assert limiter.acquire("s") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.acquire("s") == 0.0


def test_keys_are_independent_and_a_batch_larger_than_the_burst_passes_when_full() -> None:
    clock = Clock()
    limiter = RateLimiter(5, 5, clock=clock)
    assert limiter.acquire("a", 50) == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0
    clock.now += 10
    assert limiter.acquire("a", 5) == 0.0


def test_an_idle_key_refills_no_further_than_its_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 4, clock=clock)
    limiter.acquire("s", 4)
    clock.now += 3600
    assert [limiter.acquire("s") for _ in range(5)][-1] == pytest.approx(0.5)


def test_the_number_of_keys_is_bounded_by_dropping_those_unused_longest() -> None:
    clock = Clock()
    limiter = RateLimiter(1, 1, max_keys=3, clock=clock)
    for key in "abcd":
        limiter.acquire(key)
    assert limiter.acquire("a") == 0.0  # forgotten, so it starts full again
    assert limiter.acquire("d") > 0  # remembered and empty


def test_a_zero_rate_means_no_limit() -> None:
    limiter = RateLimiter(0, 0)
    assert all(limiter.acquire("s", 1e6) == 0.0 for _ in range(100))
