"""``benco demo``: the whole pipeline on a synthetic dataset generated on the spot.

Importing :mod:`IMDLBenCo.demo.model` registers ``DemoNet`` in ``MODELS``; the pipeline lives in
:mod:`IMDLBenCo.demo.pipeline` (imported by the ``benco demo`` command on use).
"""
