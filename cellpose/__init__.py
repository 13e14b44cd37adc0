"""cellpose-tb: a weight-compatible, instrumented re-implementation of Cellpose 3 inference."""
__version__ = "0.1.0"
