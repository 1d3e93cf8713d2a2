"""The "Automatic" in CAKES: supernet, importance, sparsity, layout derivation, the search loop.

* :mod:`.layer` — :class:`SearchConv3d`, the supernet layer (performance / cost priority), and
  :func:`rank_candidates`
* :mod:`.bn_pairing` — which BatchNorm consumes which conv's output
* :mod:`.supernet` — :func:`supernet` (any model → SearchConv3d under the conv names),
  :func:`search_layers`
* :mod:`.sparsity` — :func:`importance`, :func:`sparsity_step`, :func:`param_groups`
* :mod:`.derive` — :func:`derive_layout` (per layer as in the paper, or under a global budget)
* :mod:`.run` — :func:`run_search` → :class:`SearchResult` (warm-up and L1 step: :mod:`.steps`;
  cost priority aimed at a cost: :mod:`.target`; what a search says about itself: :mod:`.monitor`)
* :mod:`.ablate` — :func:`ablate`: is |γ| importance? remove top / bottom / random candidates

Walkthrough: ``notebooks/02_search.ipynb``.
"""

from .ablate import Ablation, ablate
from .derive import BudgetWarning, derive_layout
from .run import DEFAULT_SPARSITY, SearchResult, run_search
from .sparsity import cost_weights, importance, param_groups, sparsity_step
from .layer import SearchConv3d, rank_candidates
from .supernet import search_layers, supernet

__all__ = [
    "Ablation", "BudgetWarning", "DEFAULT_SPARSITY", "SearchConv3d", "SearchResult", "ablate",
    "cost_weights", "derive_layout", "importance", "param_groups", "rank_candidates",
    "run_search", "search_layers", "sparsity_step", "supernet",
]
