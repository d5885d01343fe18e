"""Input paths checked before anything heavy is imported: a missing file or a special one (a FIFO
would block the read forever) is one line in well under a second, not after torch has loaded."""

from __future__ import annotations

from pathlib import Path

from thawkit.errors import DataError

def check_data_path(path: Path, fix: str = "check the path") -> None:
    """The path names a regular file or a folder: missing paths and special files (a FIFO, which
    would block the read forever; a device; a socket) are one line, not a hang."""
    import stat

    if str(path).startswith("hf:"):  # a Hub dataset (thawkit.data.hub_datasets), read through `datasets`
        return
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; fix: {fix}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}); fix: {fix}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise DataError(f"{path}: {kind}, not a data file; fix: write the data to a regular file and pass that")


__all__ = ["check_data_path"]
