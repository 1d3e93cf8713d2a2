"""Shipping a trained model: an inference copy, plans chosen in the network, export.

* :mod:`.inference` — :func:`for_inference` (an eval copy: BatchNorm folded, channels_last_3d
  throughout, plain convs through oneDNN) and :func:`fold_batchnorm`;
* :mod:`.network_tuning` — :func:`tune_plans`: each CAKES layer's plan chosen per NETWORK, by
  timing whole forwards (a plan that wins alone can lose in place); the per-LAYER choice, each
  layer timed on its own, is :mod:`cakes_lite.fast.autotune`;
* :mod:`.export` — ``torch.export`` programs and ONNX files (written atomically), ONNX Runtime
  sessions.

Built on :mod:`cakes_lite.ops`, :mod:`cakes_lite.fast` and the timer of :mod:`cakes_lite.speed`;
nothing in the library imports it.
The public names are ``cakes_lite.for_inference``, ``cakes_lite.fold_batchnorm`` and the module
``cakes_lite.export``.
"""
