"""Retrieval metrics shared by the trainer's evaluation and the benchmarks (ARCHITECTURE.md section 8).

All functions take a dense score matrix and a boolean relevance matrix of the same shape
[num_queries, num_database]. `exclude` marks pairs that are not part of the ranking at all
(the query itself when queries are drawn from the database): they are neither hits nor misses.
Ties are broken pessimistically (negatives first), so a constant scorer never looks good.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RetrievalMetrics:
    """The three numbers the project reports; `queries` counts queries that have a positive."""

    map: float
    micro_ap: float
    recall_at_1: float
    queries: int

    def as_dict(self) -> dict[str, float]:
        return {"mAP": self.map, "uAP": self.micro_ap, "R@1": self.recall_at_1, "queries": float(self.queries)}


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one ranked list: sum of precision x recall-delta over the list sorted by descending score.

    Returns nan when there is no positive (the caller decides whether such a query counts).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    positives = int(labels.sum())
    if positives == 0:
        return float("nan")
    # Sort by score descending; among equal scores put negatives first (pessimistic ties).
    order = np.lexsort((labels.astype(np.int8), -scores))
    hits = labels[order]
    cumulative_hits = np.cumsum(hits)
    ranks = np.arange(1, hits.size + 1)
    precision_at_hits = cumulative_hits[hits] / ranks[hits]
    return float(precision_at_hits.sum() / positives)


def _check(
    scores: np.ndarray, labels: np.ndarray, exclude: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be the same 2-d shape")
    keep = np.ones_like(labels) if exclude is None else ~np.asarray(exclude, dtype=bool)
    if keep.shape != labels.shape:
        raise ValueError(f"exclude {keep.shape} must match scores {scores.shape}")
    return scores, labels, keep


def mean_average_precision(scores: np.ndarray, labels: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """mAP: per query AP over its whole ranked database (excluded pairs dropped); mean over queries with a positive."""
    scores, labels, keep = _check(scores, labels, exclude)
    aps = [average_precision(scores[q][keep[q]], labels[q][keep[q]]) for q in range(scores.shape[0])]
    aps = [ap for ap in aps if not np.isnan(ap)]
    return float(np.mean(aps)) if aps else float("nan")


def micro_average_precision(scores: np.ndarray, labels: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """µAP: one AP over all query-target pairs pooled, so scores must be comparable across queries."""
    scores, labels, keep = _check(scores, labels, exclude)
    return average_precision(scores[keep], labels[keep])


def recall_at_1(scores: np.ndarray, labels: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Fraction of queries (with a positive) whose top-ranked item is a positive; ties count as misses."""
    scores, labels, keep = _check(scores, labels, exclude)
    hits = []
    for q in range(scores.shape[0]):
        row_scores, row_labels = scores[q][keep[q]], labels[q][keep[q]]
        if not row_labels.any():
            continue
        best = row_scores.max()
        # Pessimistic: a top score shared with a negative is a miss.
        hits.append(bool(row_labels[row_scores == best].all()))
    return float(np.mean(hits)) if hits else float("nan")


def retrieval_metrics(scores: np.ndarray, labels: np.ndarray, exclude: np.ndarray | None = None) -> RetrievalMetrics:
    """mAP, µAP and recall@1 together; `exclude` usually is the identity (query excluded from its own ranking)."""
    _, labels_checked, keep = _check(scores, labels, exclude)
    queries = int((labels_checked & keep).any(axis=1).sum())
    return RetrievalMetrics(
        map=mean_average_precision(scores, labels, exclude),
        micro_ap=micro_average_precision(scores, labels, exclude),
        recall_at_1=recall_at_1(scores, labels, exclude),
        queries=queries,
    )
