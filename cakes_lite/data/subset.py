"""Small, seeded subsets of real datasets, so a notebook-sized experiment runs on real data.

* :func:`choose_classes` — k of a classification dataset's classes. The choice depends only on
  the seed, the class count and the left/right pairs (never on the clips of a split), so the
  training and the validation split of one seed get the same classes. A flip pair is taken
  whole or not at all, so a mirrored clip's swapped label stays inside the subset.
* :func:`balanced_indices` — up to ``per_class`` samples of each chosen class.
* :func:`choose_cases` — k cases of a segmentation task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def choose_classes(candidates: Sequence[int], k: int, seed: int = 0,
                   pairs: Mapping[int, int] | None = None) -> list[int]:
    """k class ids out of ``candidates``, seeded, keeping flip pairs together.

    Candidates are visited in a seeded random order; a class joins together with its partner
    from ``pairs`` (``{a: b, b: a}``); a pair that would overshoot k, or whose partner is not a
    candidate, is passed over.

    Returns:
        The sorted class ids (k of them).

    Raises:
        ValueError: k is not in [1, len(candidates)], or pairs make exactly k impossible.
    """
    k = _positive(k, "subset classes")
    pool = sorted({int(c) for c in candidates})
    if k > len(pool):
        raise ValueError(f"subset classes: expected at most the {len(pool)} classes that have "
                         f"clips, got {k}")
    pairs, allowed = pairs or {}, set(pool)
    order = np.random.default_rng(np.random.SeedSequence((int(seed), 0x5C1A55))).permutation(
        len(pool))
    chosen: set[int] = set()
    for c in (pool[i] for i in order):
        group = {c, pairs[c]} if c in pairs else {c}
        if group <= allowed and not group & chosen and len(chosen) + len(group) <= k:
            chosen |= group
        if len(chosen) == k:
            return sorted(chosen)
    raise ValueError(f"subset classes: cannot take exactly {k} of {len(pool)} classes while "
                     "keeping left/right pairs together; ask for one more or one fewer")


def balanced_indices(labels: Sequence[int], class_ids: Sequence[int], per_class: int,
                     seed: int = 0) -> list[int]:
    """Indices of up to ``per_class`` samples of each class in ``class_ids`` (all of a class
    that has fewer), drawn without replacement with a seeded generator.

    Returns:
        Sorted sample indices.
    """
    per_class = _positive(per_class, "subset clips per class")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence((int(seed), 0xC11B5)))
    picked: list[int] = []
    for c in sorted(int(c) for c in class_ids):
        members = np.flatnonzero(labels == c)
        if len(members) > per_class:
            members = rng.choice(members, size=per_class, replace=False)
        picked.extend(int(i) for i in members)
    return sorted(picked)


def choose_cases(num_cases: int, k: int, seed: int = 0) -> list[int]:
    """k of ``num_cases`` case indices, seeded (sorted); ValueError if k is out of range."""
    k = _positive(k, "subset cases")
    if k > num_cases:
        raise ValueError(f"subset cases: expected at most the {num_cases} cases available, "
                         f"got {k}")
    rng = np.random.default_rng(np.random.SeedSequence((int(seed), 0xCA5E5)))
    return sorted(int(i) for i in rng.choice(num_cases, size=k, replace=False))
