"""Teacher checkpoints a run cannot use, through the CLI: exit 2, one "Error:" line saying what
is wrong, nothing written.

A missing file, a file that is not a state dict or not a torch file at all, another
architecture's weights, an ensemble member's, and pickles that would run code (refused in
kdbench's one line, without torch's warnings); tests/test_security.py checks that such code never
runs.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
import torch

from tests.helpers import assert_clean_failure, replace, with_matrix


def checkpoint_config(path: Path) -> str:
    return replace(
        "[teachers.lenet]\nepochs = 1", f'[teachers.lenet]\nepochs = 1\ncheckpoint = "{path}"'
    )


def test_checkpoint_missing(write_config, invoke, isolated, tmp_path):
    path = tmp_path / "nope.pt"
    result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(result, f"teacher checkpoint {path}: no such file", isolated)


def test_checkpoint_not_a_state_dict(write_config, invoke, isolated, tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3), 1], path)
    result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(
        result, f"teacher checkpoint {path}: not a state dict of tensors", isolated
    )


def test_checkpoint_not_a_torch_file(write_config, invoke, isolated, tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x00not a pickle\n" * 8)
    result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(
        result, f"teacher checkpoint {path}: not a loadable state dict (", isolated
    )


def test_checkpoint_of_another_architecture(write_config, invoke, isolated, tmp_path, registry):
    path = tmp_path / "lenet10.pt"
    lenet = registry.get("teachers", "lenet")()
    torch.save(lenet.build(10, (1, 28, 28)).state_dict(), path)  # 10 classes, the config has 3
    result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(
        result,
        f"teacher checkpoint {path} does not fit the architecture: Error(s) in loading",
        isolated,
    )
    assert "size mismatch" in result.stderr


def test_checkpoint_of_an_ensemble_member(write_config, invoke, isolated, tmp_path):
    path = tmp_path / "dict.pt"
    torch.save({"weight": "not a tensor"}, path)
    text = with_matrix(
        '[[matrix]]\nteachers = ["ens"]\nstudents = ["q2"]\ndatasets = ["mnist-0-2"]\n',
        f'[teachers.alex]\nplugin = "alexnet"\ncheckpoint = "{path}"\n'
        '[teachers.ens]\nplugin = "ensemble"\nmembers = ["lenet", "alex"]\n',
    )
    result = invoke("run", str(write_config(text)))
    assert_clean_failure(
        result, f"teacher checkpoint {path}: not a state dict of tensors", isolated
    )


# -- checkpoints that hold code: kdbench's one line, not torch's warnings --


class _Code:
    """A pickled object: loading it would run code of this module."""


@pytest.mark.parametrize(
    ("save", "message"),
    [
        (lambda p: torch.save(torch.nn.Linear(2, 2), p), "GLOBAL torch.nn.modules.linear.Linear"),
        (lambda p: torch.save({"w": _Code()}, p), "Unsupported global"),
        (lambda p: p.write_bytes(pickle.dumps({"w": _Code()}, protocol=4)), "not a loadable"),
    ],
    ids=["module", "custom-object", "plain-pickle"],
)
def test_pickled_checkpoint_is_refused_in_one_line(
    write_config, invoke, isolated, tmp_path, save, message
):
    path = tmp_path / "teacher.pt"
    save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a warning torch emits must reach `caught`
        result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(result, f"teacher checkpoint {path}: not a loadable state dict", isolated)
    assert message in result.stderr
    assert "torch.save(model.state_dict(), path)" in result.stderr
    shown = result.stdout + result.stderr + " ".join(str(w.message) for w in caught)
    for torch_text in ("pickle protocol", "In PyTorch 2.6", "Please use `torch.serialization"):
        assert torch_text not in shown
