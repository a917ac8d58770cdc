"""``benco bench``: run a benchmark protocol (models × test sets × attacks) through the engine.

A protocol file (YAML, docs/bench.md) names the training data and how the checkpoint is chosen on
validation, the test sets, the robustness grid, the metrics, the input size rule and the models.
:mod:`.protocol` reads and checks it, :mod:`.plan` turns it into cells (one model × one test set,
one run folder each) with their provenance, :mod:`.estimate` sizes a plan, :mod:`.executors` runs
the cells (one process each, under torchrun; locally or as Slurm jobs through submitit) and
:mod:`.cell` is the process that runs one cell through ``train_main`` / ``test_main`` /
``test_robust_main``. Standard library only at import time.
"""

from .protocol import Protocol, ProtocolError, load_protocol, shipped_protocols

__all__ = ["Protocol", "ProtocolError", "load_protocol", "shipped_protocols"]
