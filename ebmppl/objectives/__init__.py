"""Training objectives, each a pure :class:`Trainer` (``init``/``step``) that :func:`ebmppl.fit` drives."""

from ebmppl.objectives.base import Trainer, TrainState
from ebmppl.objectives.cd import cd_loss, contrastive_divergence

OBJECTIVES = {"cd": contrastive_divergence}
"""Objectives by name, as ``fit(objective=...)`` and the command line refer to them."""

__all__ = ["Trainer", "TrainState", "cd_loss", "contrastive_divergence", "OBJECTIVES"]
