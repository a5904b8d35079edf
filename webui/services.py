"""The services one running app is made of, built once and passed to the UI and the API."""
from __future__ import annotations

from dataclasses import dataclass

from .generation import Generator
from .models import ModelManager
from .settings import Settings


@dataclass
class Services:
    settings: Settings
    models: ModelManager
    generator: Generator

    @classmethod
    def build(cls, settings: Settings) -> Services:
        models = ModelManager(settings.models_path, settings.load)
        return cls(settings=settings, models=models, generator=Generator(models))
