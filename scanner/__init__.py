"""scanner: find spliced, retouched, deepfaked and generated images in bulk."""

__version__ = "0.1.0"
