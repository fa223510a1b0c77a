"""Backbone registry, task heads and the multi-task model."""

from edgetl.models.multitask import ExportWrapper, MultiTaskModel, build_model
from edgetl.models.registry import create_backbone, get_backbone_entry, list_backbones

__all__ = ["ExportWrapper", "MultiTaskModel", "build_model", "create_backbone", "get_backbone_entry", "list_backbones"]
