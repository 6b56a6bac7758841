import doctest
import re
from pathlib import Path

import pytest
import torch

import metarl
import metarl.device
from metarl.device import DeviceUnavailableError, cuda_available, get_device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_cpu():
    device = get_device("cpu")
    assert device == torch.device("cpu")
    assert torch.zeros(2, device=device).device.type == "cpu"
    assert get_device(" CPU ") == torch.device("cpu")


def test_auto_without_cuda_is_cpu(no_cuda):
    assert get_device("auto") == torch.device("cpu")
    assert get_device() == torch.device("cpu")
    assert cuda_available() is False


def test_cuda_without_cuda_raises_clearly(no_cuda):
    with pytest.raises(
        DeviceUnavailableError,
        match=r"'cuda' was requested but CUDA is not available.*--device cpu",
    ):
        get_device("cuda")
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        get_device("cuda:0")


def test_auto_and_cuda_with_cuda(one_gpu):
    assert get_device("auto") == torch.device("cuda")
    assert get_device("cuda") == torch.device("cuda")
    assert get_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(
        DeviceUnavailableError, match=r"'cuda:1' was requested but only 1 CUDA device"
    ):
        get_device("cuda:1")


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda:x", "", "cuda0"])
def test_bogus_names_raise_value_error(name):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        get_device(name)


def test_non_string_raises():
    with pytest.raises(ValueError, match="device must be a string"):
        get_device(torch.device("cpu"))  # type: ignore[arg-type]


def test_only_device_module_checks_cuda_availability():
    package = Path(metarl.__file__).parent
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path != package / "device.py" and re.search(r"cuda\.is_available\(", path.read_text())
    ]
    assert offenders == []


def test_docstring_examples_run():
    result = doctest.testmod(metarl.device)
    assert result.attempted > 0 and result.failed == 0, result
