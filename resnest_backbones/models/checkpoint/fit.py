"""Whether a whole-model checkpoint fits a model: the one decision every framework's tools and predictors make.

Two modes, said by the call site:

* ``"exact"`` (evaluation, ``--resume``, predictors): the file covers the model tensor for tensor, shapes equal;
  anything else is a :class:`CheckpointError` naming the keys.
* ``"finetune"`` (the start of a training from ``load_from`` / ``MODEL.WEIGHTS`` / ``train.init_checkpoint`` /
  ``--init-from``): as exact, except that the layers whose shape follows the class count start fresh when the file
  was trained for another class count (one line says which, with both counts), and whole heads the model does not
  have (a Mask R-CNN file fine-tuned on boxes only) are listed and dropped. Every other misfit -- the backbone
  (always), the neck, a head's hidden layers, a tensor the model has and the file lacks -- is still an error.

Which tensors follow the class count is learnt, not listed: :meth:`ClassLayers.from_shapes` compares the model's
state-dict shapes built at N and at N+1 classes (``meta`` device, no memory), so every classifier and
class-specific box/mask/segmentation predictor of any head (each cascade stage) is found, and each such tensor's
size along its class dimension is ``per_class * classes + constant``. Solving that for a file's tensors gives the
file's class count, which must be one whole number across the head.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from .report import CheckpointError, LoadReport, is_counter, listing

__all__ = ["ClassLayers", "FitDecision", "MODES", "class_names", "decide_fit", "load_fitting"]

MODES = ("exact", "finetune")
Shape = Tuple[int, ...]


@dataclass(frozen=True)
class _Rule:
    shape: Shape  # the tensor's shape in the model (at the model's class count)
    dim: int  # the dimension that grows with the class count
    per_class: int
    constant: int

    def classes(self, shape: Shape) -> Optional[int]:
        """The class count a tensor of ``shape`` was made for, or None when no whole count gives it."""
        if len(shape) != len(self.shape) or any(a != b for d, (a, b) in enumerate(zip(shape, self.shape))
                                                if d != self.dim):
            return None
        count, rest = divmod(shape[self.dim] - self.constant, self.per_class)
        return count if rest == 0 and count >= 1 else None


@dataclass(frozen=True)
class ClassLayers:
    """The tensors of a model whose shape follows its class count (``num_classes``), and how."""

    num_classes: int
    rules: Mapping[str, _Rule] = field(default_factory=dict)

    @classmethod
    def from_shapes(cls, at_n: Mapping[str, Sequence[int]], at_n1: Mapping[str, Sequence[int]],
                    num_classes: int) -> "ClassLayers":
        """From the model's state-dict shapes at ``num_classes`` (``at_n``) and at one class more (``at_n1``)."""
        rules = {}
        for key, shape in at_n.items():
            other = tuple(at_n1.get(key, shape))
            shape = tuple(shape)
            if other == shape:
                continue
            grown = [d for d, (a, b) in enumerate(zip(shape, other)) if a != b]
            if len(other) != len(shape) or len(grown) != 1 or other[grown[0]] < shape[grown[0]]:
                raise ValueError(f"{key}: shape {list(shape)} at {num_classes} classes, {list(other)} at "
                                 f"{num_classes + 1}: not one dimension growing with the class count")
            dim = grown[0]
            per_class = other[dim] - shape[dim]
            rules[key] = _Rule(shape, dim, per_class, shape[dim] - per_class * num_classes)
        return cls(num_classes, rules)

    @classmethod
    def from_builder(cls, shapes_at: Callable[[int], Mapping[str, Sequence[int]]],
                     num_classes: int) -> "ClassLayers":
        """``shapes_at(n)``: the model's state-dict shapes built for ``n`` classes (on the meta device)."""
        return cls.from_shapes(shapes_at(num_classes), shapes_at(num_classes + 1), num_classes)


@dataclass
class FitDecision:
    """What to do with a checkpoint's tensors: load all but ``fresh`` (class layers left at their initialisation)
    and ``dropped`` (tensors of heads the model does not have); ``line`` says so (None when nothing is reset)."""

    fresh: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    file_classes: Optional[int] = None
    line: Optional[str] = None


def _absent_head(key: str, model_keys: Sequence[str]) -> Optional[str]:
    """The head (a module whose name ends in ``head``, outermost first) that ``key`` belongs to and the model has
    none of, or None."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        prefix = ".".join(parts[: i + 1]) + "."
        if part.endswith("head") and not any(k.startswith(prefix) for k in model_keys):
            return prefix[:-1]
    return None


def decide_fit(comparison: LoadReport, model_keys: Sequence[str], *, mode: str, source: str,
               class_layers: Optional[ClassLayers] = None, remedy: str = "",
               saved_classes: Optional[Sequence[str]] = None,
               classes: Optional[Sequence[str]] = None) -> FitDecision:
    """Decide, from the key-by-key ``comparison`` of a checkpoint (``source``) with a model (whose state-dict keys
    are ``model_keys``), what loads and what starts fresh (see the module's docstring). Fine-tuning from a file of
    the same class count whose class names (``saved_classes``, where it carries them) are not the data's
    (``classes``), everything loads and the decision's line says so.

    Raises:
        CheckpointError: anything but the allowed differences of ``mode``; the message names the keys and what
            to do (``remedy`` is added).
        ValueError: an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {MODES}")
    rules = class_layers.rules if class_layers is not None else {}
    decision = FitDecision()
    counts: Dict[str, int] = {}
    wrong_shape = []
    for key, file_shape, model_shape in comparison.mismatched:
        count = rules[key].classes(tuple(file_shape)) if key in rules else None
        if count is None:
            wrong_shape.append((key, file_shape, model_shape))
        else:
            counts[key] = count
    unexpected, absent_heads = [], set()
    for key in comparison.unexpected:
        head = _absent_head(key, model_keys) if mode == "finetune" else None
        (decision.dropped if head else unexpected).append(key)
        absent_heads.add(head)
    if len(set(counts.values())) > 1:  # the class layers disagree: not one whole count across the head
        wrong_shape += [m for m in comparison.mismatched if m[0] in counts]
        counts = {}
    if counts and mode == "exact":
        file_classes = next(iter(counts.values()))
        raise LoadReport(comparison.source_format, mismatched=[m for m in comparison.mismatched if m[0] in counts]
                         ).error(f"{source} holds a model of {file_classes} classes; this config's model has "
                                 f"{class_layers.num_classes}",
                                 f"evaluate it with num_classes={file_classes} in the config, or train with it "
                                 f"as the starting point (fine-tuning: its class layers then start fresh)")
    rest = replace(comparison, missing=[k for k in comparison.missing if not is_counter(k)],
                   unexpected=sorted(unexpected), mismatched=sorted(wrong_shape))
    if not rest.ok:
        raise rest.error(f"{source} does not fit the model of this config outside its class layers"
                         if mode == "finetune" else f"{source} does not cover the model of this config exactly",
                         remedy)
    decision.fresh = sorted(counts)
    decision.dropped.sort()
    decision.file_classes = next(iter(counts.values()), None)
    parts = []
    if decision.fresh:
        parts.append(f"{len(decision.fresh)} class layers start fresh (checkpoint: {decision.file_classes} "
                     f"classes, model: {class_layers.num_classes}): {listing(decision.fresh, 12)}")
    if decision.dropped:
        parts.append(f"dropped {len(decision.dropped)} tensors of heads this model does not have: "
                     f"{', '.join(sorted(absent_heads - {None}))}")
    if parts:
        decision.line = f"fine-tuning from {source}: " + "; ".join(parts)
    elif mode == "finetune":
        decision.line = _other_classes_line(source, saved_classes, classes)
    return decision


def load_fitting(model: nn.Module, state: Mapping[str, Tensor], *, mode: str, source: str,
                 class_layers: Union[ClassLayers, Callable[[], ClassLayers], None] = None, remedy: str = "",
                 source_format: str = "whole-model", saved_classes: Optional[Sequence[str]] = None,
                 classes: Optional[Sequence[str]] = None) -> FitDecision:
    """Load a whole-model ``state`` into ``model`` as :func:`decide_fit` decides (the model's own
    ``load_state_dict``, so the backbone's layout pre-hooks rename foreign layouts). Tensors whose shape differs
    from the model's are never loaded; the decision says which of them may stay at their initialisation.
    ``class_layers`` may be a function making them, called only when some shape differs; ``saved_classes`` and
    ``classes`` as :func:`decide_fit` takes them.

    Raises:
        CheckpointError: the checkpoint does not fit (see :func:`decide_fit`); the model may be partly loaded then.
    """
    expected = model.state_dict()
    # Modules that rename keys while loading (the ResNeSt's layout pre-hooks) are judged after the renaming, by torch
    # (a key of a foreign layout may share a name, not a shape, with ours); class layers are never among them.
    renaming = [f"{name}." if name else "" for name, m in model.named_modules() if m._load_state_dict_pre_hooks]
    mismatched = sorted((k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state.items()
                        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
                        and not any(k.startswith(prefix) for prefix in renaming))
    skip = {k for k, _, _ in mismatched}
    loadable = type(state)((k, v) for k, v in state.items() if k not in skip) if skip else state
    if skip and hasattr(state, "_metadata"):
        loadable._metadata = state._metadata  # type: ignore[attr-defined]
    try:
        result = model.load_state_dict(loadable, strict=False)
    except RuntimeError as error:  # a layout pre-hook refusing a partial backbone, or a renamed tensor mis-shaped
        raise CheckpointError(f"{source} does not fit the model: {error}" + (f"\n{remedy}" if remedy else "")) \
            from None
    comparison = LoadReport.from_incompatible(source_format, expected, result.missing_keys, result.unexpected_keys,
                                              mismatched)  # the skipped (mis-shaped) keys are not counted missing
    if callable(class_layers):
        class_layers = class_layers() if mismatched else None
    return decide_fit(comparison, list(expected), mode=mode, source=source, class_layers=class_layers,
                      remedy=remedy, saved_classes=saved_classes, classes=classes)


def class_names(saved: Optional[Sequence[str]], configured: Optional[Sequence[str]], num_classes: int,
                warn: Callable[[str], None]) -> List[str]:
    """The class names to draw a model of ``num_classes`` classes with: the names its file carries (``saved``),
    else the config's data set's (``configured``), else numbers. A list of another length is passed over; saved
    names that differ from the config's (same count) win, with a warning naming both lists."""
    saved = list(saved) if saved and len(saved) == num_classes else None
    configured = list(configured) if configured and len(configured) == num_classes else None
    if saved and configured and saved != configured:
        warn(f"the checkpoint's class names {saved} differ from those of the config's data set {configured}: "
             f"drawing the checkpoint's")
    return saved or configured or [str(i) for i in range(num_classes)]


def _other_classes_line(source: str, saved: Optional[Sequence[str]],
                        classes: Optional[Sequence[str]]) -> Optional[str]:
    """The line for a fine-tuning start from a file of the same class count but other class names (``saved``, the
    names it carries, vs the data's ``classes``): every tensor loads, its class layers only as a starting point;
    None when the names agree or either is unknown."""
    if not saved or not classes or list(saved) == list(classes):
        return None
    return (f"starting from {source}: the same class count, every tensor loaded; its classes {list(saved)} are not "
            f"the data's {list(classes)}, so its class layers are only the starting point")
