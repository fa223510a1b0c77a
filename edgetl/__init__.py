"""edgetl: take a pretrained backbone to a fast, measured artifact on an edge device.

Kept import-light on purpose: `import edgetl.runtime` on a device must not pull torch.
"""

__version__ = "0.1.0"
