"""Batches for training and evaluation, prepared in a background thread.

    loader = BatchLoader(train_set, batch_size=32, image_size=128, channels=1,
                         augment=Augmenter(), normalizer=norm, seed=0)
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
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from ..errors import DataError, LoaderError
from .images import ImageLoadError, normalize_size

SHUFFLE, AUGMENT = 1, 2      # stream tags, so the two kinds of generator never share a seed
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


class BatchLoader:
    """Iterate a ``Dataset`` as ``(x, y)`` or ``(x, y, indices)`` NCHW float32 batches.

    channels: 1 keeps grayscale; 3 loads RGB (a grayscale image is repeated into 3 channels).
    training: the default for ``epoch()``; training epochs shuffle (unless ``shuffle=False``) and
        augment (when ``augment`` is given); evaluation epochs do neither, in dataset order.
    normalizer: a ``Normalizer`` called as ``normalizer(x, training)``; None leaves [0, 255].
    prefetch: batches prepared ahead in a background thread (0 = prepare in the caller's thread).
    cache_bytes: keep decoded + resized images (before augmentation) in memory up to this many
        bytes; later images are decoded every time. 0 disables the cache.
    """

    def __init__(self, dataset, batch_size=32, image_size=128, channels=1, training=True, shuffle=None,
                 augment=None, normalizer=None, seed=0, prefetch=2, drop_last=False,
                 return_indices=False, cache_bytes=0, interpolation="bilinear", fit="stretch"):
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels}")
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if len(dataset) == 0:
            raise DataError(f"{dataset!r} is empty")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.image_size = normalize_size(image_size)
        self.channels = channels
        self.training = bool(training)
        self.shuffle = self.training if shuffle is None else bool(shuffle)
        self.augment = augment
        self.normalizer = normalizer
        self.seed = int(seed)
        self.prefetch = int(prefetch)
        self.drop_last = bool(drop_last)
        self.return_indices = bool(return_indices)
        self.interpolation = interpolation
        self.fit = fit
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._epochs_iterated = 0
        self._open: set = set()

    def __repr__(self) -> str:
        return (f"BatchLoader({len(self.dataset)} images, batch_size={self.batch_size}, "
                f"image_size={self.image_size}, channels={self.channels}, training={self.training})")

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def config(self) -> dict:
        """The preprocessing to save with a model (JSON-able)."""
        return {"image_size": list(self.image_size), "channels": self.channels,
                "interpolation": self.interpolation, "fit": self.fit,
                "normalizer": self.normalizer.to_dict() if self.normalizer is not None else None}

    # ---- one batch, computed from (epoch, batch index) alone -----------------------------------

    def order(self, epoch: int, training: bool | None = None) -> np.ndarray:
        """Image indices of epoch ``epoch`` in the order they are served."""
        training = self.training if training is None else training
        n = len(self.dataset)
        if training and self.shuffle:
            return epoch_rng(self.seed, epoch).permutation(n)
        return np.arange(n)

    def _image(self, i: int) -> np.ndarray:
        with self._lock:
            cached = self._cache.get(i)
        if cached is not None:
            return cached
        color = "grayscale" if self.channels == 1 else "rgb"
        try:
            img = self.dataset.image(i, self.image_size, color, self.interpolation, self.fit)
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
        imgs = [self._image(int(i)) for i in indices]
        x = np.stack(imgs).astype(np.float32, copy=False)
        return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def batch(self, epoch: int, batch_index: int, training: bool | None = None, order=None):
        """Batch ``batch_index`` of epoch ``epoch``: ``(x, y)`` or ``(x, y, indices)``."""
        training = self.training if training is None else training
        order = self.order(epoch, training) if order is None else order
        idx = order[batch_index * self.batch_size:(batch_index + 1) * self.batch_size]
        if len(idx) == 0:
            raise IndexError(f"batch {batch_index} is past the end of the epoch ({len(self)} batches)")
        x = self.images(idx)
        try:
            if training and self.augment is not None:
                x = self.augment(x, batch_rng(self.seed, epoch, batch_index))
            if self.normalizer is not None:
                x = self.normalizer(x, training=training)
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
            return (self.batch(epoch, b, training, order) for b in range(start_batch, stop))
        return self._prefetched(epoch, training, order, start_batch, stop)

    def __iter__(self):
        """Each ``iter(loader)`` runs the next epoch (0, 1, 2, ...); prefer ``epoch(e)`` when resuming."""
        e = self._epochs_iterated
        self._epochs_iterated += 1
        return iter(self.epoch(e))

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


def fit_normalizer(normalizer, dataset, image_size=128, channels=1, sample=None, seed=0, batch_size=64,
                   interpolation="bilinear", fit="stretch"):
    """Fit ``normalizer`` on TRAINING images, resized as the model sees them, before augmentation.

    ``sample``: use a seeded random subset of that many images (None = all). Returns the normalizer.
    """
    if not normalizer.needs_fit:
        return normalizer
    if sample is not None and sample < len(dataset):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3]))
        dataset = dataset.subset(np.sort(rng.choice(len(dataset), size=int(sample), replace=False)))
    loader = BatchLoader(dataset, batch_size=batch_size, image_size=image_size, channels=channels,
                         training=False, prefetch=2, interpolation=interpolation, fit=fit)
    return normalizer.fit(x for x, _ in loader.epoch(0))
