"""storycheck: check batches of social-media profiles for active stories."""

__version__ = "0.1.0"
