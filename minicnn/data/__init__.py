"""Data pipeline: image loading, dataset sources, patients and leakage, augmentation,
the one ``Preprocessing`` (image -> tensor) and a prefetching batch loader. Imports only NumPy, SciPy, Pillow and the stdlib.
"""
from .augment import Augmenter
from .datasets import (Dataset, available_splits, class_counts, class_frequencies, default_positive_class,
                       find_images, load_csv, load_dataset, load_folder, load_npz, load_rsna)
from .dicom import DicomImage, read_dicom
from .images import (IMAGE_EXTENSIONS, ImageLoadError, is_image_file, load_dicom, load_image,
                     prepare_array)
from .loader import ArrayLoader, BatchLoader, LoaderError, batch_rng, epoch_rng, fit_preprocessing
from .preprocessing import Preprocessing
from .patients import LeakageReport, check_leakage, parse_patient_id, patient_ids_from_paths, split_by_patient

__all__ = [
    "ArrayLoader", "Augmenter", "BatchLoader", "Dataset", "DicomImage", "IMAGE_EXTENSIONS", "ImageLoadError",
    "LeakageReport", "LoaderError", "Preprocessing", "available_splits", "batch_rng", "check_leakage", "class_counts",
    "class_frequencies", "default_positive_class", "epoch_rng", "find_images", "fit_preprocessing", "is_image_file",
    "load_csv", "load_dataset", "load_dicom", "load_folder", "load_image", "load_npz", "load_rsna", "parse_patient_id",
    "read_dicom",
    "patient_ids_from_paths", "prepare_array", "split_by_patient",
]
