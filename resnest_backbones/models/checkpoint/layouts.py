"""Checkpoint key layouts, renamed to this package's keys (docs/reference.md section 1, "State-dict key layouts").

* ``official``   -- the official ``resnest`` package and timm (``conv1.0``, ``bn1``, ``layer1.0.conv2.fc1``...);
  these are also this package's own ``state_dict()`` keys.
* ``detectron2`` -- the official detectron2 wrapper (``stem.conv1_1``, ``res2.0.conv1.norm``, ``shortcut``, DCN
  offsets beside the block as ``resN.i.conv2_offset``), bare or inside a full model under ``backbone.bottom_up.``.
* ``openmmlab``  -- mmseg/mmdet (``stem.0`` .. ``stem.7``, ``gn*`` norm names), bare or under ``backbone.``.

:func:`install_layout_hooks` gives a model the ``load_state_dict`` pre-hook that renames the detectron2 wrapper's
keys, so every loader that ends in ``load_state_dict`` reads the official zoo files as they are.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Tuple

from torch import Tensor, nn

from ...layers.stem import CONV_A, CONV_B, CONV_C, NORM_A, NORM_B, STEM_INDICES, stem_key
from .report import CheckpointError, LoadReport, is_counter

__all__ = ["DETECTRON2_WRAPPER_PREFIXES", "accept_detectron2_wrapper_layout", "convert_detectron2_wrapper",
           "convert_state_dict", "detect_format", "install_layout_hooks"]

StateDict = Dict[str, Tensor]

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


def detect_format(keys: List[str]) -> str:
    """``official``, ``detectron2`` or ``openmmlab``, from the key names (prefixes allowed)."""
    bare = [re.sub(r"^(module\.)?(backbone\.(bottom_up\.)?)?", "", k) for k in keys]
    if any(k.startswith(DETECTRON2_WRAPPER_PREFIXES) for k in bare):
        return "detectron2"
    if any(k.startswith("stem.0.") for k in bare):
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
        return _shift_poolless_shortcuts(_renamed(state, _MMLAB_RULES)), fmt, not_backbone
    return state, fmt, not_backbone


# ------------------------------------------------------------------------------------- load_state_dict hooks
def accept_detectron2_wrapper_layout(
    module: nn.Module, state_dict: Dict[str, Tensor], prefix: str, local_metadata: Dict, strict: bool,
    missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str],
) -> None:
    """``load_state_dict`` pre-hook: rename the official detectron2 wrapper's keys under ``prefix`` to ours.

    With it, ``torch.load`` + ``load_state_dict``, detectron2's own ``DetectionCheckpointer`` and LazyConfig
    training load the official zoo files (backbone under ``backbone.bottom_up.`` in the wrapper's names, DCN
    offsets as ``resN.i.conv2_offset``) as they are. A wrapper-layout backbone that does not cover this module
    exactly is an error listing the keys, even with ``strict=False``: a half-initialised backbone is never a
    warning. Other layouts (ours = official/timm) pass through untouched.
    """
    keys = [k for k in state_dict if k.startswith(prefix)]
    if not any(k[len(prefix):].startswith(DETECTRON2_WRAPPER_PREFIXES) for k in keys):
        return
    try:
        converted = convert_detectron2_wrapper({k[len(prefix):]: state_dict[k] for k in keys})
    except CheckpointError as error:
        error_msgs.append(str(error))
        return
    for key in keys:
        del state_dict[key]
    own_state = {k: v.detach() for k, v in module.state_dict(keep_vars=True).items()}
    # Dropped: tensors of stages this model does not build, and BN counters that detectron2's FrozenBN lacks.
    built = {k: v for k, v in converted.items() if k in own_state or not (
        is_counter(k) or isinstance(getattr(module, k.split(".")[0], None), nn.Identity))}
    # The wrapper's frozen norms kept no counter where ours (converted from BN) do: keep ours, a counter, not a weight.
    built.update({k: v for k, v in own_state.items() if is_counter(k) and k not in built})
    state_dict.update({prefix + k: v for k, v in built.items()})
    report = LoadReport.compare({prefix + k: v for k, v in built.items()},
                                {prefix + k: v for k, v in own_state.items()}, "detectron2-wrapper")
    if not report.ok:
        error_msgs.append(report.message(
            f"detectron2-wrapper ResNeSt checkpoint under '{prefix}' does not match this {type(module).__name__} "
            f"(wrong variant or DCN settings, or a partial file)", "Use the config the file was trained with."))


def install_layout_hooks(model: nn.Module) -> None:
    """Give ``model`` (a :class:`~resnest_backbones.models.resnest.ResNeSt`) the key-layout pre-hooks."""
    model.register_load_state_dict_pre_hook(accept_detectron2_wrapper_layout)
