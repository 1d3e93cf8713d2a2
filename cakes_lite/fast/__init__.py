"""How one CAKES layer runs fast: the machinery behind the forward of :class:`cakes_lite.CAKESConv3d`
(and of the search's :class:`cakes_lite.SearchConv3d`). Everything here works on ONE LAYER:

* :mod:`.plans` — the forward *plans* (``PLANS``: tap folding, ``mixed``, one ``conv3d`` per
  group, ``direct``, ``dense``), each a list of grouped conv calls prepared from a layer's
  weights and run on an input;
* :mod:`.assemble` — the output of a plan's calls written in one pass (copies and depth-shifted
  adds), forward and backward;
* :mod:`.autotune` — which plan a layer runs: measured once per input shape, the layer timed on
  its own, and cached (like ``cudnn.benchmark``); :func:`set_autotune`.

Used by :mod:`cakes_lite.ops` and :mod:`cakes_lite.search.layer`. Choosing plans for a whole
NETWORK, by timing its full forward, is deployment: :mod:`cakes_lite.deploy.network_tuning`.
This wing imports nothing of cakes_lite outside it but :mod:`cakes_lite.speed` (the timer).
"""
