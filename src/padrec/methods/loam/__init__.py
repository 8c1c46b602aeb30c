"""LOAM (LOng-tail session-based recommendation via niche walk Augmentation and tail session
Mixup; Yang et al., SIGIR 2023): its config, its niche walks and its method."""

from padrec.methods.loam.config import LOAMConfig
from padrec.methods.loam.method import LOAM
from padrec.methods.loam.walks import LOAMBatch, NicheWalkBatches, TransitionGraph, build_transition_graph

__all__ = ["LOAM", "LOAMBatch", "LOAMConfig", "NicheWalkBatches", "TransitionGraph", "build_transition_graph"]
