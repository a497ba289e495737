"""SVI Studio: shot-by-shot long-video authoring on Wan image-to-video + Stable Video Infinity."""

__version__ = "0.1.0"
