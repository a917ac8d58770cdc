"""No downloads while a model is built: weights come from local files, or the user is told how.

A model's constructor that asks timm (or ``torch.hub``) for pretrained weights would reach for the
network; on a machine without it, the Hugging Face client retries for about a minute and then
fails with a message that names neither the user's code nor a fix. Inside :func:`no_downloads`
every request is refused before it leaves the process, through documented mechanisms only:

* the Hugging Face Hub: a request hook on the HTTP client the hub shares between its calls
  (``huggingface_hub.get_session()``; ``event_hooks`` of the client) raises the hub's own
  ``OfflineModeIsEnabled``, so the hub does what it does with ``HF_HUB_OFFLINE=1``: a file
  already in its cache loads, any other fails at once (no retries);
* everything else (``torch.hub``, ``urllib``, ``requests``): a Python audit hook (PEP 578,
  ``sys.addaudithook``) refuses ``urllib.Request`` events and name lookups of hosts other than
  this machine. ``torch.hub`` looks in its own cache before it downloads, so cached files load.

Each refusal records the URL and the innermost line of the model's code that led to it (from the
stack at that moment), and :func:`download_refused` turns the constructor's failure into one
:class:`~IMDLBenCo.errors.UsageError` naming that line, the file, and the two fixes.
``IMDLBENCO_ALLOW_DOWNLOADS=1`` lets downloads through.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import UsageError

__all__ = ["ALLOW_VARIABLE", "no_downloads", "download_refused", "Refusal", "last_refusals"]

logger = logging.getLogger(__name__)

#: environment variable that lets a model's constructor download weights
ALLOW_VARIABLE = "IMDLBENCO_ALLOW_DOWNLOADS"

#: host names that are this machine (a model may talk to a local service; those are not downloads)
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


class DownloadRefused(ConnectionRefusedError):
    """Raised (inside the library that tried) instead of a network request while a model is built."""


@dataclass(frozen=True)
class Refusal:
    """One refused request: what it was for and the model code's line that led to it."""

    url: str
    frame: traceback.FrameSummary | None

    @property
    def hub_repo(self) -> str | None:
        """``owner/name`` of a Hugging Face Hub file URL (``https://huggingface.co/<repo>/resolve/...``)."""
        parts = urlparse(self.url).path.strip("/").split("/")
        if "resolve" in parts and parts.index("resolve") >= 2:
            return "/".join(parts[:parts.index("resolve")])
        return None

    @property
    def file_name(self) -> str:
        return urlparse(self.url).path.rsplit("/", 1)[-1]


class _Gate:
    """Whether requests are refused now (a depth: blocks may nest), and what was refused."""

    def __init__(self) -> None:
        self.depth = 0
        self.refusals: list[Refusal] = []
        self.lock = threading.Lock()

    def refuse(self, url: str) -> DownloadRefused:
        refusal = Refusal(url=url, frame=_model_code_frame(traceback.extract_stack()))
        with self.lock:
            self.refusals.append(refusal)
        return DownloadRefused(f"download of {url} refused: IMDLBenCo does not download while a model is built")


_gate = _Gate()
_audit_hook_installed = False
_last: list[Refusal] = []


def last_refusals() -> list[Refusal]:
    """The requests refused in the last :func:`no_downloads` block (empty when none)."""
    return list(_last)


def _audit(event: str, args: Any) -> None:
    """Python audit hook: active only while a model is built (a no-op otherwise)."""
    if not _gate.depth:
        return
    if event == "urllib.Request":
        raise _gate.refuse(str(args[0]))
    if event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else str(args[0] or "")
        if host.lower() not in _LOCAL_HOSTS and not host.startswith("127."):
            raise _gate.refuse(f"//{host}:{args[1]}" if args[1] else f"//{host}")


def _hub_request_hook(request: Any) -> None:
    """Request hook on the Hugging Face Hub's shared client: in a block, the hub is offline."""
    if not _gate.depth:
        return
    from huggingface_hub.errors import OfflineModeIsEnabled

    _gate.refuse(str(request.url))
    raise OfflineModeIsEnabled(f"Cannot reach {request.url}: IMDLBenCo does not download while a model is built "
                               f"(set {ALLOW_VARIABLE}=1 to allow it)")


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """The hub's shared client refuses requests inside the block (see the module docstring).

    Only when the hub client is loaded (timm loads it): making its HTTP client costs a second, and
    a model that imports the hub inside its constructor still meets the audit hook."""
    huggingface_hub = sys.modules.get("huggingface_hub")
    if huggingface_hub is None:
        yield
        return
    try:
        session = huggingface_hub.get_session()
        hooks = {name: list(funcs) for name, funcs in session.event_hooks.items()}
    except (AttributeError, TypeError):  # a client without request hooks: the audit hook still refuses
        yield
        return
    session.event_hooks = {**hooks, "request": [*hooks.get("request", []), _hub_request_hook]}
    try:
        yield
    finally:
        session.event_hooks = hooks


@contextlib.contextmanager
def no_downloads() -> Iterator[None]:
    """Refuse every network request inside the block (unless ``IMDLBENCO_ALLOW_DOWNLOADS=1``);
    files already in the Hugging Face or torch.hub cache still load."""
    global _audit_hook_installed, _last
    if os.environ.get(ALLOW_VARIABLE, "") not in ("", "0"):
        yield
        return
    if not _audit_hook_installed:
        sys.addaudithook(_audit)  # cannot be removed: it does nothing outside a block
        _audit_hook_installed = True
    with _gate.lock:
        if _gate.depth == 0:
            _gate.refusals = []
        _gate.depth += 1
    try:
        with _hub_offline():
            yield
    finally:
        with _gate.lock:
            _gate.depth -= 1
            _last = list(_gate.refusals)
    if _last:  # the constructor coped without the weights (else download_refused explains)
        logger.warning("while the model was built, %d download(s) were refused (first: %s, %s); it may be "
                       "using random weights where it asked for pretrained ones. Set %s=1 to allow downloads.",
                       len(_last), _last[0].url, _where(_last[0]), ALLOW_VARIABLE)


def _model_code_frame(stack: list[traceback.FrameSummary]) -> traceback.FrameSummary | None:
    """The innermost frame of model code in ``stack``: the user's files, or IMDLBenCo's model zoo and
    modules; not the libraries (site-packages, the standard library) nor this module or the engine.
    That is the line that asked for the weights."""
    package = Path(__file__).resolve().parents[1]
    stdlib = str(Path(os.__file__).resolve().parent)
    model_dirs = (str(package / "model_zoo"), str(package / "modules"), str(package / "demo"))
    found = None
    for frame in stack:
        name = frame.filename or ""
        if not name or name.startswith("<"):
            continue
        path = str(Path(name).resolve())
        if "site-packages" in path or "dist-packages" in path or path.startswith(stdlib) \
                or path == str(Path(__file__).resolve()):
            continue
        if path.startswith(str(package)) and not path.startswith(model_dirs):
            continue
        found = frame
    return found


def _where(refusal: Refusal) -> str:
    frame = refusal.frame
    if frame is None:
        return "the model's constructor"
    return f"{frame.filename}, line {frame.lineno}: `{(frame.line or '').strip()}`"


def _is_download_failure(err: BaseException) -> bool:
    """An error raised because a request was refused (the hub's and our error types, by name: no
    import of the hub is needed to recognise them)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        names = {cls.__name__ for cls in type(err).__mro__}
        if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "DownloadRefused"}:
            return True
        # urllib's URLError keeps the cause in ``reason``
        reason = getattr(err, "reason", None)
        err = err.__cause__ or err.__context__ or (reason if isinstance(reason, BaseException) else None)
    return False


def download_refused(err: BaseException, model_name: str) -> UsageError | None:
    """One clear error for a download attempted while building ``model_name``, or None when
    ``err`` is something else."""
    refusals = last_refusals()
    if not refusals and not _is_download_failure(err):
        return None
    if refusals:
        # the weights' request, not the hub client's own calls (``/api/...``) made on the way
        first = next((r for r in refusals if r.hub_repo), None) or next(
            (r for r in refusals if not urlparse(r.url).path.startswith("/api/")), refusals[0])
        where = _where(first) if first.frame else f"the constructor of {model_name}"
        what = (f"the Hugging Face Hub repository {first.hub_repo!r} ({first.file_name})" if first.hub_repo
                else f"{first.url}")
    else:  # refused by other means (e.g. HF_HUB_OFFLINE=1 in the environment)
        frame = _model_code_frame(traceback.extract_tb(err.__traceback__))
        first = None
        where = (f"{frame.filename}, line {frame.lineno}: `{(frame.line or '').strip()}`" if frame
                 else f"the constructor of {model_name}")
        what = "the network"
    if first is not None and first.hub_repo:
        local = f"weights/{first.file_name}"
        get_it = (f"on a machine with network run `hf download {first.hub_repo} {first.file_name} --local-dir weights` "
                  f"and load it from its path, e.g. timm.create_model(name, pretrained=True, "
                  f"pretrained_cfg_overlay=dict(file='{local}')) or a constructor option that takes the path; "
                  f"`hf download {first.hub_repo}` on this machine puts it in the Hugging Face cache, from which it "
                  f"loads as it is")
    elif first is not None:
        get_it = (f"download {first.url} once on a machine with network and load it from its path, e.g. "
                  f"timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file='/path/to/"
                  f"{first.file_name or 'weights.pth'}')) or a constructor option that takes the path; a file "
                  f"already in the torch.hub cache loads as it is")
    else:
        get_it = ("get the weight file once on a machine with network (`hf download <repository>`, or the model's "
                  "release page) and load it from its path, e.g. timm.create_model(name, pretrained=True, "
                  "pretrained_cfg_overlay=dict(file='/path/to/model.safetensors')) or a constructor option that "
                  "takes the path; files already in the Hugging Face cache load as they are")
    # the constructor's own error, when it is not the refusal itself (a library that rewords it)
    then = "" if _is_download_failure(err) else f" (the constructor then failed: {type(err).__name__}: {err})"
    return UsageError(
        f"{where} asks for pretrained weights from {what}, and IMDLBenCo does not download at run time "
        f"(offline it would retry for a minute and fail). Either pass pretrained=False (random "
        f"initialisation), or {get_it}. Set {ALLOW_VARIABLE}=1 to allow downloads.{then}"
    )
