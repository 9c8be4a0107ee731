"""The official detectron2 wrapper's ResNeSt backbone as plain functions of a state dict in that wrapper's layout.

Written from the facts of docs/reference.md (section 1: key layout and network; section 4: the DCN block of
``resnest/d2/resnest.py`` / ``resnest/d2/splat.py``), independently of the package's modules, so that the
package's model (and its loaders) are tested against it rather than against themselves. Eval mode (norms use
their running statistics); radix > 1, AVD and average-pool shortcuts as in every official ResNeSt.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import deform_conv2d

EPS = 1e-5  # detectron2's BatchNorm2d / FrozenBatchNorm2d


def _norm(state: Dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    return F.batch_norm(x, state[prefix + "running_mean"], state[prefix + "running_var"], state[prefix + "weight"],
                        state[prefix + "bias"], False, 0.0, EPS)


def official_split_attention(state: Dict[str, Tensor], prefix: str, x: Tensor, *, stride: int, dilation: int,
                             radix: int, cardinality: int, deform_groups: int) -> Tensor:
    """``SplAtConv2d`` (or ``SplAtConv2d_dcn`` with ``DeformBottleneckBlock``'s offset conv ``conv2_offset``
    beside it when the state has one) of the block ``prefix`` (e.g. ``res3.0.``) on conv1's activated output."""
    weight = state[prefix + "conv2.conv.weight"]
    groups = cardinality * radix
    offset_key = prefix + "conv2_offset.weight"
    if offset_key not in state:
        y = F.conv2d(x, weight, None, stride, dilation, dilation, groups)
    else:
        # Grouped by G, bias on, the deformable conv's stride, padding and dilation.
        offset = F.conv2d(x, state[offset_key], state[prefix + "conv2_offset.bias"], stride, dilation, dilation,
                          deform_groups)
        mask = None
        if offset.shape[1] == 27 * deform_groups:  # modulated: torch.chunk(out, 3) -> cat(first two), sigmoid(third)
            first, second, logits = torch.chunk(offset, 3, dim=1)
            offset, mask = torch.cat((first, second), dim=1), logits.sigmoid()
        y = deform_conv2d(x, offset, weight, None, stride, dilation, dilation, mask)
    y = F.relu(_norm(state, prefix + "conv2.bn0.", y))
    batch, channels = y.shape[0], y.shape[1] // radix
    splits = torch.split(y, channels, dim=1)
    gap = F.adaptive_avg_pool2d(sum(splits), 1)
    gap = F.conv2d(gap, state[prefix + "conv2.fc1.weight"], state[prefix + "conv2.fc1.bias"], groups=cardinality)
    gap = F.relu(_norm(state, prefix + "conv2.bn1.", gap))
    atten = F.conv2d(gap, state[prefix + "conv2.fc2.weight"], state[prefix + "conv2.fc2.bias"], groups=cardinality)
    atten = atten.view(batch, cardinality, radix, -1).transpose(1, 2)  # rSoftMax
    atten = F.softmax(atten, dim=1).reshape(batch, -1, 1, 1)
    return sum(a * s for a, s in zip(torch.split(atten, channels, dim=1), splits))


def official_block(state: Dict[str, Tensor], prefix: str, x: Tensor, *, stride: int, avd: bool = True,
                   **split_attention: int) -> Tensor:
    """``BottleneckBlock``/``DeformBottleneckBlock`` (stride in the 3x3 conv, ``avg_down`` shortcut); AVD, when on
    and the block is strided, is a 3x3 average pool after split attention, whose conv then has stride 1."""
    pool = avd and stride > 1
    out = F.relu(_norm(state, prefix + "conv1.norm.", F.conv2d(x, state[prefix + "conv1.weight"])))
    out = official_split_attention(state, prefix, out, stride=1 if pool else stride, **split_attention)
    if pool:
        out = F.avg_pool2d(out, 3, stride, padding=1)
    out = _norm(state, prefix + "conv3.norm.", F.conv2d(out, state[prefix + "conv3.weight"]))
    shortcut = x
    if prefix + "shortcut.weight" in state:
        if stride > 1:
            x = F.avg_pool2d(x, stride, stride, ceil_mode=True, count_include_pad=False)
        shortcut = _norm(state, prefix + "shortcut.norm.", F.conv2d(x, state[prefix + "shortcut.weight"]))
    return F.relu(out + shortcut)


def official_backbone(state: Dict[str, Tensor], x: Tensor, *, avd: bool = True, radix: int = 2,
                      cardinality: int = 1, deform_groups: int = 1) -> Dict[str, Tensor]:
    """``{"res2": ..., "res5": ...}`` of the wrapper's ``ResNeSt`` (deep stem, output stride 32, no dilation) for
    its bare backbone keys ``state``; the number of blocks per stage and the DCN blocks come from the keys."""
    for conv in ("conv1_1", "conv1_2", "conv1_3"):
        weight = state[f"stem.{conv}.weight"]
        x = F.relu(_norm(state, f"stem.{conv}.norm.", F.conv2d(x, weight, None, 2 if conv == "conv1_1" else 1, 1)))
    x = F.max_pool2d(x, 3, 2, 1)
    outputs: Dict[str, Tensor] = {}
    for stage in range(2, 6):
        blocks: List[int] = sorted({int(k.split(".")[1]) for k in state if k.startswith(f"res{stage}.")})
        for i in blocks:
            x = official_block(state, f"res{stage}.{i}.", x, stride=2 if stage > 2 and i == 0 else 1, avd=avd,
                               dilation=1, radix=radix, cardinality=cardinality, deform_groups=deform_groups)
        outputs[f"res{stage}"] = x
    return outputs
