"""Built-in detectors, installed as the `scanner_plugins` package.

Each lives in a folder of its own with its model and MODEL_CARD.md, and is registered in
pyproject.toml under the `scanner.detectors` entry-point group, exactly like a third-party plugin.
"""
