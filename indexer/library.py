"""The searchable library: feature store + vector index, kept consistent with each other.

All changes go through here. Features are written before their vectors are indexed, and a
removal takes a readers-writer lock's write side, so a search (read side) never meets a
vector whose features are gone. Additions and removals are also serialised among
themselves (with the catalog check that guards them), but an addition never blocks searches,
even when it makes the index train its approximate form. `persist()` makes the index durable
(group-committed). `reconcile()` restores agreement with the catalog after a crash: the
catalog and the feature store are the sources of truth, the index is derived from them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from indexer.components import Components, Searcher
from indexer.index_guard import GroupPersister, ReadWriteLock
from indexer.variants import indexed_vectors, store_versions

if TYPE_CHECKING:
    from indexer.vector_index import VectorIndex
    from model.features import VideoFeatures

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class ReconcileReport:
    """What start-up had to repair (all empty after a clean shutdown)."""

    missing_features: list[int] = field(default_factory=list)  # ready in the catalog, nothing stored
    orphan_features: list[int] = field(default_factory=list)  # stored, but not a ready video
    index_removed: list[int] = field(default_factory=list)  # indexed, but not a ready video
    index_added: list[int] = field(default_factory=list)  # ready and stored, missing from the index
    index_rebuilt: bool = False  # the saved index was missing or unreadable

    @property
    def changed_index(self) -> bool:
        return bool(self.index_removed or self.index_added or self.index_rebuilt)

    @property
    def repaired(self) -> bool:
        """Whether anything disagreed (a first start, with nothing stored yet, does not count)."""
        return bool(self.missing_features or self.orphan_features or self.index_removed or self.index_added)


class Library:
    def __init__(self, components: Components, index_path: Path) -> None:
        self.components = components
        self.store = components.store
        self.index_path = index_path
        self._lock = ReadWriteLock()  # searches read; removals write
        self._changes = threading.Lock()  # one addition or removal at a time
        self._index: VectorIndex = components.new_index()
        self._searcher: Searcher = components.make_searcher(self._index)
        self._persister = GroupPersister(self._save)

    # -- start-up --
    def load(self) -> bool:
        """Load the saved index; False (and an empty index) when there is none or it is unreadable."""
        loaded = self.components.load_index(self.index_path)
        with self._changes, self._lock.write():
            if loaded is not None:
                self._index = loaded
                self._searcher = self.components.make_searcher(loaded)
        return loaded is not None

    def reconcile(self, ready: set[int], *, loaded: bool) -> ReconcileReport:
        """Make store and index hold exactly the ready videos whose features exist.

        `ready` is the catalog's set of ready ids. Returns the ids whose features are missing
        (the caller re-queues them); orphan features and stray vectors are dropped; vectors
        missing from the index are added back from the store.
        """
        report = ReconcileReport(index_rebuilt=not loaded)
        stored = set(self.store.ids())
        report.missing_features = sorted(ready - stored)
        report.orphan_features = sorted(stored - ready)
        with self._changes, self._lock.write():
            for video_id in report.orphan_features:
                self.store.delete(video_id)
            wanted = ready & stored
            if not loaded:
                # Nothing usable on disk: one bulk build (an approximate index trains once).
                if wanted:
                    self._index.rebuild(self.store, sorted(wanted))
                report.index_added = sorted(wanted)
            else:
                indexed = {int(v) for v in self._index.video_ids()}
                report.index_removed = sorted(indexed - wanted)
                for video_id in report.index_removed:
                    self._index.remove(video_id)
                report.index_added = sorted(wanted - indexed)
                for video_id in report.index_added:
                    self._index.add(video_id, indexed_vectors(self.store, video_id))
        if report.changed_index:
            self._persister.mark_changed()
            self.persist()
        return report

    def sync_index(self, ready: set[int], *, only: set[int] | None = None) -> tuple[list[int], list[int]]:
        """Make the index hold the ready videos whose features are stored; returns (added, removed).

        For an API replica in the deployed mode, where workers elsewhere write the store: unlike
        `reconcile`, it never deletes features (a worker may be about to mark them ready).
        `only` limits the comparison to some ids (an event) instead of the whole catalog; their
        vectors are read again even when indexed, as a re-indexed video's features are new.
        """
        with self._changes, self._lock.write():
            indexed = {int(v) for v in self._index.video_ids()}
            if only is None:
                scope = indexed | ready
                wanted = ready - indexed
            else:
                scope = {int(v) for v in only}
                wanted = scope & ready
            added = [v for v in sorted(wanted) if v in self.store]
            removed = sorted((scope & indexed) - ready)
            for video_id in removed:
                self._index.remove(video_id)
            for video_id in added:
                self._index.add(video_id, indexed_vectors(self.store, video_id))
        if added or removed:
            self._persister.mark_changed()
        return added, removed

    # -- writes --
    def add(
        self,
        video_id: int,
        features: VideoFeatures,
        *,
        still_wanted: Callable[[], bool],
        window: VideoFeatures | None = None,
    ) -> bool:
        """Store and index a video (and its inner window's features, indexer.variants); False (and
        nothing kept) when `still_wanted()` says it was deleted.

        `still_wanted` is asked while no removal can run, so a concurrent delete either happens
        before (and this add backs out) or after (and removes what this add wrote).
        """
        store_versions(self.store, video_id, features, window)
        # The vectors as the store gives them back (computed from compact regions), so the index
        # holds what a rebuild from the store would.
        vectors = indexed_vectors(self.store, video_id)
        with self._changes:
            if not still_wanted():
                self.store.delete(video_id)
                return False
            # Replaces any vectors of an earlier attempt: a retried job never leaves two copies.
            self._index.add(video_id, vectors)
        self._persister.mark_changed()
        return True

    def remove(self, video_id: int) -> None:
        """Drop a video from index and store (absent ids are fine)."""
        with self._changes, self._lock.write():
            self._index.remove(video_id)
            self.store.delete(video_id)
        self._persister.mark_changed()

    def persist(self) -> None:
        """Return once the index on disk holds every change made before this call."""
        self._persister.persist()

    def _save(self) -> None:
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        self._index.save(self.index_path)  # the index snapshots itself under its own lock

    # -- reads --
    def read(self, operation: Callable[[Searcher, VideoFeatures | None], T], video_id: int | None = None) -> T:
        """Run `operation(searcher, features of video_id)` on a consistent view of store and index."""
        with self._lock.read():
            features = self.store.get(video_id) if video_id is not None else None
            return operation(self._searcher, features)

    def window(self, video_id: int) -> VideoFeatures | None:
        """A stored video's window features (None when it has none); call inside `read`."""
        return self.store.get_window(video_id)

    def size(self) -> tuple[int, int]:
        """(videos, frame vectors) in the index."""
        return self._index.num_videos, self._index.num_frames

    def contains(self, video_id: int) -> bool:
        return int(video_id) in {int(v) for v in self._index.video_ids()}
