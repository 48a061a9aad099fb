"""Identifiers: ``run_``/``batch_``/``attempt_`` + a 26-character ULID that sorts by creation."""

from __future__ import annotations

import itertools
import re
import threading
import time

from runlane.core import ids

BODY = re.compile(r"[0-9a-hjkmnp-tv-z]{26}")  # Crockford base32, lower case (no i, l, o, u)


def now_ms() -> int:
    return int(time.time() * 1000)


def test_prefixes_and_shape() -> None:
    for make, prefix in ((ids.run_id, "run"), (ids.batch_id, "batch"), (ids.attempt_id, "attempt")):
        value = make()
        head, _, body = value.partition("_")
        assert head == prefix
        assert BODY.fullmatch(body), value
        assert len(value) == len(prefix) + 1 + 26
    assert ids.new_id("sched").startswith("sched_")
    assert BODY.fullmatch(ids.ulid())


def test_alphabet_sorts_in_ascii_order() -> None:
    assert list(ids._ALPHABET) == sorted(ids._ALPHABET)
    assert len(set(ids._ALPHABET)) == 32


def test_ten_thousand_ids_in_a_tight_loop_sort_in_creation_order() -> None:
    made = [ids.run_id() for _ in range(10_000)]
    assert len(set(made)) == 10_000
    assert made == sorted(made)
    assert all(a < b for a, b in itertools.pairwise(made))


def test_mixed_prefixes_sort_by_time_within_a_prefix() -> None:
    runs = []
    for _ in range(2_000):
        runs.append(ids.run_id())
        ids.batch_id()
        ids.attempt_id()
    assert runs == sorted(runs)


def test_id_time_ms_is_the_creation_time() -> None:
    before = now_ms()
    value = ids.run_id()
    after = now_ms()
    assert before - 1 <= ids.id_time_ms(value) <= after + 1
    for make in (ids.batch_id, ids.attempt_id, ids.ulid):
        t0 = now_ms()
        got = ids.id_time_ms(make())
        assert t0 - 1 <= got <= now_ms() + 1


def test_id_time_ms_of_an_explicit_time() -> None:
    target = now_ms() + 2  # just ahead of every id made so far
    body = ids.ulid(now_ms=target)
    assert ids.id_time_ms(body) == target
    assert ids.id_time_ms(f"run_{body}") == target
    assert ids.id_time_ms(f"attempt_{body}") == target


def test_ids_stay_ordered_when_the_clock_goes_back() -> None:
    ahead = now_ms() + 3
    first = ids.ulid(now_ms=ahead)
    second = ids.ulid(now_ms=ahead - 60_000)  # clock stepped back a minute
    third = ids.ulid(now_ms=ahead)
    assert first < second < third
    assert ids.id_time_ms(second) == ahead


def test_ids_from_many_threads_are_unique() -> None:
    out: list[list[str]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        out[i].extend(ids.run_id() for _ in range(1_000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [x for chunk in out for x in chunk]
    assert len(set(every)) == 8_000
    for chunk in out:
        assert chunk == sorted(chunk)  # each thread sees increasing ids


def test_encode_round_trip() -> None:
    for ms in (0, 1, 31, 32, 1_750_000_000_000, (1 << 48) - 1):
        assert ids.id_time_ms(ids._encode(ms, 10) + "0" * 16) == ms


def test_encode_is_crockford_base32_of_the_value() -> None:
    # the reference: the value's bits, 5 at a time from the most significant, in our alphabet
    import random

    rng = random.Random(7)
    for length in (1, 2, 7, 10, 16, 26):
        for value in [0, (1 << 5 * length) - 1] + [rng.getrandbits(5 * length) for _ in range(300)]:
            expected = "".join(
                ids._ALPHABET[(value >> 5 * (length - 1 - i)) & 31] for i in range(length)
            )
            assert ids._encode(value, length) == expected


def test_a_forked_child_never_repeats_its_parents_ids(monkeypatch) -> None:
    """Parent and child may create an id in the same millisecond: neither continues the
    other's sequence or random bytes."""
    import os

    # the millisecond used here is in the future: this process's later ids must not follow it
    monkeypatch.setattr(ids, "_last_ms", ids._last_ms)
    monkeypatch.setattr(ids, "_last_rand", ids._last_rand)
    ms = ids.id_time_ms(ids.run_id()) + 10_000  # a millisecond both use, after the last one
    ids.ulid(ms)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, ids.ulid(ms).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    theirs = os.read(read, 64).decode()
    os.close(read)
    assert theirs and theirs != ids.ulid(ms)


def test_the_random_part_encodes_as_the_general_encoder_does() -> None:
    import random

    from runlane.core.ids import _encode, _encode80

    rng = random.Random(7)
    edges = [0, 1, (1 << 40) - 1, 1 << 40, (1 << 79), (1 << 80) - 1]
    for value in edges + [rng.getrandbits(80) for _ in range(2000)]:
        assert _encode80(value) == _encode(value, 16)
