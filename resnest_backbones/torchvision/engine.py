"""Train and evaluate a torchvision detector in a plain PyTorch loop (what ``tools/torchvision_train.py`` runs).

:func:`train`: SGD with momentum, linear warm-up then cosine decay, a seeded order over the dataset, losses
logged; :func:`evaluate`: detections on a :class:`~.data.CocoBoxes` set, with COCO box AP/AP50 when pycocotools is
installed; :func:`cpu_threads`: the thread count for a CPU run on a possibly busy machine.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import time
from typing import Any, Callable, Dict, List

import torch
from torch import nn

from .data import CocoBoxes

__all__ = ["cpu_threads", "evaluate", "train"]


def cpu_threads(requested: int, log: Callable[[str], None] = print) -> int:
    """``requested`` CPU threads (> 0), or for 0 torch's default, or 1 when the machine is already busy.

    Measured on a shared 2-core machine: with other jobs running, 2 threads took 7x longer than 1 (every parallel
    region waits for its slowest, starved thread). Sets torch's thread count when it returns a positive number.
    """
    threads = requested
    if threads == 0 and hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1):
        threads = 1
        log("the machine is busy (load average >= cores): using 1 CPU thread (--threads N to override)")
    if threads > 0:
        torch.set_num_threads(threads)
    return threads


def train(model: nn.Module, dataset: CocoBoxes, *, iters: int, batch_size: int, lr: float, seed: int,
          device: torch.device, log: Callable[[str], None] = print) -> List[float]:
    """Train ``model`` for ``iters`` steps of ``batch_size`` images; returns the loss of every step.

    Raises:
        SystemExit: the loss is not finite (with what to change).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = min(50, max(1, iters // 4))
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay
        optimizer, lambda i: (i + 1) / warmup if i < warmup
        else 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, iters - warmup))))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    position, start, history = 0, time.time(), []
    model.train()
    for step in range(1, iters + 1):
        batch = [dataset[int(order[(position + k) % len(dataset)])] for k in range(batch_size)]
        position += batch_size
        losses = model([image.to(device) for image, _ in batch],
                       [{k: v.to(device) for k, v in target.items()} for _, target in batch])
        loss = sum(losses.values())
        history.append(loss.item())
        if not torch.isfinite(loss):
            raise SystemExit(f"step {step}: loss is {loss.item()}; lower --lr")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step == 1 or step % max(1, iters // 20) == 0 or step == iters:
            parts = ", ".join(f"{k.replace('loss_', '')} {v.item():.3f}" for k, v in losses.items())
            log(f"step {step:4d}/{iters}  loss {loss.item():.3f} ({parts})  "
                f"lr {optimizer.param_groups[0]['lr']:.4f}  {time.time() - start:.0f} s")
    tail = history[-max(1, len(history) // 5):]
    log(f"train: loss {history[0]:.3f} at step 1, {sum(tail) / len(tail):.3f} on average over the last "
        f"{len(tail)} steps ({time.time() - start:.0f} s)")
    return history


def evaluate(model: nn.Module, dataset: CocoBoxes, device: torch.device, batch_size: int) -> str:
    """Run ``model`` on ``dataset``; a one-line summary (with COCO box AP and AP50 when pycocotools is present)."""
    model.eval()
    results: List[Dict[str, Any]] = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            outputs = model([image.to(device) for image, _ in batch])
            for (_, target), output in zip(batch, outputs):
                for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(),
                                             output["labels"].tolist()):
                    results.append({"image_id": int(target["image_id"]),
                                    "category_id": dataset.category_ids[int(label) - 1],
                                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score})
    confident = sum(r["score"] >= 0.5 for r in results)
    gt = sum(len(a) for a in dataset.annotations.values())
    line = f"{len(dataset)} val images, {gt} objects: {len(results)} detections ({confident} with score >= 0.5)"
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        return line + "; install pycocotools for COCO AP"
    if not results:
        return line + "; bbox AP 0.000, AP50 0.000"
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its whole table
        truth = COCO(str(dataset.json_path))
        evaluator = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # IoU x recall x class, all areas, 100 detections
    per_class = ", ".join(f"{name} {_mean_valid(precision[:, :, k]):.3f}" for k, name in enumerate(dataset.classes))
    return line + f"; bbox AP {evaluator.stats[0]:.3f}, AP50 {evaluator.stats[1]:.3f}; AP per class: {per_class}"


def _mean_valid(values: Any) -> float:
    """The mean of COCOeval's precision entries that exist (-1 marks none: a class without objects)."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")
