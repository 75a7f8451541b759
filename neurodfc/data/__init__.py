"""Data sets for DFC experiments: MNIST, Fashion-MNIST, MNIST autoencoder and teacher-student.

Files are downloaded (with pooch, into the user cache only) when no local copy is found and no
data folder was given (see :func:`locate`); every file is checked against the built-in SHA-256
of its decompressed content.
"""

from neurodfc.data.datasets import load_dataset
from neurodfc.data.errors import DatasetError
from neurodfc.data.idx import read_idx
from neurodfc.data.sources import locate
from neurodfc.data.splits import DataSplits, Split
from neurodfc.data.teacher_student import random_inputs, teacher_student

__all__ = [
    "DataSplits",
    "DatasetError",
    "Split",
    "load_dataset",
    "locate",
    "random_inputs",
    "read_idx",
    "teacher_student",
]
