"""Side-by-side speed and memory measurement of ResNeSt implementations (``tools/benchmark.py`` renders it).

* :mod:`.models`: the input cases and the compared implementations (ours, ours fused, timm, the official
  ``resnest`` package), built with the same weights;
* :mod:`.timing`: one repetition of an inference or training step, and interleaved timing;
* :mod:`.memory`: peak memory of a few steps, each measured in a fresh subprocess
  (``python -m resnest_backbones.benchmark.memory``);
* :mod:`.results`: the whole run (:func:`~.results.run_benchmark`), ratios to timm and the report's metadata;
* :mod:`.whole`: whole models (mmseg DeepLabV3, detectron2 Faster R-CNN) from the project's configs, with their
  fused-for-inference entries and DeepLabV3's whole-image or slide inference (:mod:`.whole_builders` builds the
  models and their training/inference steps);
* :mod:`.toy_targets`: the toy trainings held to accuracy thresholds (``tools/toy_margins.py``), one per framework
  of the table with a toy training;
* :mod:`.render`: the report as terminal and markdown tables and a plot.

Kept apart from the command line so that the measurement is importable and testable without it. This file
imports none of them, so that running the memory worker with ``-m`` loads its module only once.
"""
