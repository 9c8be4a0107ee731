"""Acceleration beside the reference ResNeSt: memory-saving training and a fused inference copy.

* :func:`memory_efficient_training` / :func:`reference_modules` switch a built model's stem, split-attention
  layers and bottlenecks to the memory-saving training modules and back (``create_model`` and the framework
  adapters switch it on; a plain ``ResNeSt(...)`` is the reference).
* :func:`fuse_for_inference` returns an eval-only copy with every batch norm folded into its convolution;
  :func:`fuse_resnest_modules` puts such copies in place of the ResNeSt inside a whole model (the inference paths
  of every framework adapter do, unless told not to).
* :mod:`.ops` holds the autograd functions the training modules use (:mod:`.projection`: the Gram-route backward of
  ``bn3(conv3(...))``); :mod:`.norms` the norm kernels they compute, one per norm kind, behind a registry that
  framework adapters add their norms to (:func:`.norms.register_kernel`); :mod:`.compiled` the custom op that keeps
  the bottleneck's conv3 output out of memory under ``torch.compile``.

Nothing here changes the parameters, so the reference and the accelerated model load the same checkpoints.
"""
from .inference import ConvAct, InferenceOnly, fold_norm, fusable_pairs, fuse_for_inference, fuse_resnest_modules
from .training import (
    MemoryEfficientBottleneck,
    MemoryEfficientDeepStem,
    MemoryEfficientSplitAttention,
    memory_efficient_training,
    reference_modules,
)

__all__ = [
    "ConvAct", "InferenceOnly", "MemoryEfficientBottleneck", "MemoryEfficientDeepStem",
    "MemoryEfficientSplitAttention", "fold_norm", "fusable_pairs", "fuse_for_inference", "fuse_resnest_modules",
    "memory_efficient_training", "reference_modules",
]
