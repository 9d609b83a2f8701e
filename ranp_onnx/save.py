"""Writing models and documents: atomically, never over an input or an existing file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx

from . import runtime
from .errors import OutputExistsError, RanpError
from .load import PROTOBUF_LIMIT

__all__ = ["PROTOBUF_LIMIT", "atomic_path", "check_output_path", "save_model", "write_text"]


def check_output_path(
    path: str | os.PathLike[str], *, force: bool, inputs: Sequence[str | os.PathLike[str]] = ()
) -> Path:
    """Refuse an output path that exists (without ``force``) or is one of the inputs.

    Returns:
        The path.

    Raises:
        OutputExistsError: The file exists and ``force`` is False.
        RanpError: The path is one of ``inputs`` (never overwritten, even with force) or
            its folder does not exist.
    """
    target = Path(path)
    for source in inputs:
        if Path(source).exists() and target.exists() and target.resolve() == Path(source).resolve():
            raise RanpError(f"{target}: refusing to overwrite the input file")
    if target.exists() and not force:
        raise OutputExistsError(f"{target} exists; pass --force to overwrite it")
    if not target.parent.exists():
        raise RanpError(f"{target.parent}: no such folder")
    return target


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
    model: onnx.ModelProto, path: str | os.PathLike[str], *, external_data: bool = False
) -> Path:
    """Write a model atomically at an IR version the installed onnxruntime loads.

    Args:
        model: The model (not modified).
        path: Destination ``.onnx`` path; its folder must exist.
        external_data: Store initializers in ``<name>.data`` beside the model. Forced on
            for models over the 2 GB protobuf limit.

    Returns:
        The path written.
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
    data_name = f"{target.name}.data"
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
    return target
