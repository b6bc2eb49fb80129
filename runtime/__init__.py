"""timeloom's runtime: forward and backpropagation through time over a compiled Program."""
from .backend import Backend
from .network import Network

__all__ = ["Backend", "Network"]
