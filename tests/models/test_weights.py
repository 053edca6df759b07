"""Checkpoint reading and strict loading, on real files made from timm and torchvision models."""

from __future__ import annotations

import hashlib
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from resnest_deploy.errors import CheckpointError, DownloadError, WeightsMismatchError
from resnest_deploy.models import create_model, download_weights, read_checkpoint
from resnest_deploy.models.synthetic import synthetic_images
from tests.conftest import assert_one_line_error
from tests.references import build_reference, randomize_norms


def _reference_state(arch: str, num_classes: int | None = None) -> tuple[torch.nn.Module, dict]:
    """A reference model with random BatchNorm affines, and its state dict (optionally with a new head)."""
    torch.manual_seed(0)
    ref = build_reference(arch)
    if num_classes is not None:
        ref.fc = torch.nn.Linear(ref.fc.in_features, num_classes)
    randomize_norms(ref, seed=4)
    ref.eval()
    return ref, dict(ref.state_dict())


def _same_output(model: torch.nn.Module, ref: torch.nn.Module) -> float:
    x = synthetic_images(1, 64, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return (model(x) - ref(x)).abs().max().item()


@pytest.mark.parametrize(
    "arch, wrap",
    [
        ("resnet18", "bare"),  # torchvision layout, bare state dict
        ("skresnet18", "state_dict"),  # timm SK layout under 'state_dict'
        ("resnest14d", "model"),  # official/timm ResNeSt layout under 'model'
        ("resnet18", "module"),  # DataParallel 'module.' prefixes
    ],
)
def test_loads_pth_in_each_layout(tmp_path, arch, wrap):
    ref, state = _reference_state(arch)
    if wrap == "module":
        obj = {f"module.{k}": v for k, v in state.items()}
    elif wrap == "bare":
        obj = state
    else:
        obj = {wrap: state, "epoch": 3, "arch": arch}
    path = tmp_path / f"{arch}.pth"
    torch.save(obj, path)
    model = create_model(arch, weights=path)
    assert _same_output(model, ref) <= 1e-5
    assert model.weights_info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.weights_info.kind == "checkpoint"


def test_loads_safetensors_without_num_batches_tracked(tmp_path):
    ref, state = _reference_state("skresnet18")
    state = {k: v.contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "sk.safetensors"
    save_file(state, str(path))
    model = create_model("skresnet18", weights=path)
    assert model.weights_info.layout == "timm"
    assert _same_output(model, ref) <= 1e-5


def test_head_size_is_read_from_checkpoint(tmp_path):
    ref, state = _reference_state("resnet18", num_classes=10)
    path = tmp_path / "ft.pth"
    torch.save(state, path)
    model = create_model("resnet18", weights=path)
    assert model.config.num_classes == 10
    assert _same_output(model, ref) <= 1e-5
    with pytest.raises(WeightsMismatchError, match="10 classes"):
        create_model("resnet18", weights=path, num_classes=5)


def test_checkpoint_of_another_arch_names_keys_and_the_arch_it_fits(tmp_path):
    _, state = _reference_state("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError) as info:
        create_model("resnet34", weights=path)
    message = str(info.value)
    assert "fits resnet18" in message
    assert "missing" in message and "layer1.2.conv1.weight" in message


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "extra": Payload()}, path)
    raw = tmp_path / "evil-raw.pth"
    raw.write_bytes(pickle.dumps(Payload()))
    for candidate in (path, raw):
        with pytest.raises(CheckpointError, match="refused|not a PyTorch"):
            read_checkpoint(candidate)
    assert not marker.exists(), "the pickle payload ran"


def test_truncated_and_non_checkpoint_files(tmp_path):
    _, state = _reference_state("resnet18")
    good = tmp_path / "good.pth"
    torch.save(state, good)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    for path, pattern in (
        (truncated, "truncated"), (text, "not a PyTorch or safetensors"), (empty, "empty"), (bad_st, "safetensors"),
        (tmp_path / "missing.pth", "no such"),
    ):
        with pytest.raises(CheckpointError, match=pattern):
            read_checkpoint(path)


def test_cli_bad_checkpoints_give_one_line_and_exit_2(tmp_path, cli):
    _, state = _reference_state("resnet18")
    good = tmp_path / "r18.pth"
    torch.save(state, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:1000])
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_Evil(str(marker))))
    assert_one_line_error(cli("show", "resnet34", "--weights", str(good)), "does not fit resnet34", "resnet18")
    assert_one_line_error(cli("show", "resnet18", "--weights", str(cut)), "truncated")
    assert_one_line_error(cli("show", "resnet18", "--weights", str(evil)), "refused")
    assert not marker.exists()
    assert_one_line_error(cli("show", "resnet18", "--weights", str(tmp_path / "nope.pth")), "no such")


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_download_checks_hash_on_a_file_url(tmp_path):
    source = tmp_path / "src" / "resnet18-abcdef12.pth"
    source.parent.mkdir()
    torch.save({"w": torch.arange(10.0)}, source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = tmp_path / "cache"
    seen = []
    path = download_weights(source.as_uri(), digest[:8], dest, progress=lambda phase, done, total: seen.append(done))
    assert path == dest / source.name and path.read_bytes() == source.read_bytes()
    assert seen and seen[-1] == source.stat().st_size
    assert download_weights(source.as_uri(), digest[:8], dest) == path  # cached copy reused
    with pytest.raises(DownloadError, match="does not start with"):
        download_weights(source.as_uri(), "00000000" if not digest.startswith("0") else "ffffffff", tmp_path / "c2")
    assert not (tmp_path / "c2").exists(), "a file with a bad hash (or the folder made for it) was left behind"
    with pytest.raises(DownloadError):
        download_weights((tmp_path / "absent.pth").as_uri(), "00", tmp_path / "c3")


def test_training_checkpoints_people_actually_save(tmp_path):
    """Training checkpoints hold the weights under a wrapper key next to epoch, optimizer state and metrics; a
    best accuracy stored as a tensor must not be mistaken for the state dict. All read with weights_only=True."""
    ref, state = _reference_state("resnet18")
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    ref(synthetic_images(2, 64, torch.Generator().manual_seed(1))).sum().backward()
    optimizer.step()  # momentum buffers: a real optimizer state dict full of tensors
    ref.eval()
    state = dict(ref.state_dict())
    # The PyTorch ImageNet example's save_checkpoint({...}) dict.
    imagenet = {"epoch": 12, "arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in state.items()},
                "best_acc1": torch.tensor(71.3), "optimizer": optimizer.state_dict(),
                "scheduler": {"step_size": 30, "gamma": 0.1, "last_epoch": 12}}
    # Lightning's layout (Lightning itself is not a test dependency): weights under state_dict, prefixed by the
    # LightningModule attribute holding the network, beside a loss module's buffers and trainer state.
    lightning = {"epoch": 3, "global_step": 900, "pytorch-lightning_version": "2.5.0",
                 "state_dict": {**{f"model.{k}": v for k, v in state.items()},
                                "criterion.weight": torch.ones(1000)},
                 "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [{"last_epoch": 3}],
                 "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.71)}},
                 "hyper_parameters": {"lr": 0.1, "arch": "resnet18"}}
    for name, obj in (("imagenet", imagenet), ("lightning", lightning)):
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        model = create_model("resnet18", weights=path)
        assert _same_output(model, ref) <= 1e-5, name


def test_timm_train_script_checkpoint(tmp_path):
    """A real checkpoint written by timm's CheckpointSaver (what timm's train.py uses): weights, EMA weights,
    optimizer state and the argparse arguments, which weights_only loading allows as plain data."""
    import argparse

    from timm.utils import CheckpointSaver, ModelEmaV3

    ref, _ = _reference_state("resnest14d")
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.1)
    args = argparse.Namespace(model="resnest14d", lr=0.1, epochs=2)
    ema = ModelEmaV3(ref)
    with torch.no_grad():  # an EMA that has drifted from the weights, so loading the wrong one shows
        for p in ema.module.parameters():
            p.mul_(0.5)
    saver = CheckpointSaver(ref, optimizer, args=args, model_ema=ema, checkpoint_dir=str(tmp_path),
                            recovery_dir=str(tmp_path), max_history=1)
    saver.save_checkpoint(epoch=1, metric=0.5)
    path = next(tmp_path.glob("checkpoint-*.pth.tar"))
    with torch.serialization.safe_globals([argparse.Namespace]):
        assert "state_dict_ema" in torch.load(path, weights_only=True, map_location="cpu")
    model = create_model("resnest14d", weights=path)
    assert _same_output(model, ref.eval()) <= 1e-5  # the weights (state_dict), not the EMA
    assert _same_output(model, ema.module.eval()) > 1e-3


def test_pickled_code_beside_a_state_dict_is_still_refused(tmp_path):
    """Allowing argparse's plain data does not open the door: any other global in the file is refused unrun."""
    _, state = _reference_state("resnet18")

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": state, "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)
