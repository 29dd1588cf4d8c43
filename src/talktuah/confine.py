"""Nothing is read, removed or linked outside the models dir, whatever a link says.

The cache is full of symlinks (`snapshots/<commit>/<file>` -> `../../blobs/<etag>`). A link
that a hostile hub made the library create — or one planted by anyone else with write access
to the cache — could point anywhere; huggingface_hub's delete strategies remove the *resolved*
blob path, so deleting such a model would delete the link's target. Every clean-up here goes
through these checks first.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from huggingface_hub import DeleteCacheStrategy

logger = logging.getLogger(__name__)


def inside(root: Path, path: Path) -> bool:
    """True when `path`, with every symlink followed, lies in `root` (also resolved)."""
    return path.resolve().is_relative_to(root.resolve())


def without_outside(strategy: DeleteCacheStrategy, root: Path) -> DeleteCacheStrategy:
    """The same strategy minus every path that resolves outside `root`.

    Repos, snapshots, refs and snapshot entries are removed by the library as links (rmtree
    and unlink do not follow them); blobs are removed by their resolved path, so a blob
    outside `root` is dropped from the plan and logged. Its link still goes with its snapshot.
    """
    outside = {blob for blob in strategy.blobs if not inside(root, blob)}
    for blob in outside:
        logger.warning("not deleting %s: it lies outside the models dir %s", blob, root)
    if not outside:
        return strategy
    return dataclasses.replace(strategy, blobs=frozenset(strategy.blobs - outside))
