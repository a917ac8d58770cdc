"""No downloads while a model is built (IMDLBenCo.modules.downloads): refused at once with one
message naming the model's line, cached weights load, IMDLBENCO_ALLOW_DOWNLOADS=1 lets requests out.

Nothing here touches the network: every request is refused before it leaves the process, or goes
to a closed port on this machine."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest
import torch
import torch.nn as nn

from IMDLBenCo.engine.builders import build_model
from IMDLBenCo.errors import UsageError
from IMDLBenCo.modules import downloads
from IMDLBenCo.registry import MODELS

timm = pytest.importorskip("timm")
huggingface_hub = pytest.importorskip("huggingface_hub")

REPO = "timm/convnext_atto.d2_in1k"


@pytest.fixture
def offline_caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch.hub caches of this test; downloads not allowed."""
    monkeypatch.delenv(downloads.ALLOW_VARIABLE, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    torch.hub.set_dir(str(tmp_path / "torch_hub"))
    yield tmp_path
    torch.hub.set_dir(str(tmp_path / "unused"))


@MODELS.register_module(force=True)
class TimmPretrained(nn.Module):
    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        self.backbone = timm.create_model("convnext_atto", pretrained=pretrained, num_classes=0)


@MODELS.register_module(force=True)
class TorchHubPretrained(nn.Module):
    URL = "https://download.example.org/weights/tiny_head-1234.pth"

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.head.load_state_dict(torch.hub.load_state_dict_from_url(self.URL, progress=False))


@MODELS.register_module(force=True)
class CopesWithoutWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        try:
            urllib.request.urlopen("https://weights.example.org/w.pth", timeout=5)
        except OSError:
            pass  # falls back to random weights
        self.head = nn.Linear(2, 2)


@MODELS.register_module(force=True)
class BadWidth(nn.Module):
    def __init__(self) -> None:
        raise ValueError("width must be positive")


def _closed_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hub_weights_are_refused_at_once_naming_the_line_and_the_repository(offline_caches):
    start = time.monotonic()
    with pytest.raises(UsageError) as info:
        build_model("TimmPretrained", {})
    assert time.monotonic() - start < 10  # not a minute of retries
    text = str(info.value)
    assert f"{__file__}, line" in text and "timm.create_model(\"convnext_atto\", pretrained=pretrained" in text
    assert f"repository '{REPO}'" in text and f"`hf download {REPO} model.safetensors --local-dir weights`" in text
    assert "pretrained=False" in text and "pretrained_cfg_overlay=dict(file='weights/model.safetensors')" in text
    assert "huggingface-cli" not in text and downloads.ALLOW_VARIABLE in text
    assert downloads.last_refusals() and downloads.last_refusals()[0].frame is not None


def test_weights_in_the_hub_cache_load(offline_caches):
    from safetensors.torch import save_file

    reference = timm.create_model("convnext_atto", pretrained=False, num_classes=0)
    torch.nn.init.constant_(reference.stem[0].weight, 0.125)
    snapshot = offline_caches / "hf" / f"models--{REPO.replace('/', '--')}" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    save_file(reference.state_dict(), str(snapshot / "model.safetensors"))
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("a" * 40)
    model = build_model("TimmPretrained", {})
    assert torch.equal(model.backbone.stem[0].weight, reference.stem[0].weight)


def test_torch_hub_downloads_are_refused_and_its_cache_loads(offline_caches):
    with pytest.raises(UsageError) as info:
        build_model("TorchHubPretrained", {})
    text = str(info.value)
    assert TorchHubPretrained.URL in text and f"{__file__}, line" in text and "torch.hub cache" in text
    cached = offline_caches / "torch_hub" / "checkpoints" / "tiny_head-1234.pth"
    cached.parent.mkdir(parents=True, exist_ok=True)
    weights = nn.Linear(4, 2).state_dict()
    torch.save(weights, cached)
    model = build_model("TorchHubPretrained", {})
    assert torch.equal(model.head.weight, weights["weight"])


def test_a_constructor_that_copes_without_weights_is_built_with_a_warning(offline_caches, caplog):
    with caplog.at_level("WARNING", logger="IMDLBenCo"):
        build_model("CopesWithoutWeights", {})
    assert "download(s) were refused" in caplog.text and "https://weights.example.org/w.pth" in caplog.text


def test_local_connections_and_code_outside_the_block_are_untouched(offline_caches):
    url = f"http://127.0.0.1:{_closed_local_port()}/x"
    with downloads.no_downloads():
        with pytest.raises(OSError) as refused:
            urllib.request.urlopen(url, timeout=5)  # urllib itself is refused inside a block
        assert isinstance(refused.value, downloads.DownloadRefused)
        session = huggingface_hub.get_session()
        assert downloads._hub_request_hook in session.event_hooks["request"]
        with socket.create_connection(("127.0.0.1", _listening_port()), timeout=5):
            pass  # a socket to this machine is not a download
    with pytest.raises(urllib.error.URLError) as after:
        urllib.request.urlopen(url, timeout=5)
    assert not isinstance(after.value.reason, downloads.DownloadRefused)  # a plain refused connection
    assert downloads._hub_request_hook not in huggingface_hub.get_session().event_hooks["request"]


_server = None


def _listening_port() -> int:
    global _server
    if _server is None:
        _server = socket.socket()
        _server.bind(("127.0.0.1", 0))
        _server.listen(1)
    return _server.getsockname()[1]


def test_downloads_allowed_by_the_environment(offline_caches, monkeypatch):
    monkeypatch.setenv(downloads.ALLOW_VARIABLE, "1")
    url = f"http://127.0.0.1:{_closed_local_port()}/x"
    with downloads.no_downloads():
        assert downloads._hub_request_hook not in huggingface_hub.get_session().event_hooks["request"]
        with pytest.raises(urllib.error.URLError) as allowed:
            urllib.request.urlopen(url, timeout=5)
        assert not isinstance(allowed.value.reason, downloads.DownloadRefused)


def test_other_errors_are_not_called_downloads(offline_caches):
    with pytest.raises(ValueError, match="width must be positive") as info:
        build_model("BadWidth", {})
    assert not isinstance(info.value, UsageError) and downloads.last_refusals() == []
    assert downloads.download_refused(ValueError("width must be positive"), "M") is None
