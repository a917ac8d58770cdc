"""No downloads while a model is built: weights come from local files, or the user is told how.

A model's constructor that asks timm (or ``torch.hub``) for pretrained weights would reach for the
network; on a machine without it, the Hugging Face client retries for about a minute and then
fails with a message that names neither the user's code nor a fix. :func:`no_downloads` puts the
Hub client in offline mode and blocks ``torch.hub`` downloads while the model is built, so the
attempt fails at once (a file already in the Hugging Face cache still loads), and
:func:`download_refused` turns that failure into one :class:`~IMDLBenCo.errors.UsageError` that
names the user's file and line and says what to do. ``IMDLBENCO_ALLOW_DOWNLOADS=1`` lets
downloads through.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator, Optional

from ..errors import UsageError

__all__ = ["ALLOW_VARIABLE", "no_downloads", "download_refused"]

#: environment variable that lets a model's constructor download weights
ALLOW_VARIABLE = "IMDLBENCO_ALLOW_DOWNLOADS"


class _DownloadBlocked(OSError):
    """Raised instead of a torch.hub download while a model is built."""


@contextlib.contextmanager
def no_downloads() -> Iterator[None]:
    """Hub offline mode and no ``torch.hub`` downloads inside the block (unless allowed)."""
    if os.environ.get(ALLOW_VARIABLE, "") not in ("", "0"):
        yield
        return
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is None:
        try:
            import huggingface_hub.constants as hub_constants  # type: ignore[no-redef]
        except ImportError:
            hub_constants = None
    old_offline = getattr(hub_constants, "HF_HUB_OFFLINE", None)
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = True
    torch_hub = sys.modules.get("torch.hub")
    old_download = getattr(torch_hub, "download_url_to_file", None)

    def refuse(url, *args, **kwargs):
        raise _DownloadBlocked(f"download of {url} refused: IMDLBenCo does not download at run time")

    if torch_hub is not None:
        torch_hub.download_url_to_file = refuse
    try:
        yield
    finally:
        if hub_constants is not None:
            hub_constants.HF_HUB_OFFLINE = old_offline
        if torch_hub is not None and old_download is not None:
            torch_hub.download_url_to_file = old_download


def _is_download_failure(err: BaseException) -> bool:
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "_DownloadBlocked"})


def _user_frame(tb) -> Optional[traceback.FrameSummary]:
    """The innermost frame of the user's own code: not in site-packages, the standard library
    or IMDLBenCo itself (that is the line that asked for the weights)."""
    package = str(Path(__file__).resolve().parents[1])
    stdlib = str(Path(os.__file__).resolve().parent)
    found = None
    for frame in traceback.extract_tb(tb):
        path = str(Path(frame.filename).resolve()) if frame.filename and not frame.filename.startswith("<") else ""
        if not path or "site-packages" in path or "dist-packages" in path or path.startswith(package) \
                or path.startswith(stdlib):
            continue
        found = frame
    return found


def _repo_in(tb) -> Optional[str]:
    """The Hub repository the failed download was for (a local of the Hub client's frames)."""
    repo = None
    while tb is not None:
        value = tb.tb_frame.f_locals.get("repo_id") or tb.tb_frame.f_locals.get("hf_hub_id")
        if isinstance(value, str):
            repo = value
        tb = tb.tb_next
    return repo


def download_refused(err: BaseException, model_name: str) -> Optional[UsageError]:
    """One clear error for a download attempted while building ``model_name``, or None when
    ``err`` is something else."""
    if not _is_download_failure(err):
        return None
    tb = err.__traceback__
    frame = _user_frame(tb)
    repo = _repo_in(tb)
    where = (f"{frame.filename}, line {frame.lineno}: `{(frame.line or '').strip()}`" if frame else
             f"the constructor of {model_name}")
    what = f"the Hugging Face Hub repository {repo!r}" if repo else "the network"
    return UsageError(
        f"{where} asks for pretrained weights from {what}, and IMDLBenCo does not download at run time "
        f"(offline it would retry for a minute and fail). Either pass pretrained=False (random "
        f"initialisation), or get the weight file once on a machine with network "
        f"({'`huggingface-cli download ' + repo + '`, ' if repo else ''}or the model's release page) and load it "
        f"from its path, e.g. timm.create_model(name, pretrained=True, "
        f"pretrained_cfg_overlay=dict(file='/path/to/model.safetensors')) or a constructor option that takes the "
        f"path. Weights already in the Hugging Face cache load as they are; set {ALLOW_VARIABLE}=1 to allow "
        f"downloads."
    )
