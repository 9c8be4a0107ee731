"""What a checkpoint load did, key by key, and the one way this package lists the keys that did not fit.

Every loader of the package (the core's :func:`~resnest_backbones.load_checkpoint`, the layout pre-hooks, the
detectron2 checkpointer and predictor, the mmseg tools and converter, the torchvision predictor) fills a
:class:`LoadReport` and raises :meth:`LoadReport.error`: the same counts, the same listings, the same limits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor

__all__ = ["CheckpointError", "LoadReport", "is_counter", "listing"]

Mismatch = Tuple[str, Tuple[int, ...], Tuple[int, ...]]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or does not match the model; the message says what to do."""

    def __init__(self, message: str, report: Optional["LoadReport"] = None) -> None:
        super().__init__(message)
        self.report = report


def listing(keys: Sequence[str], limit: int) -> str:
    """``keys`` joined, the first ``limit`` of them, with how many more there are."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def is_counter(key: str) -> bool:
    """A norm layer's ``num_batches_tracked``: a counter, not a weight (older files and frozen norms lack it)."""
    return key.endswith("num_batches_tracked")


@dataclass
class LoadReport:
    """What a checkpoint load did, key by key."""

    source_format: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    #: ``(key, shape in the checkpoint, shape in the model)``.
    mismatched: List[Mismatch] = field(default_factory=list)
    #: Checkpoint keys deliberately not used, with the reason (classification head, stages not built...).
    ignored: Dict[str, str] = field(default_factory=dict)
    #: Model keys with no counterpart in any ImageNet checkpoint (deformable-conv offsets), left initialised.
    initialised: List[str] = field(default_factory=list)
    #: How the listings name the source: ``missing in checkpoint: ...``.
    where: str = "checkpoint"

    @classmethod
    def compare(cls, state: Mapping[str, Tensor], expected: Mapping[str, Tensor], source_format: str,
                where: str = "checkpoint") -> "LoadReport":
        """The report of loading ``state`` into a model whose ``state_dict()`` is ``expected``, key for key."""
        shared = set(state) & set(expected)
        mismatched = sorted((k, tuple(state[k].shape), tuple(expected[k].shape)) for k in shared
                            if state[k].shape != expected[k].shape)
        return cls(source_format, loaded=sorted(shared - {k for k, _, _ in mismatched}),
                   missing=sorted(set(expected) - set(state)), unexpected=sorted(set(state) - set(expected)),
                   mismatched=mismatched, where=where)

    @classmethod
    def from_incompatible(cls, source_format: str, model_keys: Iterable[str], missing: Iterable[str],
                          unexpected: Iterable[str], mismatched: Iterable[Mismatch] = (),
                          prefix: str = "") -> "LoadReport":
        """The report of a ``load_state_dict(strict=False)`` into a model with ``model_keys`` (torch's or fvcore's
        incompatible keys), for the keys under ``prefix``; norm layers' counters never count as missing, nor do
        mis-shaped tensors (fvcore lists them among the missing too)."""
        mismatched = [m for m in mismatched if m[0].startswith(prefix)]
        shaped = {k for k, _, _ in mismatched}  # reported as mis-shaped, not also as missing
        unset = set(missing) | shaped
        return cls(source_format, loaded=sorted(k for k in model_keys if k.startswith(prefix) and k not in unset),
                   missing=[k for k in missing if k.startswith(prefix) and not is_counter(k)
                            and k not in shaped],
                   unexpected=[k for k in unexpected if k.startswith(prefix)], mismatched=mismatched)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def _kinds(self) -> List[Tuple[str, str, List[str]]]:
        """``(name, its listing's label, keys)`` of each kind of key that did not fit."""
        shapes = [f"{k} {list(c)} vs {list(m)}" for k, c, m in self.mismatched]
        return [("missing", f"missing in {self.where}", self.missing),
                ("unexpected", f"unexpected in {self.where}", self.unexpected),
                ("mis-shaped", f"mis-shaped ({self.where} vs model)", shapes)]

    def brief(self, limit: int = 10) -> str:
        """One line: each count with its keys (``2 missing (a, b), 0 unexpected, 0 mis-shaped``)."""
        def keys_of(name: str, keys: List[str]) -> str:
            shapes = f"{self.where} vs model: " if name == "mis-shaped" else ""
            return f" ({shapes}{listing(keys, limit)})" if keys else ""

        return ", ".join(f"{len(keys)} {name}{keys_of(name, keys)}" for name, _, keys in self._kinds())

    def summary(self, limit: int = 20) -> str:
        """The counts on one line, then one line per kind of key that did not fit, ignored or kept at init."""
        kinds = self._kinds()
        lines = [f"{self.source_format} checkpoint: {len(self.loaded)} tensors loaded, "
                 + ", ".join(f"{len(keys)} {name}" for name, _, keys in kinds)]
        lines += [f"  {label}: {listing(keys, limit)}" for _, label, keys in kinds if keys]
        reasons: Dict[str, int] = {}
        for reason in self.ignored.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in reasons.items():
            lines.append(f"  ignored {count} checkpoint tensors: {reason}")
        if self.initialised:
            lines.append(f"  {len(self.initialised)} tensors kept at initialisation (deformable-conv offsets, "
                         f"not in any ImageNet checkpoint)")
        return "\n".join(lines)

    def message(self, problem: str, remedy: str, reasons: Sequence[str] = ()) -> str:
        """The message for a load that does not fit: what is wrong, why (``reasons``, one line each), the
        :meth:`summary` and what to do."""
        return "\n".join([problem, *(f"  reason: {reason}" for reason in reasons), self.summary(), remedy])

    def error(self, problem: str, remedy: str, reasons: Sequence[str] = ()) -> CheckpointError:
        """The :class:`CheckpointError` with :meth:`message`, carrying this report."""
        return CheckpointError(self.message(problem, remedy, reasons), self)
