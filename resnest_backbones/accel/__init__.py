"""Acceleration beside the reference ResNeSt: memory-saving training and a fused inference copy.

* :func:`memory_efficient_training` / :func:`reference_modules` switch a built model's stem, split-attention
  layers and bottlenecks to the memory-saving training modules and back (``create_model`` and the framework
  adapters switch it on; a plain ``ResNeSt(...)`` is the reference).
* :func:`fuse_for_inference` returns an eval-only copy with every batch norm folded into its convolution.
* :mod:`.ops` holds the autograd functions the training modules use (:mod:`.projection`: the Gram-route backward of
  ``bn3(conv3(...))``); :mod:`.norms` the norm kernels they compute, one per norm kind, behind a registry that
  framework adapters add their norms to (:func:`.norms.register_kernel`).

Nothing here changes the parameters, so the reference and the accelerated model load the same checkpoints.
"""
from .inference import ConvAct, InferenceOnly, fold_norm, fusable_pairs, fuse_for_inference
from .training import (
    MemoryEfficientBottleneck,
    MemoryEfficientDeepStem,
    MemoryEfficientSplitAttention,
    memory_efficient_training,
    reference_modules,
)

__all__ = [
    "ConvAct", "InferenceOnly", "MemoryEfficientBottleneck", "MemoryEfficientDeepStem",
    "MemoryEfficientSplitAttention", "fold_norm", "fusable_pairs", "fuse_for_inference", "memory_efficient_training",
    "reference_modules",
]
