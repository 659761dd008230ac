"""Classifiers: the chapter's CNN, PreAct ResNet-18, the airbench-style network, checkpoints and
the model registry."""

from poisonlab.models.airbench import AirbenchNet
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.preact_resnet import PreActResNet18
from poisonlab.models.registry import ARCHITECTURES, build_model
from poisonlab.models.simple_cnn import SimpleCifarCNN

__all__ = [
    "ARCHITECTURES",
    "AirbenchNet",
    "PoisonlabModel",
    "PreActResNet18",
    "SimpleCifarCNN",
    "build_model",
]
