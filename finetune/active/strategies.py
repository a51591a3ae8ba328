"""Selection strategies: pure functions from arrays to the rows to label, with reasons.

Every strategy reads some of: ``probs``, the (rows x choices) choice probabilities of
the current model (as the harness scores the task), ``states``, the (rows x width)
last-layer hidden states at each prompt's last token (``finetune.active.embed``), and a
``seed``. It returns ``budget`` ``Pick``s in rank order (the row to label first first),
each saying why it was chosen. The registry ``STRATEGIES`` maps the names that
``finetune select --strategy`` and the benchmark accept to them.

* ``entropy``, ``margin``: uncertainty alone (Settles 2009, section 3.1).
* ``random``: a seeded uniform draw; the baseline.
* ``balanced``: uncertainty under per-class quotas: the rows are taken in turns from
  each predicted class, the smallest margin of each class first, so a model that
  predicts one class for most of the pool still gets rows it predicts as the others.
* ``cluster-margin``: uncertainty and diversity (after Citovsky et al. 2021, "Batch
  active learning at scale"): the ``CANDIDATES x budget`` smallest-margin rows are
  clustered into ``budget`` k-means clusters of their hidden states and the
  smallest-margin row of each cluster is taken, so near-duplicates share one label.
* ``badge``: k-means++ seeding over gradient embeddings (Ash et al. 2020, "Deep batch
  active learning by diverse, uncertain gradient lower bounds"): the gradient of the
  loss over the choices, at the predicted class, with respect to the output rows of the
  choice tokens is (p - onehot(pred)) outer h; long where the model is unsure, pointing
  apart where the rows differ.
* ``typical``: the cold start, for the first batch (no model confidence needed): the
  hidden states are clustered into ``budget`` k-means clusters and the row nearest each
  centre is taken, the largest clusters first (after Yuan et al. 2020's ALPS and
  Hacohen et al. 2022's TypiClust, on the model's own states).

Clustering is scikit-learn's (``KMeans``, ``kmeans_plusplus``), seeded, so the same
arrays and seed give the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CANDIDATES = 10
"""cluster-margin clusters the CANDIDATES x budget most uncertain rows."""
MAX_GRADIENT_WIDTH = 4096
"""badge projects the hidden states (seeded Gaussian projection) so that a gradient
embedding has at most this many numbers: a pool of 10,000 rows then takes 160 MB."""
KMEANS_INIT = 3
"""k-means restarts (``n_init``); the best of them by inertia is kept."""


@dataclass(frozen=True)
class Pick:
    """One chosen row: its pool index, its score under the strategy, its cluster (when
    the strategy clusters) and a sentence saying why it was chosen."""

    index: int
    score: float
    cluster: int | None = None
    reason: str = ""


# -- per-row scores ----------------------------------------------------------------


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats of each row of a (rows x choices) probability matrix (0 log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    logs = np.log(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """p(top 1) - p(top 2) of each row; small means the model hesitates between two."""
    p = np.sort(np.asarray(probs, dtype=np.float64), axis=1)
    return p[:, -1] - p[:, -2]


def predicted(probs: np.ndarray) -> np.ndarray:
    """The predicted choice of each row (the first of tied ones, as the harness)."""
    return np.argmax(np.asarray(probs), axis=1)


def normalized(states: np.ndarray) -> np.ndarray:
    """Hidden states centred on their mean and scaled to unit length (a zero row stays
    zero): k-means on them groups by direction, not by the component every prompt shares."""
    x = np.asarray(states, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def gradient_embeddings(
    probs: np.ndarray, states: np.ndarray, *, seed: int, max_width: int = MAX_GRADIENT_WIDTH
) -> np.ndarray:
    """(p - onehot(pred)) outer h per row, flattened: the gradient of the cross-entropy
    over the choices, at the predicted choice, with respect to the output-layer rows of
    the choice tokens. When choices x width exceeds ``max_width``, h is first projected to
    ``max_width // choices`` dimensions by a seeded Gaussian matrix (scaled to keep inner
    products in expectation), so the embedding never exceeds rows x max_width."""
    p = np.asarray(probs, dtype=np.float64)
    h = np.asarray(states, dtype=np.float64)
    n, k = p.shape
    if k * h.shape[1] > max_width:
        width = max(1, max_width // k)
        rng = np.random.default_rng(seed)
        h = h @ (rng.standard_normal((h.shape[1], width)) / np.sqrt(width))
    g = p.copy()
    g[np.arange(n), predicted(p)] -= 1.0
    return (g[:, :, None] * h[:, None, :]).reshape(n, -1)


# -- strategies ---------------------------------------------------------------------


def by_entropy(probs: np.ndarray, budget: int) -> list[Pick]:
    values = entropy(probs)
    order = np.argsort(-values, kind="stable")[:budget]
    return [Pick(int(i), float(values[i]), None, f"entropy {values[i]:.4f} nats") for i in order]


def by_margin(probs: np.ndarray, budget: int) -> list[Pick]:
    values = margin(probs)
    order = np.argsort(values, kind="stable")[:budget]
    return [Pick(int(i), float(values[i]), None, f"margin {values[i]:.4f}") for i in order]


def by_random(n_rows: int, budget: int, seed: int) -> list[Pick]:
    values = np.random.default_rng(seed).random(n_rows)
    order = np.argsort(-values, kind="stable")[:budget]
    return [Pick(int(i), float(values[i]), None, "seeded random draw") for i in order]


def balanced(probs: np.ndarray, budget: int) -> list[Pick]:
    """Turns over the predicted classes; each turn takes the most uncertain row left in
    every class that has one, those rows in order of margin. A class with too few rows
    leaves its share to the others."""
    m = margin(probs)
    pred = predicted(probs)
    queues = [
        [int(i) for i in np.argsort(np.where(pred == c, m, np.inf), kind="stable") if pred[i] == c]
        for c in range(np.asarray(probs).shape[1])
    ]
    sizes = [len(q) for q in queues]
    picks: list[Pick] = []
    turn = 0
    while len(picks) < budget:
        heads = [(m[q[turn]], c, q[turn]) for c, q in enumerate(queues) if turn < len(q)]
        for value, c, i in sorted(heads):
            if len(picks) == budget:
                break
            reason = (
                f"margin {value:.4f}, the {_ordinal(turn + 1)} most uncertain of the "
                f"{sizes[c]} rows predicted as choice {c}"
            )
            picks.append(Pick(i, float(value), None, reason))
        turn += 1
    return picks


def cluster_margin(
    probs: np.ndarray, states: np.ndarray, budget: int, seed: int, candidates: int = CANDIDATES
) -> list[Pick]:
    """The smallest-margin row of each of ``budget`` k-means clusters, clustered over the
    ``candidates x budget`` smallest-margin rows; clusters in order of their pick's margin."""
    from sklearn.cluster import KMeans

    m = margin(probs)
    pool = np.argsort(m, kind="stable")[: min(len(m), candidates * budget)]
    x = normalized(np.asarray(states)[pool])
    k = min(budget, _distinct(x))
    labels = KMeans(n_clusters=k, n_init=KMEANS_INIT, random_state=seed).fit(x).labels_
    best: dict[int, int] = {}
    for j in range(len(pool)):  # pool is in margin order: a cluster's first row is its best
        best.setdefault(int(labels[j]), j)
    sizes = np.bincount(labels, minlength=k)
    chosen = sorted(best.items(), key=lambda cj: (m[pool[cj[1]]], pool[cj[1]]))
    picks = [
        Pick(
            int(pool[j]),
            float(m[pool[j]]),
            c,
            f"margin {m[pool[j]]:.4f}, the most uncertain of the {sizes[c]} rows of "
            f"cluster {c} (k-means over the {len(pool)} most uncertain rows)",
        )
        for c, j in chosen
    ]
    return _filled(picks, np.argsort(m, kind="stable"), m, budget, "margin {:.4f} (fill)")


def badge(probs: np.ndarray, states: np.ndarray, budget: int, seed: int) -> list[Pick]:
    """k-means++ seeding (scikit-learn's ``kmeans_plusplus``) over gradient embeddings;
    the order of the seeding is the rank, the embedding's length the score."""
    from sklearn.cluster import kmeans_plusplus

    g = gradient_embeddings(probs, states, seed=seed)
    norms = np.linalg.norm(g, axis=1)
    k = min(budget, _distinct(g))
    _centres, indices = kmeans_plusplus(g, n_clusters=k, random_state=seed)
    picks: list[Pick] = []
    seen: set[int] = set()
    for i in (int(x) for x in indices):
        if i not in seen:
            seen.add(i)
            reason = (
                f"k-means++ pick {len(picks) + 1} over gradient embeddings "
                f"(length {norms[i]:.4f}: the longer, the less sure the model)"
            )
            picks.append(Pick(i, float(norms[i]), None, reason))
    return _filled(picks, np.argsort(-norms, kind="stable"), norms, budget, "length {:.4f} (fill)")


def typical(states: np.ndarray, budget: int, seed: int) -> list[Pick]:
    """The row nearest each of ``budget`` k-means centres of the hidden states, the
    largest clusters first (ties: the lower cluster number); score: its distance."""
    from sklearn.cluster import KMeans

    x = normalized(states)
    k = min(budget, _distinct(x))
    km = KMeans(n_clusters=k, n_init=KMEANS_INIT, random_state=seed).fit(x)
    labels = km.labels_
    dist = np.linalg.norm(x - km.cluster_centers_[labels], axis=1)
    sizes = np.bincount(labels, minlength=k)
    picks = []
    for c in sorted(range(k), key=lambda c: (-sizes[c], c)):
        members = np.flatnonzero(labels == c)
        if not len(members):
            continue
        i = int(members[np.argmin(dist[members])])  # lowest index among equal distances
        reason = f"nearest to the centre of cluster {c} ({sizes[c]} rows), distance {dist[i]:.4f}"
        picks.append(Pick(i, float(dist[i]), c, reason))
    return _filled(picks, np.argsort(dist, kind="stable"), dist, budget, "distance {:.4f} (fill)")


def _distinct(x: np.ndarray) -> int:
    return int(len(np.unique(np.round(x, 12), axis=0)))


def _filled(
    picks: list[Pick], order: np.ndarray, values: np.ndarray, budget: int, reason: str
) -> list[Pick]:
    """``picks``, topped up to ``budget`` from ``order`` (when the pool has fewer distinct
    points than the budget, clustering alone cannot give enough rows)."""
    taken = {p.index for p in picks}
    out = list(picks)
    for i in (int(x) for x in order):
        if len(out) >= budget:
            break
        if i not in taken:
            taken.add(i)
            out.append(Pick(i, float(values[i]), None, reason.format(values[i])))
    return out[:budget]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# -- the registry -------------------------------------------------------------------


@dataclass(frozen=True)
class Strategy:
    """A named strategy: what it reads and how it ranks."""

    name: str
    needs_probs: bool
    needs_states: bool
    summary: str
    choose: Callable[[np.ndarray | None, np.ndarray | None, int, int, int], list[Pick]]
    """(probs, states, n_rows, budget, seed) -> the picks, in rank order."""


def _need(x: np.ndarray | None, what: str, name: str) -> np.ndarray:
    if x is None:
        raise ValueError(f"strategy {name!r} needs the {what}")
    return x


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "entropy", True, False, "entropy of the choice probabilities, highest first",
            lambda p, _s, _n, b, _seed: by_entropy(_need(p, "choice probabilities", "entropy"), b),
        ),
        Strategy(
            "margin", True, False, "gap between the top two choices, smallest first",
            lambda p, _s, _n, b, _seed: by_margin(_need(p, "choice probabilities", "margin"), b),
        ),
        Strategy(
            "random", False, False, "a seeded random draw (needs no model)",
            lambda _p, _s, n, b, seed: by_random(n, b, seed),
        ),
        Strategy(
            "balanced", True, False, "smallest margin, in turns over the predicted classes",
            lambda p, _s, _n, b, _seed: balanced(_need(p, "choice probabilities", "balanced"), b),
        ),
        Strategy(
            "cluster-margin", True, True,
            "smallest margin in each k-means cluster of the uncertain rows' hidden states",
            lambda p, s, _n, b, seed: cluster_margin(
                _need(p, "choice probabilities", "cluster-margin"),
                _need(s, "hidden states", "cluster-margin"), b, seed,
            ),
        ),
        Strategy(
            "badge", True, True, "k-means++ seeding over gradient embeddings",
            lambda p, s, _n, b, seed: badge(
                _need(p, "choice probabilities", "badge"), _need(s, "hidden states", "badge"),
                b, seed,
            ),
        ),
        Strategy(
            "typical", False, True,
            "the row nearest each k-means centre of the hidden states (cold start)",
            lambda _p, s, _n, b, seed: typical(_need(s, "hidden states", "typical"), b, seed),
        ),
    )
}  # fmt: skip
