"""Degraded images with known truth: antialiased down-and-up resampling with the 8 training kernels, and
label-preserving nuisances (noise, JPEG, sharpening, tone, colour)."""

from .degradations import KERNELS, Resize, degrade, resample_down_up, resize_antialiased
from .nuisance import apply_nuisance, random_nuisances

__all__ = ["KERNELS", "Resize", "apply_nuisance", "degrade", "random_nuisances", "resample_down_up", "resize_antialiased"]
