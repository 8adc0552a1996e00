"""Unit tests of the grading machinery and the student-facing helpers."""
from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from graders.checks import common
from graders.checks import l2_conditioning as l2
from sdcourse import get_device, testing


def test_forbid_traps_the_oracle_at_home_and_where_the_notebook_bound_it(monkeypatch):
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "group_norm_alias", F.group_norm, raising=False)
    with common.forbid(["torch.nn.functional.group_norm"]):
        with pytest.raises(common.OracleCalled, match="write it yourself"):
            F.group_norm(torch.randn(1, 2, 2, 2), 1)
        with pytest.raises(common.OracleCalled):
            main.group_norm_alias(torch.randn(1, 2, 2, 2), 1)
        with pytest.raises(common.OracleCalled):   # the nn.Module path reaches F.group_norm too
            torch.nn.GroupNorm(1, 2)(torch.randn(1, 2, 2, 2))
    assert main.group_norm_alias is F.group_norm  # restored
    F.group_norm(torch.randn(1, 2, 2, 2), 1)


def test_forbid_traps_classes():
    from diffusers.models.normalization import AdaGroupNorm
    import diffusers.models.normalization as norm_mod
    with common.forbid(["diffusers.models.normalization.AdaGroupNorm"]):
        with pytest.raises(common.OracleCalled):
            norm_mod.AdaGroupNorm(4, 4, 2)
    assert norm_mod.AdaGroupNorm is AdaGroupNorm


def test_tampered_comparison_is_detected(monkeypatch):
    fake = eval("lambda *a, **k: True", {"__name__": "__main__"})
    monkeypatch.setattr(torch, "allclose", fake)
    with pytest.raises(common.CheckFailed, match="replaced by code in this notebook"):
        common.assert_untampered()


def test_a_check_reports_a_crash_with_the_input_that_caused_it():
    def broken(t, dim, max_period=10000):
        raise IndexError("boom")
    with pytest.raises(common.CheckFailed, match=r"IndexError: boom\non a fresh input: t=tensor"):
        l2.check_timestep_embedding_shape(broken)


def test_a_check_says_not_implemented():
    def stub(*a, **k):
        raise NotImplementedError()
    with pytest.raises(common.CheckFailed, match="not implemented yet"):
        l2.check_group_norm_values(stub)


def test_checks_write_nothing_to_stderr(capfd):
    import warnings

    def noisy(x, num_groups, eps=1e-5):
        warnings.warn("noise")
        print("to stderr", file=sys.stderr)
        b = x.shape[0]
        g = x.reshape(b, num_groups, -1)
        return ((g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, keepdim=True, unbiased=False) + eps)).reshape(x.shape)
    l2.check_group_norm_values(noisy)
    assert capfd.readouterr().err == ""


def test_expect_close_names_the_matching_suspect():
    good = torch.zeros(3)
    wrong = torch.ones(3)
    with pytest.raises(common.CheckFailed, match="the sines first"):
        common.expect_close(wrong, good, "emb", suspects=[common.Suspect("s", torch.ones(3), "the sines first")])
    with pytest.raises(common.CheckFailed, match="max \\|difference\\| = 1"):
        common.expect_close(wrong, good, "emb")


def test_visible_helpers_teach():
    with pytest.raises(AssertionError, match=r"has shape \(2,\), expected \(3,\)"):
        testing.check_shape(torch.zeros(2), (3,), "x")
    with pytest.raises(AssertionError, match=r"max \|difference\| = 0.5 at index \(1,\)"):
        testing.check_close(torch.tensor([0.0, 0.5]), [0.0, 0.0], "x")
    with pytest.raises(AssertionError, match="dtype"):
        testing.check_dtype(torch.zeros(1, dtype=torch.float64), torch.float32)
    testing.check_close(torch.tensor([1.0]), [1.0 + 1e-7])


def test_get_device_env_override(monkeypatch):
    monkeypatch.setenv("SDCOURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("SDCOURSE_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device()
