"""Layer classes (see ``base.Layer`` for the interface)."""
from .base import Layer
