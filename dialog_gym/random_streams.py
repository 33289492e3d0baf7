"""Counter-based random numbers: every draw is a pure function of (key, stream, position).

Tasks generate episodes for a whole batch with a few numpy operations, and episode ``k`` of a
split comes out the same whichever batch, vector row or process generates it. The mixer is
SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_STREAM_STRIDE = np.uint64(0xD1B54A32D192ED03)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser applied elementwise; uint64 arithmetic wraps modulo 2**64."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


def episode_index(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """The index of episode number ``counters`` in the stream of episodes seeded by ``keys``."""
    return splitmix64(np.asarray(keys, np.uint64) ^ splitmix64(counters))


def random_bits(keys: np.ndarray, stream: int, count: int) -> np.ndarray:
    """``count`` independent 64-bit draws per key, shape ``(len(keys), count)``.

    Different ``stream`` numbers give independent draws, so a generator can ask for its people,
    places and events from separate streams without worrying about reuse.
    """
    base = splitmix64(keys)[:, None]
    stream_base = np.full(1, stream, dtype=np.uint64) * _STREAM_STRIDE
    offsets = stream_base + np.arange(count, dtype=np.uint64) * _GOLDEN
    return splitmix64(base ^ offsets[None, :])


def uniform(keys: np.ndarray, stream: int, count: int) -> np.ndarray:
    """Floats in [0, 1) with 53 random bits, shape ``(len(keys), count)``."""
    return (random_bits(keys, stream, count) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def hash_rows(values: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of an integer array, shape ``(B,)``; order-sensitive."""
    values = np.asarray(values).reshape(len(values), -1).astype(np.uint64)
    position_salt = splitmix64(np.arange(values.shape[1], dtype=np.uint64))
    return splitmix64(np.bitwise_xor.reduce(splitmix64(values ^ position_salt[None, :]), axis=1))


class Dice:
    """Hands out the columns of one block of uniform draws per episode (``uniform(keys, stream, count)``), in order."""

    def __init__(self, keys: np.ndarray, stream: int, count: int) -> None:
        self.draws = uniform(keys, stream, count)
        self.used = 0

    def uniform(self, n: int) -> np.ndarray:
        self.used += n
        return self.draws[:, self.used - n : self.used]

    def integers(self, n: int, high: int | np.ndarray) -> np.ndarray:
        return np.minimum((self.uniform(n) * high).astype(np.int64), np.asarray(high) - 1)

    def distinct(self, population: int, k: int) -> np.ndarray:
        """k distinct values from range(population) per row, in random order."""
        draws = self.integers(k, population - np.arange(k))  # the j-th pick is among population - j left
        chosen = np.empty_like(draws)
        for j in range(k):
            value = draws[:, j].copy()
            # Turn "the value-th unused number" into a number by stepping over those already taken.
            for taken in np.sort(chosen[:, :j], axis=1).T:
                value += value >= taken
            chosen[:, j] = value
        return chosen

    def pick(self, allowed: np.ndarray) -> np.ndarray:
        """One allowed column per row of ``allowed`` (B, n), uniformly; -1 where none is allowed."""
        scores = np.where(allowed, 1.0 + self.uniform(allowed.shape[1]), 0.0)
        return np.where(allowed.any(axis=1), np.argmax(scores, axis=1), -1)
