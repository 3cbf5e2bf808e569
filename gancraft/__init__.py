"""gancraft: a command-line toolbelt for pretrained GAN generators."""

__version__ = "0.1.0"
