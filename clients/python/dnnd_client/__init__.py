"""Python client for the dnnd controller's REST API (docs/controller.md)."""
from .client import Client, DnndError, Job, JobFailed, Predictions
from .safetensors import load as load_safetensors, loads as loads_safetensors

__version__ = "0.1.0"
__all__ = ["Client", "DnndError", "Job", "JobFailed", "Predictions", "load_safetensors", "loads_safetensors"]
