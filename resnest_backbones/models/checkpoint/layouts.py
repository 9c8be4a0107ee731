"""Checkpoint key layouts, renamed to this package's keys (docs/reference.md section 1, "State-dict key layouts").

* ``official``   -- the official ``resnest`` package and timm (``conv1.0``, ``bn1``, ``layer1.0.conv2.fc1``...);
  these are also this package's own ``state_dict()`` keys.
* ``detectron2`` -- the official detectron2 wrapper (``stem.conv1_1``, ``res2.0.conv1.norm``, ``shortcut``, DCN
  offsets beside the block as ``resN.i.conv2_offset``), bare or inside a full model under ``backbone.bottom_up.``.
* ``openmmlab``  -- mmseg/mmdet (``stem.0`` .. ``stem.7``, ``gn*`` norm names), bare or under ``backbone.``.

:func:`install_layout_hooks` gives a model the ``load_state_dict`` pre-hook that renames the detectron2 wrapper's
and OpenMMLab's keys, so every loader that ends in ``load_state_dict`` reads the official zoo files and mmdet's
released detectors as they are.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from torch import Tensor, nn

from ...layers.stem import CONV_A, CONV_B, CONV_C, NORM_A, NORM_B, STEM_INDICES, stem_key
from ...types import StateDict
from .report import CheckpointError, LoadReport, is_counter

__all__ = ["DETECTRON2_WRAPPER_PREFIXES", "OPENMMLAB_STEM", "accept_foreign_layouts", "convert_detectron2_wrapper",
           "convert_state_dict", "detect_format", "install_layout_hooks"]

_D2_RULES: List[Tuple[str, Any]] = [
    (r"^stem\.conv1_1\.norm\.", stem_key(NORM_A)), (r"^stem\.conv1_1\.", stem_key(CONV_A)),
    (r"^stem\.conv1_2\.norm\.", stem_key(NORM_B)), (r"^stem\.conv1_2\.", stem_key(CONV_B)),
    (r"^stem\.conv1_3\.norm\.", "bn1."), (r"^stem\.conv1_3\.", stem_key(CONV_C)),
    (r"^res([2-5])\.", lambda m: f"layer{int(m.group(1)) - 1}."),
    (r"\.conv1\.norm\.", ".bn1."), (r"\.conv3\.norm\.", ".bn3."),
    (r"\.shortcut\.norm\.", ".downsample.2."), (r"\.shortcut\.", ".downsample.1."),
    # DCN: the wrapper keeps each block's offset conv beside split attention (resN.i.conv2_offset, DCNv1 or
    # modulated DCNv2, any number of deformable groups); ours sits inside the deformable conv it feeds.
    (r"\.conv2_offset\.", ".conv2.conv.conv_offset."),
]
#: Key prefixes that only the official detectron2 wrapper's layout has (bare, without ``backbone.bottom_up.``).
DETECTRON2_WRAPPER_PREFIXES: Tuple[str, ...] = ("stem.conv1_1.", "res2.", "res3.", "res4.", "res5.")

#: Key prefix that only OpenMMLab's layout has (its stem, one ``Sequential``; ours and the official: ``conv1.0``).
OPENMMLAB_STEM = "stem.0."
# OpenMMLab's stem is one Sequential with our indices, plus the network's ``bn1`` as its 8th layer.
_MMLAB_RULES: List[Tuple[str, Any]] = [(rf"^stem\.{i}\.", stem_key(i)) for i in STEM_INDICES] + [
    (r"^stem\.7\.", "bn1."), (r"\.gn([0-3])\.", r".bn\1."),
]
# OpenMMLab's ResLayer puts no pooling layer in a stride-1 shortcut (res2, dilated stages), so there the conv and
# norm are ``downsample.0``/``.1`` where ours (official/timm) are ``.1``/``.2`` behind an identity/pool slot.
_MMLAB_POOLLESS_SHORTCUT = re.compile(r"^(layer[1-4]\.0\.downsample\.)([01])\.")

# Backbone prefixes inside full-model checkpoints (detectron2 FPN models, then detectron2 C4 / OpenMMLab models);
# the other keys of such checkpoints are not the backbone's.
_PREFIXES = ("backbone.bottom_up.", "backbone.")


def _renamed(state: Mapping[str, Any], rules: List[Tuple[str, Any]]) -> Dict[str, Any]:
    converted: Dict[str, Any] = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted


def convert_detectron2_wrapper(state: Mapping[str, Any]) -> Dict[str, Any]:
    """Rename the official detectron2 wrapper's bare backbone keys to this package's (= official) keys.

    Raises:
        CheckpointError: for the wrapper's radix-1 files, which have a plain 3x3 conv instead of split attention.
    """
    plain = [k for k in state if re.search(r"\.conv2\.(weight|norm\.)", k)]
    if plain:
        raise CheckpointError(f"this detectron2-wrapper checkpoint has a plain 3x3 conv where ResNeSt has split "
                              f"attention ({plain[0]}, ...): the official wrapper dropped split attention for "
                              f"radix 1, so these weights do not map onto ResNeSt; use the official ImageNet file")
    return _renamed(state, _D2_RULES)


def _shift_poolless_shortcuts(state: StateDict) -> StateDict:
    poolless = {m.group(1) for m in map(_MMLAB_POOLLESS_SHORTCUT.match, state) if m and m.group(2) == "0"}
    shifted: StateDict = {}
    for key, value in state.items():
        match = _MMLAB_POOLLESS_SHORTCUT.match(key)
        if match and match.group(1) in poolless:
            key = f"{match.group(1)}{int(match.group(2)) + 1}.{key[match.end():]}"
        shifted[key] = value
    return shifted


def _convert_openmmlab(state: StateDict) -> StateDict:
    """Rename mmseg's/mmdet's bare ResNeSt backbone keys to this package's (= official) keys."""
    return _shift_poolless_shortcuts(_renamed(state, _MMLAB_RULES))


def detect_format(keys: List[str]) -> str:
    """``official``, ``detectron2`` or ``openmmlab``, from the key names (prefixes allowed)."""
    bare = [re.sub(r"^(module\.)?(backbone\.(bottom_up\.)?)?", "", k) for k in keys]
    if any(k.startswith(DETECTRON2_WRAPPER_PREFIXES) for k in bare):
        return "detectron2"
    if any(k.startswith(OPENMMLAB_STEM) for k in bare):
        return "openmmlab"
    if any(k.startswith((stem_key(CONV_A), "layer1.", "bn1.")) for k in bare):
        return "official"
    raise CheckpointError(f"not a ResNeSt checkpoint in a known format (official/timm, detectron2, OpenMMLab); "
                          f"first keys: {keys[:5]}")


def convert_state_dict(state_dict: Mapping[str, Tensor]) -> Tuple[StateDict, str, Dict[str, str]]:
    """Rename a checkpoint's backbone tensors to this package's (= official) keys.

    Returns:
        ``(converted, source_format, not_backbone)`` where ``not_backbone`` maps the keys of a full-model
        checkpoint that are not backbone tensors to the reason they were left out.
    """
    state = {re.sub(r"^module\.", "", k): v for k, v in state_dict.items()}
    fmt = detect_format(list(state))
    prefix = next((p for p in _PREFIXES if any(k.startswith(p) for k in state)), None)
    not_backbone: Dict[str, str] = {}
    if prefix:
        not_backbone = {k: "not a backbone tensor (full-model checkpoint)" for k in state if not k.startswith(prefix)}
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if fmt == "detectron2":
        return convert_detectron2_wrapper(state), fmt, not_backbone
    if fmt == "openmmlab":
        return _convert_openmmlab(state), fmt, not_backbone
    return state, fmt, not_backbone


# ------------------------------------------------------------------------------------- load_state_dict hook
#: The layouts the pre-hook renames, by their names in reports.
_FOREIGN_LAYOUTS = {"detectron2": "detectron2-wrapper", "openmmlab": "OpenMMLab"}


def _foreign_layout(bare_keys: List[str]) -> Optional[str]:
    """``detectron2`` or ``openmmlab`` when a module's own keys are in that layout; ``None`` for ours (or none)."""
    if any(k.startswith(DETECTRON2_WRAPPER_PREFIXES) for k in bare_keys):
        return "detectron2"
    return "openmmlab" if any(k.startswith(OPENMMLAB_STEM) for k in bare_keys) else None


def _not_built(module: nn.Module, key: str) -> bool:
    """Whether ``key`` belongs to a stage ``module`` does not build (its outputs end before it)."""
    return isinstance(getattr(module, key.split(".")[0], None), nn.Identity)


def accept_foreign_layouts(
    module: nn.Module, state_dict: Dict[str, Tensor], prefix: str, local_metadata: Dict, strict: bool,
    missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str],
) -> None:
    """``load_state_dict`` pre-hook: rename the detectron2 wrapper's or OpenMMLab's ResNeSt keys under ``prefix``.

    With it, every loader that ends in ``load_state_dict`` reads the published whole-model files as they are:
    ``torch.load`` + ``load_state_dict``, detectron2's ``DetectionCheckpointer`` and LazyConfig training (the official
    zoo: backbone under ``backbone.bottom_up.`` in the wrapper's names, DCN offsets as ``resN.i.conv2_offset``),
    mmengine's ``load_checkpoint``/``load_from`` and mmdet's ``tools/test.py`` (mmdet's released detectors: backbone
    under ``backbone.`` in OpenMMLab's names). A foreign-layout backbone that does not cover the module exactly
    (missing, unexpected or mis-shaped tensors) raises :class:`CheckpointError` naming the keys, whatever
    ``strict`` says: mmengine's loaders pass ``strict=False`` and would only log it, and a half-initialised
    backbone is never a warning. Tensors of stages the module does not build are dropped; where the file keeps no
    BN counters (detectron2's FrozenBN), the module's stay. Our own (= official/timm) keys pass through untouched.
    """
    keys = [k for k in state_dict if k.startswith(prefix)]
    bare = {k[len(prefix):]: state_dict[k] for k in keys}
    layout = _foreign_layout(list(bare))
    if layout is None:
        return
    converted = convert_detectron2_wrapper(bare) if layout == "detectron2" else _convert_openmmlab(bare)
    own = {k: v.detach() for k, v in module.state_dict(keep_vars=True).items()}
    built = {k: v for k, v in converted.items() if k in own or not (is_counter(k) or _not_built(module, k))}
    built.update({k: v for k, v in own.items() if is_counter(k) and k not in built})
    name = _FOREIGN_LAYOUTS[layout]
    report = LoadReport.compare({prefix + k: v for k, v in built.items()}, {prefix + k: v for k, v in own.items()},
                                name)
    if not report.ok:
        variant = getattr(module, "variant", None)
        raise report.error(
            f"the {name} ResNeSt checkpoint under '{prefix}' does not fit this {type(module).__name__}"
            f"{f'({variant!r})' if variant else ''} (wrong variant or DCN settings, or a partial file)",
            "Use the config the file was trained with (docs/model_zoo.md).")
    for key in keys:
        del state_dict[key]
    state_dict.update({prefix + k: v for k, v in built.items()})


def install_layout_hooks(model: nn.Module) -> None:
    """Give ``model`` (a :class:`~resnest_backbones.models.resnest.ResNeSt`) the key-layout pre-hook
    (:func:`accept_foreign_layouts`)."""
    model.register_load_state_dict_pre_hook(accept_foreign_layouts)
