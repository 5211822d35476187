"""Batches for training and evaluation, prepared in a background thread.

    pre = fit_preprocessing(Preprocessing(image_size=128, channels=1), train_set)
    loader = BatchLoader(train_set, pre, batch_size=32, augment=Augmenter(), seed=0)
    for epoch in range(start_epoch, epochs):
        for x, y in loader.epoch(epoch):          # x (B, C, H, W) float32, y (B, K) float32
            ...

Determinism. The shuffle of epoch ``e`` comes from ``SeedSequence([seed, SHUFFLE, e])`` and the
augmentation of batch ``b`` from ``SeedSequence([seed, AUGMENT, e, b])``. Nothing depends on how
far the prefetch thread has run ahead, and ``loader.epoch(e, start_batch=b)`` gives exactly the
batches an uninterrupted epoch gives from ``b`` on (resuming mid-epoch). The loader keeps no
random state of its own.

Threading. The prefetch thread only decodes, resizes, augments and normalises (Pillow, NumPy,
SciPy); it never calls Numba code, so it cannot collide with Numba's parallel kernels running in
the consumer. At most ``prefetch`` finished batches wait in a bounded queue. An exception in the
thread is raised in the consumer (an unreadable image raises ``ImageLoadError`` naming the file).
When the consumer stops early (``break``, an exception, ``close()``) the thread is told to stop
and joined: no thread is left running.

``ArrayLoader`` serves in-memory arrays (e.g. cached backbone features) with the same epoch
shuffle, so ``train.fit`` trains a head on them exactly as it trains a CNN on images.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import warnings

import numpy as np

from ..errors import DataError, LoaderError
from .images import ImageLoadError
from .preprocessing import Preprocessing

SHUFFLE, AUGMENT = 1, 2      # stream tags, so the two kinds of generator never share a seed
ON_BAD_FILE = ("fail", "skip")
_END = object()


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator that shuffles epoch ``epoch``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SHUFFLE, int(epoch)]))


def batch_rng(seed: int, epoch: int, batch_index: int) -> np.random.Generator:
    """The generator that augments batch ``batch_index`` of epoch ``epoch``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), AUGMENT, int(epoch), int(batch_index)]))


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class _Epochs:
    """What every loader shares: batch size, shuffling by epoch, and the batch count."""

    def __init__(self, n, batch_size, training, shuffle, seed, drop_last):
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self._n = int(n)
        self.batch_size = int(batch_size)
        self.training = bool(training)
        self.shuffle = self.training if shuffle is None else bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self._epochs_iterated = 0

    def __len__(self) -> int:
        n = self._n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int, training: bool | None = None) -> np.ndarray:
        """Item indices of epoch ``epoch`` in the order they are served."""
        training = self.training if training is None else training
        if training and self.shuffle:
            return epoch_rng(self.seed, epoch).permutation(self._n)
        return np.arange(self._n)

    def _indices(self, epoch, batch_index, training, order):
        order = self.order(epoch, training) if order is None else order
        idx = order[batch_index * self.batch_size:(batch_index + 1) * self.batch_size]
        if len(idx) == 0:
            raise IndexError(f"batch {batch_index} is past the end of the epoch ({len(self)} batches)")
        return idx

    def __iter__(self):
        """Each ``iter(loader)`` runs the next epoch (0, 1, 2, ...); prefer ``epoch(e)`` when resuming."""
        e = self._epochs_iterated
        self._epochs_iterated += 1
        return iter(self.epoch(e))


class ArrayLoader(_Epochs):
    """Iterate in-memory ``(x, y)`` arrays as batches, shuffled per epoch as ``BatchLoader`` shuffles.

    ``x`` (N, ...) float32 (cached features, or preprocessed images); ``y`` (N, K) labels (a 1-D
    ``y`` becomes one column). No augmentation, no thread: slicing an array is all there is.
    """

    def __init__(self, x, y, batch_size=32, training=True, shuffle=None, seed=0, drop_last=False):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        self.labels = y[:, None] if y.ndim == 1 else y
        if len(self.x) == 0:
            raise DataError("ArrayLoader got no items")
        if len(self.labels) != len(self.x):
            raise DataError(f"{len(self.x)} items but {len(self.labels)} label rows")
        super().__init__(len(self.x), batch_size, training, shuffle, seed, drop_last)

    def __repr__(self) -> str:
        return f"ArrayLoader({len(self.x)} items of shape {self.x.shape[1:]}, batch_size={self.batch_size})"

    def batch(self, epoch: int, batch_index: int, training: bool | None = None, order=None):
        idx = self._indices(epoch, batch_index, self.training if training is None else training, order)
        return self.x[idx], self.labels[idx]

    def epoch(self, epoch: int, training: bool | None = None, start_batch: int = 0):
        training = self.training if training is None else training
        order = self.order(epoch, training)
        return (self.batch(epoch, b, training, order) for b in range(start_batch, len(self)))


class BatchLoader(_Epochs):
    """Iterate a ``Dataset`` as ``(x, y)`` or ``(x, y, indices)`` NCHW float32 batches.

    preprocessing: the ``Preprocessing`` (size, channels, resize, normalisation) applied to every image;
        channels 3 repeats a grayscale image into 3 channels.
    training: the default for ``epoch()``; training epochs shuffle (unless ``shuffle=False``) and
        augment (when ``augment`` is given, before normalisation); evaluation epochs do neither, in
        dataset order.
    prefetch: batches prepared ahead in a background thread (0 = prepare in the caller's thread).
    cache_bytes: keep decoded + resized images (before augmentation) in memory up to this many
        bytes; later images are decoded every time. 0 disables the cache.
    on_bad_file: ``"fail"`` (default): an unreadable image raises ``ImageLoadError``; ``"skip"``: it
        is left out of its batch (which is then smaller; a batch of nothing but unreadable images
        still fails), ``warn(message)`` is called once per file, and ``skipped`` maps its index to the
        reason. The same files are skipped in every epoch, so runs stay reproducible.
    """

    def __init__(self, dataset, preprocessing: Preprocessing, batch_size=32, training=True, shuffle=None,
                 augment=None, seed=0, prefetch=2, drop_last=False, return_indices=False, cache_bytes=0,
                 on_bad_file="fail", warn=None):
        if on_bad_file not in ON_BAD_FILE:
            raise DataError(f"on_bad_file must be one of {ON_BAD_FILE}, got {on_bad_file!r}")
        if not isinstance(preprocessing, Preprocessing):
            raise DataError(f"preprocessing must be a Preprocessing, got {type(preprocessing).__name__}")
        if not preprocessing.is_fitted:
            raise DataError(f"{preprocessing!r} is not fitted: fit_preprocessing(pre, training_set) first")
        if len(dataset) == 0:
            raise DataError(f"{dataset!r} is empty")
        super().__init__(len(dataset), batch_size, training, shuffle, seed, drop_last)
        self.dataset = dataset
        self.preprocessing = preprocessing
        self.augment = augment
        self.prefetch = int(prefetch)
        self.return_indices = bool(return_indices)
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._open: set = set()
        self.on_bad_file = on_bad_file
        self.warn = warn or (lambda message: warnings.warn(message, stacklevel=2))
        self.skipped: dict[int, str] = {}

    def __repr__(self) -> str:
        return (f"BatchLoader({len(self.dataset)} images, batch_size={self.batch_size}, "
                f"{self.preprocessing!r}, training={self.training})")

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels

    @property
    def image_size(self) -> tuple:
        return self.preprocessing.image_size

    # ---- one batch, computed from (epoch, batch index) alone -----------------------------------

    def _image(self, i: int) -> np.ndarray:
        with self._lock:
            cached = self._cache.get(i)
        if cached is not None:
            return cached
        pre = self.preprocessing
        try:
            img = pre.read_item(self.dataset, i)
        except ImageLoadError:
            raise
        except (ValueError, OSError) as exc:
            raise ImageLoadError(f"cannot prepare image {self.dataset.name(i)}: {exc}") from exc
        if self.cache_bytes:
            with self._lock:
                if i not in self._cache and self._cached_bytes + img.nbytes <= self.cache_bytes:
                    self._cache[i] = img
                    self._cached_bytes += img.nbytes
        return img

    def images(self, indices) -> np.ndarray:
        """Decoded, resized images ``indices`` as (B, C, H, W) float32 in [0, 255] (no augmentation)."""
        return Preprocessing.stack(self._image(int(i)) for i in indices)

    def _readable(self, idx, allow_empty: bool = False):
        """``(indices, images)`` of ``idx`` without the unreadable ones (``on_bad_file="skip"``);
        ``(None, None)`` when none is readable and ``allow_empty`` (an evaluation epoch drops it)."""
        kept, images = [], []
        for i in map(int, idx):
            if i in self.skipped:
                continue
            try:
                images.append(self._image(i))
            except ImageLoadError as exc:
                with self._lock:
                    first = i not in self.skipped
                    self.skipped[i] = str(exc)
                if first:
                    self.warn(f"skipping an unreadable image (--on-bad-file skip): {exc}")
                continue
            kept.append(i)
        if not kept:
            if allow_empty:
                return None, None
            raise ImageLoadError(f"every image of the batch is unreadable, e.g. {self.skipped[int(idx[0])]}")
        return np.asarray(kept, dtype=np.int64), Preprocessing.stack(images)

    def batch(self, epoch: int, batch_index: int, training: bool | None = None, order=None):
        """Batch ``batch_index`` of epoch ``epoch``: ``(x, y)`` or ``(x, y, indices)``."""
        training = self.training if training is None else training
        idx = self._indices(epoch, batch_index, training, order)
        if self.on_bad_file == "skip":
            idx, x = self._readable(idx, allow_empty=not training)
            if idx is None:
                return None          # an evaluation batch of unreadable images only: nothing to yield
        else:
            x = self.images(idx)
        try:
            if training and self.augment is not None:
                x = self.augment(x, batch_rng(self.seed, epoch, batch_index))
            x = self.preprocessing.normalize(x, training=training)
        except Exception as exc:
            names = ", ".join(self.dataset.name(int(i)) for i in idx[:3])
            raise LoaderError(f"epoch {epoch} batch {batch_index} (images {names}, ...): {exc}") from exc
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = self.dataset.labels[idx]
        return (x, y, idx) if self.return_indices else (x, y)

    # ---- iteration -------------------------------------------------------------------------------

    def epoch(self, epoch: int = 0, training: bool | None = None, start_batch: int = 0):
        """Iterate the batches of epoch number ``epoch`` (from ``start_batch`` on, to resume)."""
        training = self.training if training is None else training
        order = self.order(epoch, training)
        stop = len(self)
        if self.prefetch <= 0:
            batches = (self.batch(epoch, b, training, order) for b in range(start_batch, stop))
        else:
            batches = self._prefetched(epoch, training, order, start_batch, stop)
        return (b for b in batches if b is not None)

    def _prefetched(self, epoch, training, order, start, stop):
        q: queue.Queue = queue.Queue(maxsize=max(1, self.prefetch))
        halt = threading.Event()

        def put(item) -> bool:
            while not halt.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def work():
            try:
                for b in range(start, stop):
                    if halt.is_set() or not put(self.batch(epoch, b, training, order)):
                        return
                put(_END)
            except BaseException as exc:  # handed to the consumer, raised there
                put(_Failure(exc))

        thread = threading.Thread(target=work, name=f"minicnn-loader-epoch{epoch}", daemon=True)
        self._open.add((thread, halt))
        thread.start()
        try:
            while True:
                try:
                    item = q.get(timeout=0.5)
                except queue.Empty:
                    if not thread.is_alive() and q.empty():
                        raise LoaderError(f"the prefetch thread of epoch {epoch} stopped without a result")
                    continue
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            halt.set()
            thread.join()
            self._open.discard((thread, halt))

    def close(self):
        """Stop and join any prefetch thread still running (normally not needed)."""
        for thread, halt in list(self._open):
            halt.set()
            thread.join()
            self._open.discard((thread, halt))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fit_preprocessing(preprocessing: Preprocessing, dataset, sample=None, seed=0, batch_size=64,
                      on_bad_file="fail", warn=None) -> Preprocessing:
    """``preprocessing`` with statistics of TRAINING images, resized as the model sees them, before augmentation.

    ``sample``: use a seeded random subset of that many images (None = all). Modes without
    statistics are returned as they are. ``on_bad_file``, ``warn``: as in ``BatchLoader``.
    """
    if not preprocessing.needs_fit:
        return preprocessing
    if sample is not None and sample < len(dataset):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3]))
        dataset = dataset.subset(np.sort(rng.choice(len(dataset), size=int(sample), replace=False)))
    raw = dataclasses.replace(preprocessing, mode="none", mean=None, std=None, count=0)
    loader = BatchLoader(dataset, raw, batch_size=batch_size, training=False, prefetch=2, on_bad_file=on_bad_file,
                         warn=warn)
    return preprocessing.fitted(x for x, _ in loader.epoch(0))
