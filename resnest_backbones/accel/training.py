"""Memory-saving training for ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks"), switched per model.

The reference modules (:class:`~resnest_backbones.layers.DeepStem`,
:class:`~resnest_backbones.layers.SplitAttention`, :class:`~resnest_backbones.models.resnest.Bottleneck`) are one
plain path. The subclasses here compute the same values, but in training they route ``conv -> batch norm ->
ReLU -> consumer`` chains through :mod:`resnest_backbones.accel.ops`, which keep the norm's input instead of the
ReLU output for backward (less activation memory, same gradients). Where the ops do not apply (eval mode,
``torch.no_grad``, TorchScript, tracing, ``torch.compile``, norms the ops do not compute (see
:func:`resnest_backbones.accel.ops.supports`: e.g. frozen batch norm, LayerNorm), DropBlock or
a pool between the norm and the conv), they run the reference forward. Under ``torch.compile`` a bottleneck's
``bn3(conv3(...))`` is still computed without keeping conv3's output, by the custom op of
:mod:`resnest_backbones.accel.compiled`; the compiler recomputes the cheap maps itself.

:func:`memory_efficient_training` swaps them into a built model and :func:`reference_modules` swaps them back.
The subclasses add no state (no parameter, buffer or attribute), so the swap changes only the class of
existing submodules: parameters, buffers, ``state_dict`` keys and an optimizer's references stay the same.
"""
from __future__ import annotations

import copy
from typing import Dict, Type, TypeVar

from torch import Tensor, nn

from ..layers.split_attention import SplitAttention
from ..layers.stem import ACT_A, ACT_B, DeepStem
from ..models.resnest import Bottleneck
from . import compiled, ops

__all__ = [
    "MemoryEfficientBottleneck", "MemoryEfficientDeepStem", "MemoryEfficientSplitAttention",
    "memory_efficient_training", "reference_modules",
]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _reference_twin(module: nn.Module, reference: Type[nn.Module]) -> nn.Module:
    """A shallow copy of ``module`` whose class is ``reference`` (same parameters, buffers and children).

    ``torch.jit.script`` calls ``__prepare_scriptable__`` on every submodule and compiles what it returns: the
    reference forward, which TorchScript can compile (the ops here are Python autograd functions, which it
    cannot). The twin gets its own ``_modules`` dict because torch replaces the children in that dict in place.
    """
    twin = copy.copy(module)
    twin._modules = dict(module._modules)
    twin.__class__ = reference
    return twin


class MemoryEfficientDeepStem(DeepStem):
    """Deep stem whose 2nd and 3rd convolutions recompute their input ``relu(bn(x))`` in backward."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if not self._uses_ops():
            return super().forward(x)
        x = ops.bn_relu_conv(self.conv_a(x), self.norm_a, self.conv_b)
        return ops.bn_relu_conv(x, self.norm_b, self.conv_c)

    def _uses_ops(self) -> bool:
        # Images rarely need gradients: the first conv's weight decides whether the norms' inputs do.
        source = self.conv_a.weight
        return (isinstance(self[ACT_A], nn.ReLU) and isinstance(self[ACT_B], nn.ReLU)
                and ops.supports_conv(self.conv_b) and ops.supports_conv(self.conv_c)
                and ops.supports(self.norm_a, source) and ops.supports(self.norm_b, source))

    def __prepare_scriptable__(self) -> nn.Module:
        return _reference_twin(self, DeepStem)


class MemoryEfficientSplitAttention(SplitAttention):
    """Split attention that recomputes its activated splits ``relu(bn0(x))`` in backward instead of keeping them
    (and, called by a bottleneck, its output and the projection after it: :meth:`attend_and_project`)."""

    def attend(self, x: Tensor) -> Tensor:
        if not self._uses_ops(x):
            return super().attend(x)
        z, means, scale, shift, cache = ops.bn_relu(x, self.bn0)
        return ops.combine_splits_recompute(z, self.weights_from_means(means), x, scale, shift, cache)

    def attend_and_project(self, x: Tensor, conv: nn.Conv2d, norm: nn.Module) -> Tensor:
        """``norm(conv(self.attend(x)))`` (a bottleneck's ``bn3(conv3(...))``) keeping neither the attention's
        output nor the convolution's output for backward (see ``ops.combine_splits_conv_bn``)."""
        if not (self._uses_ops(x) and ops.supports_projection(conv) and ops.supports(norm, x)):
            return norm(conv(self.attend(x)))
        z, means, scale, shift, cache = ops.bn_relu(x, self.bn0)
        return ops.combine_splits_conv_bn(z, self.weights_from_means(means), x, scale, shift, cache, conv, norm)

    def _uses_ops(self, x: Tensor) -> bool:
        return isinstance(self.drop_block, nn.Identity) and ops.supports(self.bn0, x)

    def __prepare_scriptable__(self) -> nn.Module:
        return _reference_twin(self, SplitAttention)


class MemoryEfficientBottleneck(Bottleneck):
    """Bottleneck whose split convolution recomputes its input ``relu(bn1(conv1(x)))`` in backward, and whose
    ``bn3(conv3(...))`` keeps neither its input (split attention's output) nor the norm's input when no pool or
    DropBlock stands between them."""

    def _residual(self, x: Tensor) -> Tensor:
        if not self._uses_ops(x):
            return super()._residual(x)
        out = ops.bn_relu_conv(self.conv1(x), self.bn1, self.conv2.conv)
        if self._projects_directly():
            return self._add_shortcut(self.conv2.attend_and_project(out, self.conv3, self.bn3), x)
        return self._project_and_add(self.conv2.attend(out), x)

    def _project_and_add(self, out: Tensor, x: Tensor) -> Tensor:
        # Under torch.compile (where the ops above stand aside), bn3(conv3(...)) as the custom op that keeps no
        # conv3 output: the one saving the compiler's own recomputation cannot make (accel/compiled.py).
        if self._projects_directly() and compiled.supports(self.conv3, self.bn3, out):
            return self._add_shortcut(compiled.projection_bn(out, self.conv3, self.bn3), x)
        return super()._project_and_add(out, x)

    def _projects_directly(self) -> bool:
        """Whether conv3 takes split attention's output as it is (no pool or DropBlock in between)."""
        return isinstance(self.avd_last, nn.Identity) and isinstance(self.drop_block3, nn.Identity)

    def _uses_ops(self, x: Tensor) -> bool:
        return (isinstance(self.drop_block1, nn.Identity) and isinstance(self.avd_first, nn.Identity)
                and isinstance(self.conv2, MemoryEfficientSplitAttention) and ops.supports_conv(self.conv2.conv)
                and ops.supports(self.bn1, x, self.conv1.weight))

    def __prepare_scriptable__(self) -> nn.Module:
        return _reference_twin(self, Bottleneck)


#: Reference class -> its memory-saving subclass. Exact types only: other subclasses keep their own forward.
ACCELERATED: Dict[Type[nn.Module], Type[nn.Module]] = {
    DeepStem: MemoryEfficientDeepStem,
    SplitAttention: MemoryEfficientSplitAttention,
    Bottleneck: MemoryEfficientBottleneck,
}
REFERENCE: Dict[Type[nn.Module], Type[nn.Module]] = {fast: ref for ref, fast in ACCELERATED.items()}


def _swap_classes(model: ModuleT, table: Dict[Type[nn.Module], Type[nn.Module]]) -> ModuleT:
    for module in model.modules():
        new_class = table.get(type(module))
        if new_class is not None:
            module.__class__ = new_class
    return model


def memory_efficient_training(model: ModuleT) -> ModuleT:
    """Turn the memory-saving training path on in ``model`` (in place; returns ``model``).

    Every stem, split-attention layer and bottleneck of exactly the reference class becomes its
    ``MemoryEfficient*`` subclass. The model's own class (an adapter subclass of ``ResNeSt``) is not changed.
    Models built by ``create_model`` and by the framework adapters already have it on.

    ``torch.jit.script(model)`` compiles the reference forward (see ``__prepare_scriptable__``); torch writes
    the prepared reference twins back into their parents, so afterwards ``model`` itself runs the reference
    modules: call this function again to train it eagerly with the memory savings.
    """
    return _swap_classes(model, ACCELERATED)


def reference_modules(model: ModuleT) -> ModuleT:
    """Undo :func:`memory_efficient_training` (in place; returns ``model``): every module runs the reference path."""
    return _swap_classes(model, REFERENCE)
