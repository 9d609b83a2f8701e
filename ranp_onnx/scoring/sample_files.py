"""Sample files of scoring data: find them, check their arrays, stream their samples.

:mod:`ranp_onnx.scoring.data` describes what each array must be (an :class:`ArraySpec` per graph
input and one for the labels, gathered in a :class:`Layout`); this module finds the sample
files of an ``.npz`` file or a folder (:func:`find_shards`), checks every array's name, shape
and dtype from its ``.npy`` header when the data is opened, and then reads the samples in
order, a few at a time (:func:`open_readers`), checking values as they are read.

Arrays are never loaded whole: a :class:`RowReader` reads the next rows of a C-ordered array
straight from the file or from the zip member (compressed or not). The ``.npy`` header is
parsed here rather than by ``np.load``, and an array of Python objects (which would need
pickle) is refused, as ``np.load(..., allow_pickle=False)`` would refuse it. Every problem is
a :class:`~ranp_onnx.errors.DataError` that names the file and the array.
"""

from __future__ import annotations

import contextlib
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import DataError

#: The name of the labels array, in an ``.npz`` and in messages.
LABELS = "labels"
#: ``NAME.labels.npy`` holds the labels of ``NAME.npy``.
LABELS_SUFFIX = ".labels.npy"
#: Item sizes of the float dtypes accepted (float16, float32, float64).
FLOAT_SIZES = (2, 4, 8)


@dataclass(frozen=True)
class ArraySpec:
    """What one array must be: the per-sample shape, the dtype family and the target dtype."""

    key: str  # the Batch.inputs key; "" for the labels
    aliases: tuple[str, ...]  # the array names that may hold it in a file
    sample_shape: tuple[int, ...]
    kind: str  # "float", "int", "bool", "classes" or "targets"
    dtype: np.dtype
    context: str  # "to match the input 'x' [N, 1, 8, 8, 8]"

    def expected(self) -> str:
        """Return the expectation, e.g. "a float array of shape (N, 8, 8) to match ..."."""
        dims = ", ".join(["N", *map(str, self.sample_shape)])
        shape = f"({dims},)" if not self.sample_shape else f"({dims})"
        what = {
            "float": "a float16/32/64 array",
            "int": "an integer array",
            "bool": "a bool array",
            "classes": "integer class indices",
            "targets": "a float array of targets",
        }[self.kind]
        return f"{what} of shape {shape} {self.context}"


@dataclass(frozen=True)
class Layout:
    """What the arrays of every sample file must be.

    Attributes:
        inputs: One spec per graph input, in the graph's order.
        labels: The spec of the labels.
        classes: The number of classes C, for class-index labels; None for float targets.
        ignore_index: The label value the loss ignores, or None.
    """

    inputs: tuple[ArraySpec, ...]
    labels: ArraySpec
    classes: int | None
    ignore_index: int | None

    @property
    def specs(self) -> tuple[ArraySpec, ...]:
        """The inputs' specs, then the labels'."""
        return (*self.inputs, self.labels)


@dataclass(frozen=True)
class Shard:
    """One file (or ``.npy`` pair) of samples: where each array is, and how many samples."""

    path: Path  # the .npz, or the inputs .npy
    members: Mapping[str, str]  # spec key -> zip member (.npz) or file path (.npy pair)
    names: Mapping[str, str]  # spec key -> the array's name in messages
    samples: int


def find_shards(path: Path, layout: Layout) -> list[Shard]:
    """Find and check the sample files of an ``.npz`` file or a folder.

    Returns:
        The shards in reading order, every array's name, shape and dtype checked.

    Raises:
        DataError: No such file or folder, an empty folder, or a bad array.
    """
    if path.is_dir():
        return _folder_shards(path, layout)
    if path.is_file() and path.suffix.lower() == ".npz":
        return [_npz_shard(path, layout)]
    if path.exists():
        raise DataError(f"{path}: expected an .npz file, a folder of .npz/.npy files or 'random'")
    raise DataError(f"{path}: no such file or folder")


def _folder_shards(folder: Path, layout: Layout) -> list[Shard]:
    """The sample files of a folder, in name order, each checked."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    labels = {p.name[: -len(LABELS_SUFFIX)]: p for p in files if p.name.endswith(LABELS_SUFFIX)}
    shards = []
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".npz":
            shards.append(_npz_shard(path, layout))
        elif suffix == ".npy" and not path.name.endswith(LABELS_SUFFIX):
            shards.append(_npy_shard(path, labels.pop(path.stem, None), layout))
    for stem, path in labels.items():
        raise DataError(f"{path}: labels without inputs: no {stem}.npy beside it")
    if not shards:
        raise DataError(f"{folder}: no .npz or .npy files in the folder")
    return shards


def _npz_shard(path: Path, layout: Layout) -> Shard:
    """Check one .npz file's array names and headers."""
    with _open_npz(path) as archive:
        names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        extra = [n for n in archive.namelist() if not n.endswith(".npy")]
        members = _match_arrays(path, names + extra, layout)
        headers = {}
        for spec in layout.specs:
            member, where = members[spec.key] + ".npy", f"{path.name}: array '{members[spec.key]}'"
            size = archive.getinfo(member).file_size
            with archive.open(member) as stream:
                headers[spec.key] = _read_header(stream, where, spec.expected(), size)
        samples = _check_headers(path, headers, members, layout)
    files = {key: name + ".npy" for key, name in members.items()}
    return Shard(path, files, members, samples)


def _npy_shard(path: Path, labels: Path | None, layout: Layout) -> Shard:
    """Check one ``NAME.npy`` + ``NAME.labels.npy`` pair."""
    if len(layout.inputs) != 1:
        listed = ", ".join(f"'{spec.key}'" for spec in layout.inputs)
        raise DataError(
            f"{path}: a .npy file holds one array, but the model has {len(layout.inputs)} "
            f"inputs ({listed}): give .npz files with one array per input name"
        )
    if labels is None:
        raise DataError(
            f"{path}: no {path.stem}{LABELS_SUFFIX} beside it; expected " + layout.labels.expected()
        )
    members = {layout.inputs[0].key: str(path), "": str(labels)}
    names = {layout.inputs[0].key: "inputs", "": LABELS}
    headers = {}
    for spec in layout.specs:
        file = Path(members[spec.key])
        where = f"{file.name}: array '{names[spec.key]}'"
        with _open_npy(file) as stream:
            headers[spec.key] = _read_header(stream, where, spec.expected(), file.stat().st_size)
    return Shard(path, members, names, _check_headers(path, headers, names, layout))


def _match_arrays(path: Path, names: Sequence[str], layout: Layout) -> dict[str, str]:
    """Map each spec to the array that holds it; refuse missing, ambiguous and unknown ones."""
    members: dict[str, str] = {}
    for spec in layout.specs:
        found = [alias for alias in spec.aliases if alias in names]
        if len(found) > 1:
            raise DataError(
                f"{path.name}: both arrays {' and '.join(repr(f) for f in found)} are there; "
                f"give one of them, {spec.expected()}"
            )
        if not found:
            if len(layout.inputs) > 1 and "inputs" in names and spec.key:
                raise DataError(
                    f"{path.name}: a single array 'inputs' for a model with "
                    f"{len(layout.inputs)} inputs; expected one array per input name: "
                    f"'{spec.key}' as {spec.expected()}"
                )
            raise DataError(
                f"{path.name}: no array '{spec.aliases[-1]}'; expected {spec.expected()} "
                f"(the file has: {', '.join(names) or 'no arrays'})"
            )
        members[spec.key] = found[0]
    unknown = [name for name in names if name not in members.values()]
    if unknown:
        wanted = ", ".join(" or ".join(map(repr, spec.aliases)) for spec in layout.specs)
        raise DataError(
            f"{path.name}: unknown array{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; expected only {wanted}"
        )
    return members


def _check_headers(
    path: Path, headers: Mapping[str, NpyHeader], names: Mapping[str, str], layout: Layout
) -> int:
    """Check each array's per-sample shape and dtype family; return the common N."""
    for spec in layout.specs:
        header, name = headers[spec.key], names[spec.key]
        if len(header.shape) == 0 or header.shape[1:] != spec.sample_shape:
            raise DataError(
                f"{path.name}: array '{name}' has shape {header.shape}; expected {spec.expected()}"
            )
        if not _dtype_fits(header.dtype, spec.kind):
            raise DataError(
                f"{path.name}: array '{name}' has dtype {header.dtype}; expected {spec.expected()}"
            )
    counts = {names[spec.key]: headers[spec.key].shape[0] for spec in layout.specs}
    if len(set(counts.values())) > 1:
        found = ", ".join(f"'{name}' {count}" for name, count in counts.items())
        raise DataError(
            f"{path.name}: arrays hold different numbers of samples N: {found}; expected the "
            "same N on axis 0 of every array"
        )
    samples = next(iter(counts.values()))
    if samples == 0:
        raise DataError(f"{path.name}: the arrays hold no samples (N = 0)")
    return samples


def _dtype_fits(dtype: np.dtype, kind: str) -> bool:
    if kind in ("float", "targets"):
        return dtype.kind == "f" and dtype.itemsize in FLOAT_SIZES
    if kind in ("int", "classes"):
        return dtype.kind in "iu"
    return dtype.kind == "b"


def open_readers(
    shard: Shard, layout: Layout, stack: contextlib.ExitStack
) -> dict[str, CheckedRows]:
    """Open one stream per array of a shard, positioned at its first sample."""
    readers = {}
    is_npz = shard.path.suffix.lower() == ".npz"
    archive = stack.enter_context(_open_npz(shard.path)) if is_npz else None
    for spec in layout.specs:
        member = shard.members[spec.key]
        file = shard.path if archive is not None else Path(member)
        stream = stack.enter_context(
            archive.open(member) if archive is not None else _open_npy(file)
        )
        where = f"{file.name}: array '{shard.names[spec.key]}'"
        header = _read_header(stream, where, spec.expected())
        readers[spec.key] = CheckedRows(RowReader(stream, header, where), spec, layout, where)
    return readers


@dataclass(frozen=True)
class CheckedRows:
    """Reads the samples of one array in order, converting and checking each chunk."""

    rows: RowReader
    spec: ArraySpec
    layout: Layout
    where: str

    def read(self, count: int) -> np.ndarray:
        """Return the next ``count`` samples in the spec's dtype, values checked."""
        start = self.rows.offset
        with np.errstate(over="ignore"):  # an overflow to Inf is reported below
            values = self.rows.read(count).astype(self.spec.dtype, order="C")
        samples = samples_text(start, count)
        if self.spec.kind in ("float", "targets") and not np.isfinite(values).all():
            raise DataError(
                f"{self.where} has NaN or Inf (in {samples}, as {self.spec.dtype}); "
                f"expected finite values, {self.spec.expected()}"
            )
        if self.spec.kind == "classes":
            check_class_labels(values, self.layout, self.where, samples)
        return values


def samples_text(start: int, count: int) -> str:
    """Return "sample 4" or "samples 4 to 7": where in the data a problem is."""
    return f"samples {start} to {start + count - 1}" if count > 1 else f"sample {start}"


def check_class_labels(values: np.ndarray, layout: Layout, where: str, samples: str) -> None:
    """Refuse class labels outside ``[0, C)`` that are not the ignore index.

    The one check of label values: sample files are checked as they are read, and the
    scorer checks every batch it is given (from a DataLoader, or a Batch made by hand).

    Args:
        values: The labels.
        layout: The classes C, the ignore index and the labels' spec.
        where: What holds them, e.g. "train.npz: array 'labels'" or "batch 2: labels".
        samples: Which samples they are (:func:`samples_text`).

    Raises:
        DataError: A label is out of range; the message names the first.
    """
    classes, ignore_index = layout.classes or 0, layout.ignore_index
    valid = (values >= 0) & (values < classes)
    if ignore_index is not None:
        valid |= values == ignore_index
    if not valid.all():
        bad = values[~valid].flat[0]
        bad_text = int(bad) if float(bad).is_integer() else float(bad)
        ignore = "" if ignore_index is None else f" or the ignore index {ignore_index}"
        raise DataError(
            f"{where} has label {bad_text} (in {samples}) outside [0, {classes}){ignore}; "
            f"expected {layout.labels.expected()}"
        )


@dataclass(frozen=True)
class NpyHeader:
    """The header of one ``.npy`` array.

    Attributes:
        shape: The array's shape.
        dtype: Its dtype (byte order as stored).
        fortran_order: True if stored column-major (rows are then not contiguous).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize


def _open_npz(path: Path) -> zipfile.ZipFile:
    """Open an ``.npz`` archive for reading.

    Raises:
        DataError: The file cannot be read or is not a zip archive.
    """
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise DataError(f"{path}: not a valid .npz file ({error})") from error
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror or error}") from error


def _open_npy(path: Path) -> IO[bytes]:
    """Open an ``.npy`` file for reading.

    Raises:
        DataError: The file cannot be read.
    """
    try:
        return path.open("rb")
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror or error}") from error


def _read_header(
    stream: IO[bytes], where: str, expected: str, size: int | None = None
) -> NpyHeader:
    """Read a ``.npy`` header, leaving ``stream`` at the first byte of data.

    Args:
        stream: The array's bytes from the start.
        where: Starts every message, e.g. "train.npz: array 'labels'".
        expected: What the array should be, for the message about object arrays.
        size: The stream's total size in bytes, if known: a shorter stream is refused.

    Raises:
        DataError: Not a ``.npy`` array, an unsupported format version, an object array,
            or data shorter than the header says.
    """
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except ValueError as error:
        raise DataError(f"{where} is not a readable .npy array ({error})") from error
    if dtype.hasobject:
        raise DataError(
            f"{where} holds Python objects (a pickled object array), which are not loaded "
            f"(allow_pickle=False); expected {expected}"
        )
    header = NpyHeader(tuple(shape), dtype, bool(fortran_order))
    if size is not None and size < stream.tell() + header.nbytes:
        raise DataError(
            f"{where} is truncated: its header says {header.shape} {header.dtype}, "
            "but the file holds less data"
        )
    return header


class RowReader:
    """Reads the rows (axis-0 slices) of one array in order, as stored (no conversion).

    A C-ordered array is read from the stream a few rows at a time; a Fortran-ordered one
    (rare: ``np.save`` of a transposed array) is read whole on the first call.
    """

    def __init__(self, stream: IO[bytes], header: NpyHeader, where: str) -> None:
        """Wrap ``stream``, positioned just after ``header``."""
        self._stream = stream
        self._header = header
        self._where = where
        self._offset = 0
        self._whole: np.ndarray | None = None

    @property
    def offset(self) -> int:
        """Index of the next row to be read."""
        return self._offset

    def read(self, count: int) -> np.ndarray:
        """Return the next ``count`` rows (a read-only array in the stored dtype).

        Raises:
            DataError: The stream ends early.
        """
        shape, dtype = self._header.shape, self._header.dtype
        start, self._offset = self._offset, self._offset + count
        if self._header.fortran_order:
            if self._whole is None:
                raw = self._read_bytes(self._header.nbytes)
                self._whole = np.frombuffer(raw, dtype).reshape(shape, order="F")
            return self._whole[start : start + count]
        row_bytes = math.prod(shape[1:]) * dtype.itemsize
        raw = self._read_bytes(row_bytes * count)
        return np.frombuffer(raw, dtype).reshape(count, *shape[1:])

    def _read_bytes(self, size: int) -> bytes:
        data = self._stream.read(size)
        if len(data) != size:
            raise DataError(f"{self._where} is truncated")
        return data
