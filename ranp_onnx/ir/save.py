"""Writing models and documents: atomically, never over an input or an existing file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx

from ..errors import OutputExistsError, RanpError
from . import runtime
from .load import PROTOBUF_LIMIT

__all__ = [
    "PROTOBUF_LIMIT",
    "atomic_path",
    "check_output_path",
    "data_path",
    "external_data_files",
    "save_model",
    "write_text",
]

PathLike = str | os.PathLike[str]


def data_path(path: PathLike) -> Path:
    """Return where :func:`save_model` puts the external data of a model written at ``path``."""
    target = Path(path)
    return target.parent / f"{target.name}.data"


def external_data_files(model_path: PathLike) -> tuple[Path, ...]:
    """Return the external data files an ONNX file refers to, resolved.

    Empty if the model stores its tensors inline or the file is not a readable model (the
    loader reports that, with a better message).
    """
    path = Path(model_path)
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception:
        return ()
    found = set()
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {entry.key: entry.value for entry in tensor.external_data}.get("location")
            if location:
                found.add((path.parent / location).resolve())
    return tuple(sorted(found))


def _protected(inputs: Sequence[PathLike]) -> set[Path]:
    """The inputs and the external data files of the input models, resolved."""
    protected: set[Path] = set()
    for source in inputs:
        if Path(source).exists():
            protected.add(Path(source).resolve())
            protected.update(external_data_files(source))
    return protected


def check_output_path(
    path: PathLike,
    *,
    force: bool,
    inputs: Sequence[PathLike] = (),
    external_data: bool = False,
) -> Path:
    """Refuse an output path that exists (without ``force``) or is one of the inputs.

    Args:
        path: The output file.
        force: Allow replacing an existing file (never an input).
        inputs: Files the command reads; an input model's external data files count too.
        external_data: The model will be written with its data in ``<name>.data``: check
            that file as well.

    Returns:
        The path.

    Raises:
        OutputExistsError: The file (or its data file) exists and ``force`` is False.
        RanpError: The path (or its data file) is an input or an input's external data
            (never overwritten, even with force), or its folder does not exist.
    """
    target = Path(path)
    protected = _protected(inputs)
    if target.exists() and target.resolve() in protected:
        raise RanpError(f"{target}: refusing to overwrite the input file")
    if target.exists() and not force:
        raise OutputExistsError(f"{target} exists; pass `force` to overwrite it")
    if not target.parent.exists():
        raise RanpError(f"{target.parent}: no such folder")
    if external_data:
        _check_data_path(target, force, protected)
    return target


def _check_data_path(target: Path, force: bool, protected: set[Path]) -> None:
    data = data_path(target)
    if data.resolve() in protected:
        raise RanpError(
            f"{data}: refusing to overwrite the input's external data (the output "
            f"{target.name} keeps its tensors in {data.name}); choose another output name"
        )
    if data.exists() and not force:
        raise OutputExistsError(
            f"{data} exists (the external data of {target.name}); pass `force` to overwrite it"
        )


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success only."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def save_model(
    model: onnx.ModelProto,
    path: PathLike,
    *,
    external_data: bool = False,
    force: bool = False,
    inputs: Sequence[PathLike] = (),
) -> Path:
    """Write a model atomically at an IR version the installed onnxruntime loads.

    The model path itself is checked by :func:`check_output_path` beforehand; this checks
    the data file, which is only known to be needed here (models over 2 GB).

    Args:
        model: The model (not modified).
        path: Destination ``.onnx`` path; its folder must exist.
        external_data: Store initializers in ``<name>.data`` beside the model. Forced on
            for models over the 2 GB protobuf limit. Defaults to False.
        force: Replace an existing ``<name>.data``. Defaults to False.
        inputs: Files the command read: neither they nor an input model's external data
            are ever replaced. Defaults to none.

    Returns:
        The path written.

    Raises:
        OutputExistsError: The data file exists and ``force`` is False.
        RanpError: The data file is an input or an input's external data.
    """
    target = Path(path)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.ir_version = runtime.runtime_ir_version(model)
    external_data = external_data or out.ByteSize() > PROTOBUF_LIMIT
    if not external_data:
        with atomic_path(target) as temporary:
            onnx.save_model(out, str(temporary))
        return target
    _check_data_path(target, force, _protected(inputs))
    _save_external(out, target)
    return target


def _save_external(out: onnx.ModelProto, target: Path) -> None:
    """Write ``target`` and ``<name>.data``: staged in a private folder, data moved first."""
    data_name = data_path(target).name
    # onnx writes the data file next to the model under the given location; write both
    # into a private folder, then move the data first and the model last.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as folder:
        staged = Path(folder) / target.name
        onnx.save_model(
            out,
            str(staged),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
        try:
            # Tensors under the threshold stay inline: a model of only small tensors
            # writes no data file.
            if (Path(folder) / data_name).exists():
                os.replace(Path(folder) / data_name, target.parent / data_name)
            os.replace(staged, target)
        except OSError as error:
            raise RanpError(f"{target}: cannot write ({error})") from error
