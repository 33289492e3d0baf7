"""Episodes as padded token-id arrays: what every task produces and the step kernel consumes.

A dialogue episode is a list of turns. Before answer ``t`` the user's segment ``t`` is shown (for
``t == 0`` that is the opening of the dialogue: context and first question); the agent then answers
and ends with EOS. Keeping a batch of episodes as fixed-shape arrays lets the vector env replace
the episodes of finished rows with one indexed assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

SPLITS = ("train", "test")


@dataclass(frozen=True)
class EpisodeLimits:
    """The largest sizes a task can produce; they fix the array shapes of an ``Episodes`` batch."""

    max_turns: int
    """Most answers in one episode."""
    max_segment_len: int
    """Most tokens in one user segment (the opening segment holds the context)."""
    max_dialogue_len: int
    """Most tokens of all user segments of one episode together (answers not counted)."""
    max_question_len: int
    """Most tokens of a question with its speaker markers, the part the agent must see to answer."""
    max_reference_len: int
    """Most tokens in one reference answer, EOS not counted."""
    max_keywords: int = 1
    """Most keywords per answer."""
    max_keyword_len: int = 1
    """Most tokens in one keyword."""


@dataclass
class Episodes:
    """A batch of B episodes, padded with the tokenizer's pad id; lengths say what is real."""

    segments: np.ndarray  # (B, T, S) user segment shown before answer t
    segment_len: np.ndarray  # (B, T)
    references: np.ndarray  # (B, T, A) reference answer ids, without EOS
    reference_len: np.ndarray  # (B, T)
    keywords: np.ndarray  # (B, T, K, W) an answer is "on topic" when it contains one keyword
    keyword_len: np.ndarray  # (B, T, K); 0 marks an unused keyword slot
    n_turns: np.ndarray  # (B,)
    index: np.ndarray  # (B,) uint64 position of each episode in its split
    tag: np.ndarray  # (B,) int64 a task's own label of each episode (Tutor-v0: the level it was made at)

    @classmethod
    def empty(cls, batch: int, limits: EpisodeLimits, pad_id: int) -> Episodes:
        """A batch of the right shapes holding no episode yet."""
        t, k = limits.max_turns, limits.max_keywords
        return cls(
            segments=np.full((batch, t, limits.max_segment_len), pad_id, np.int64),
            segment_len=np.zeros((batch, t), np.int64),
            references=np.full((batch, t, limits.max_reference_len), pad_id, np.int64),
            reference_len=np.zeros((batch, t), np.int64),
            keywords=np.full((batch, t, k, limits.max_keyword_len), pad_id, np.int64),
            keyword_len=np.zeros((batch, t, k), np.int64),
            n_turns=np.zeros(batch, np.int64),
            index=np.zeros(batch, np.uint64),
            tag=np.zeros(batch, np.int64),
        )

    def __len__(self) -> int:
        return len(self.n_turns)

    def take(self, rows: np.ndarray | slice) -> Episodes:
        """The episodes at ``rows`` as a new batch."""
        return Episodes(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def put(self, rows: np.ndarray, other: Episodes) -> None:
        """Overwrite the episodes at ``rows`` with ``other`` (same limits), in place."""
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)


def pad_sequences(sequences: Sequence[Sequence[int]], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad integer sequences into a ``(len(sequences), width)`` array plus their lengths."""
    out = np.full((len(sequences), width), pad_id, np.int64)
    lengths = np.zeros(len(sequences), np.int64)
    for i, seq in enumerate(sequences):
        if len(seq) > width:
            raise ValueError(f"sequence {i} has {len(seq)} tokens, more than the width {width}")
        out[i, : len(seq)] = seq
        lengths[i] = len(seq)
    return out, lengths


def concat_ragged(pieces: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Join padded pieces row by row: each piece is ``(tokens (B, w), lengths (B,))``.

    Returns ``(B, sum of widths)`` tokens packed to the left and ``(B,)`` total lengths, with one
    scatter for the whole batch instead of a Python loop over rows.
    """
    batch = len(pieces[0][1])
    width = sum(tokens.shape[1] for tokens, _ in pieces)
    out = np.full((batch, width + 1), pad_id, np.int64)  # the spare last column takes the padding
    flat_out = out.reshape(-1)
    row_start = np.arange(batch) * (width + 1)
    offset = np.zeros(batch, np.int64)
    for tokens, lengths in pieces:
        columns = offset[:, None] + np.arange(tokens.shape[1])[None, :]
        columns[np.arange(tokens.shape[1])[None, :] >= lengths[:, None]] = width
        flat_out[(columns + row_start[:, None]).reshape(-1)] = tokens.reshape(-1)
        offset = offset + lengths
    return out[:, :width], offset
