"""Does the search follow the data? Motion-only vs appearance-only labels on a deeper net.

The planted tasks (``cakes_lite.data.planted``) put the label only in the temporal order of the
frames (``"temporal"``) or only in static appearance (``"spatial"``). Searched on the same
3-conv, 16-channel ``planted_model(width=16, depth=3)`` over video-123d, a search that follows
the data gives the needed axis's own cheap sub-kernel — k×1×1 for time, 1×k×k for space —
clearly more channels on the task that needs it than on the other task.

Measured with this recipe (64 clips 8×10×10, batch 16, 8 epochs, seeds 0–2; docs/search.md):
performance priority k×1×1 0.35–0.42 of the channels on the temporal task vs 0.08–0.12 on the
spatial one, 1×k×k 0.42–0.50 vs 0.17–0.25; cost priority aimed at half the MACs
(``target=0.5``) k×1×1 0.42–0.54 vs 0.25–0.29, 1×k×k 0.38–0.40 vs 0.10–0.25. The smallest
mean gap was 0.21; the test asks for half of it, 0.10, averaged over two seeds. Cost priority
with the paper's fixed L1 (s = 1e-2) is not tested here: its cost prior decides the layout at
this scale (docs/search.md).
"""

from __future__ import annotations

import pytest

from cakes_lite.data.planted import planted_search

OWN = {"temporal": "kx1x1", "spatial": "1xkxk"}  # each axis's own cheap sub-kernel
RECIPE = dict(space="video-123d", width=16, depth=3, n=64, size=10, batch_size=16, epochs=8)
MARGIN = 0.10


def own_share(result, kind: str) -> float:
    """Share of all searched channels on the own cheap sub-kernel of ``kind``'s axis."""
    total = result.layout.summary()["total"]["counts"]
    return total[OWN[kind]] / sum(total.values())


@pytest.mark.parametrize("mode,extra", [("performance", {}), ("cost", {"target": 0.5})])
def test_each_axis_gets_more_channels_on_the_task_that_needs_it(mode, extra, one_thread):
    runs = {(kind, seed): planted_search(kind, mode, seed, **RECIPE, **extra)
            for kind in ("temporal", "spatial") for seed in (0, 1)}
    assert all(r.history["accuracy"][-1] > 0.6 for r in runs.values())  # both tasks learnt
    layouts = {k: dict(r.layout.summary()["total"]["counts"]) for k, r in runs.items()}
    for kind, other in (("temporal", "spatial"), ("spatial", "temporal")):
        needed = sum(own_share(runs[kind, s], kind) for s in (0, 1)) / 2
        elsewhere = sum(own_share(runs[other, s], kind) for s in (0, 1)) / 2
        assert needed - elsewhere >= MARGIN, (kind, needed, elsewhere, layouts)
