"""Training code for mde_ros models (not part of the runtime package).

Layout follows monodepth2 / Depth-Anything metric_depth: ``datasets/`` (readers for the real
on-disk formats), ``transforms`` (paired augmentations that keep intrinsics consistent),
``losses``, ``config`` (YAML recipes in ``configs/``), ``train`` / ``evaluate`` / ``export_model``.
"""
