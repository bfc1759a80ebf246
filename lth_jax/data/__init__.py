"""The data sets' original files, checked byte for byte: MNIST, Fashion-MNIST and CIFAR-10.

Every loader reads the files the data set's authors publish, from a local folder named by an
argument or an environment variable (``LTH_MNIST_DIR``, ``LTH_FASHION_MNIST_DIR``,
``LTH_CIFAR10_DIR``: works offline, nothing written), or else downloads them on a networked
machine through tensorflow-datasets' download manager, which verifies the published size and
SHA-256 (offline, a loader fails in seconds with one line naming its variable). TensorFlow is
never needed: numpy parses the formats. Any missing, truncated, altered or malformed file
raises one :class:`DataError` line naming the file and what to do.

- :func:`mnist`, :func:`fashion_mnist`: the four IDX ``.gz`` files (one implementation,
  :func:`load_idx`, parameterised by an :class:`IdxSet`), flattened to 784 pixels in [0, 1].
- :func:`cifar10`: the binary version (``cifar-10-binary.tar.gz`` or its six ``.bin`` batches),
  as NHWC 32x32x3 pixels in [0, 1].
"""

from lth_jax.data._cifar import (
    CIFAR10,
    CIFAR10_ARCHIVE,
    CIFAR10_CLASSES,
    CIFAR10_DIR_ENV,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10_URL,
    ArchiveSpec,
    cifar10,
    read_archive,
    read_folder,
)
from lth_jax.data._fetch import PROBE_TIMEOUT, DataError, probe
from lth_jax.data._idx import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR_ENV,
    FASHION_MNIST_FILES,
    FASHION_MNIST_SET,
    FASHION_MNIST_URL,
    FILES,
    MNIST,
    MNIST_DIR_ENV,
    MNIST_SET,
    MNIST_URL,
    FashionMNIST,
    FileSpec,
    IdxSet,
    download_files,
    fashion_mnist,
    load_idx,
    mnist,
    parse_idx,
    verify_file,
)

__all__ = [
    "CIFAR10", "CIFAR10_ARCHIVE", "CIFAR10_CLASSES", "CIFAR10_DIR_ENV", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10_URL",
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR_ENV", "FASHION_MNIST_FILES", "FASHION_MNIST_SET", "FASHION_MNIST_URL",
    "FILES", "MNIST", "MNIST_DIR_ENV", "MNIST_SET", "MNIST_URL", "PROBE_TIMEOUT", "ArchiveSpec", "DataError",
    "FashionMNIST", "FileSpec", "IdxSet", "cifar10", "download_files", "fashion_mnist", "load_idx", "mnist",
    "parse_idx", "probe", "read_archive", "read_folder", "verify_file",
]
