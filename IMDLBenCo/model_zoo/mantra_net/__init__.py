"""ManTra-Net (Wu, AbdAlmageed, Natarajan, CVPR 2019), registered as ``MantraNet``.

Its feature extractor (:class:`~.imtfe.IMTFE`) is shared with ``SPAN``.
"""

from .imtfe import IMTFE
from .mantra_net import AnomalyDetector, MantraNet

__all__ = ["MantraNet", "IMTFE", "AnomalyDetector"]
