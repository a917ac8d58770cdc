"""A run folder belongs to one run.

Rule: while a run writes into ``--output_dir`` it holds an exclusive lock on
``.imdlbenco-run.lock`` there (``flock``: released by the operating system when the process
ends, however it ends), so a second run into the same folder stops at once with a message
instead of interleaving its files. A folder that already holds another run (its ``config.json``
names another script or other options, or a training run's checkpoints are there) is refused
unless the new run continues it (``train.py --resume``) or replaces it (``--overwrite``: the
old run's files are removed first). Running the same test command again is the same run: its
result files are replaced.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import runfolder, runoptions
from ..errors import UsageError

logger = logging.getLogger("IMDLBenCo.engine")

__all__ = ["RunFolder", "claim_run_folder", "run_files"]


_RUN_PATTERNS = ("checkpoint-*.pth", "events.out.tfevents.*", "*.tmp")
_RUN_DIRS = (runfolder.PRED_DIR, runfolder.CAM_DIR, runfolder.OVERLAY_DIR)


def run_files(folder: Path) -> list[Path]:
    """The files (and result folders) a run of ours writes that are present in ``folder``."""
    found = [folder / name for name in (*runfolder.KNOWN_FILES, runfolder.SUMMARY_CSV, runfolder.PER_IMAGE,
                                        runfolder.VAL_SPLIT, runfolder.SCORES, runfolder.INPUT_IMAGES,
                                        runfolder.PREDICT_CONFIG) if (folder / name).exists()]
    for pattern in _RUN_PATTERNS:
        found += sorted(p for p in folder.glob(pattern) if p.is_file())
    found += [folder / d for d in _RUN_DIRS if (folder / d).is_dir()]
    return found


def _describe(config: Mapping[str, Any]) -> str:
    args = config.get("args") if isinstance(config.get("args"), Mapping) else {}
    return (f"{config.get('script', '?')}.py, model {args.get('model', '?')}, started {config.get('started', '?')}")


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(old) | set(new)) - runoptions.volatile())
    return [k for k in keys if old.get(k) != new.get(k) and not k.startswith("_")]


class RunFolder:
    """The claimed run folder: holds the lock until :meth:`release` (or the ``with`` block ends)."""

    def __init__(self, folder: Path, handle: Any | None) -> None:
        self.folder = folder
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()  # closing the descriptor drops the flock
            finally:
                self._handle = None
                try:
                    (self.folder / runfolder.LOCK_FILE).unlink()
                except OSError:
                    pass

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def make_folder(folder: Path, option: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder}: this is a file, not a folder; choose another {option}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".imdlbenco-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"{option} {folder}: cannot write there ({err.strerror or err}); choose a folder you can "
                         f"write to") from None


def _lock(folder: Path, script: str) -> Any | None:
    path = folder / runfolder.LOCK_FILE
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; ownership checks still apply
        return None
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UsageError(f"--output_dir {folder}: another run is writing into this folder ({holder}); wait for it to "
                         f"end or choose another --output_dir (two runs in one folder would mix their files)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{script}.py, pid {os.getpid()} on {socket.gethostname()}, since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def claim_run_folder(folder: str, script: str, args_plain: Mapping[str, Any], *, resume: bool = False,
                     overwrite: bool = False, shared: bool = False, option: str = "--output_dir") -> RunFolder:
    """Create, lock and check ``folder`` for a run of ``script`` (rank 0 only).

    ``args_plain``: the run's options (plain values); ``resume``: the run continues the one in the
    folder (train.py --resume); ``overwrite``: another run's files are removed first; ``shared``:
    the script adds files to another run's folder (``benco cam`` beside ``test_save_images``), so
    only the lock applies. Raises UsageError with the way out when the folder holds another run.
    """
    path = Path(folder)
    make_folder(path, option)
    handle = _lock(path, script)
    try:
        if not shared:
            _check_owner(path, script, args_plain, resume, overwrite)
    except BaseException:
        handle and handle.close()
        raise
    return RunFolder(path, handle)


def _check_owner(path: Path, script: str, args: Mapping[str, Any], resume: bool, overwrite: bool) -> None:
    present = [p for p in run_files(path) if p.name != runfolder.LOCK_FILE]
    if not present:
        return
    config: dict[str, Any] = {}
    config_file = path / runfolder.CONFIG
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
    old_args = config.get("args") if isinstance(config.get("args"), Mapping) else {}
    same_script = config.get("script") == script
    differences = _differences(old_args, args) if same_script else []
    if overwrite:
        _remove(present, path)
        logger.info("--overwrite: removed the previous run's %d file(s) from %s", len(present), path)
        return
    if script == "train":
        if resume and (same_script or not config):
            return
        what = (f"a training run ({_describe(config)})" if same_script else
                f"another run ({_describe(config)})" if config else
                f"the files of another run ({', '.join(p.name for p in present[:4])}{' ...' if len(present) > 4 else ''})")
        raise UsageError(f"--output_dir {path} holds {what}: continue it with --resume auto, replace it with "
                         f"--overwrite, or choose another --output_dir (a new run here would mix its checkpoints "
                         f"with the old ones)")
    if same_script and not differences:
        return  # the same command again: its result files are replaced
    if not config:
        what = f"files of another run ({', '.join(p.name for p in present[:4])})"
    elif not same_script:
        what = f"another run ({_describe(config)})"
    else:
        shown = ", ".join(f"--{k} {old_args.get(k)!r} -> {args.get(k)!r}" for k in differences[:4])
        what = f"a run of {script}.py with other options ({shown}{' ...' if len(differences) > 4 else ''})"
    raise UsageError(f"--output_dir {path} holds {what}: replace it with --overwrite or choose another --output_dir "
                     f"(results of two runs in one folder could not be told apart)")


def _remove(paths: list[Path], folder: Path) -> None:
    import shutil

    for p in paths:
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError as err:
            raise UsageError(f"--overwrite: cannot remove {p} ({err.strerror or err})") from None
