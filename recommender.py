"""Model pack: build, save, load and query (placeholder until the recommender lands)."""

import logging
import os

logger = logging.getLogger(__name__)


class PackHolder:
    """Hold the loaded model pack; reload it when the file changes."""

    def __init__(self, path):
        self.path = path
        self.pack = None
        self.error = None

    def get(self):
        """Return the loaded pack, or None while none can be loaded."""
        return self.pack

    def status(self):
        return {
            "loaded": self.pack is not None,
            "path_exists": os.path.exists(self.path),
            "error": self.error,
        }
