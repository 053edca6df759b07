"""A small trained ResNeSt on a procedurally drawn 10-class image set, for accuracy checks that mean something.

A random-init network's top-1 "accuracy" is noise, so INT8/FP16 acceptance is measured on this model instead:
resnest14d at 32 px trained for a few epochs on shapes and textures drawn with Pillow and written as real PNG
files in an ImageFolder tree (``train/`` and a held-out ``val/``). Training uses the same eval preprocessing
the tool applies (``calibration.images``), so the exported model sees what it was trained on.

The result (images, checkpoint, FP32 ONNX) is cached on disk, keyed by the generator/training settings, this
file, the code that builds and exports the model and the torch/onnx versions, so it is built once per machine and
code state (<= 90 s on 2 CPU cores) and reused between runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("disc", "square", "triangle", "ring", "plus", "cross", "hstripes", "vstripes", "checker", "dots")
ARCH = "resnest14d"


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the trained model; its hash names the cache folder."""

    image_side: int = 64
    size: int = 32
    train_per_class: int = 120
    val_per_class: int = 60
    epochs: int = 5
    batch: int = 64
    lr: float = 0.08
    seed: int = 0

    def key(self) -> str:
        """The recipe, and the code and libraries that build the model from it: this file, the models, the
        exporter and the preprocessing; torch and onnx by version (a change in any rebuilds the cache)."""
        from importlib import metadata

        root = Path(__file__).resolve().parent.parent
        code = [Path(__file__), *sorted((root / "resnest_deploy" / "models").glob("*.py")),
                *sorted((root / "exporters").glob("*.py")), root / "calibration" / "images.py",
                root / "calibration" / "pixels.py"]
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        for path in code:
            digest.update(path.name.encode() + path.read_bytes())
        for package in ("torch", "onnx"):
            digest.update(f"{package}=={metadata.version(package)}".encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TrainedModel:
    root: Path
    checkpoint: Path
    onnx: Path
    train_dir: Path
    val_dir: Path
    info: dict


def _draw(kind: str, side: int, rng: np.random.Generator) -> Image.Image:
    """One image: a bright shape or texture patch in the centre half, on a dark noisy background."""
    bg = rng.integers(0, 120, size=3)
    noise = rng.normal(0, 24, size=(side, side, 3))
    base = np.clip(bg + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(img)
    fg = tuple(int(v) for v in rng.integers(100, 256, size=3))
    c = side / 2 + rng.uniform(-side / 16, side / 16, size=2)
    r = rng.uniform(side / 12, side / 5)
    x0, y0, x1, y1 = c[0] - r, c[1] - r, c[0] + r, c[1] + r
    width = max(2, int(r / 3))
    if kind == "disc":
        draw.ellipse((x0, y0, x1, y1), fill=fg)
    elif kind == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fg)
    elif kind == "triangle":
        draw.polygon([(c[0], y0), (x1, y1), (x0, y1)], fill=fg)
    elif kind == "ring":
        draw.ellipse((x0, y0, x1, y1), outline=fg, width=width)
    elif kind == "plus":
        draw.line((c[0], y0, c[0], y1), fill=fg, width=width)
        draw.line((x0, c[1], x1, c[1]), fill=fg, width=width)
    elif kind == "cross":
        draw.line((x0, y0, x1, y1), fill=fg, width=width)
        draw.line((x0, y1, x1, y0), fill=fg, width=width)
    elif kind in ("hstripes", "vstripes", "checker"):
        step = max(2, int(r / 2.5))
        for i, v in enumerate(np.arange(-r, r, step)):
            if i % 2:
                continue
            if kind == "hstripes":
                draw.rectangle((x0, c[1] + v, x1, c[1] + v + step - 1), fill=fg)
            elif kind == "vstripes":
                draw.rectangle((c[0] + v, y0, c[0] + v + step - 1, y1), fill=fg)
            else:
                for j, u in enumerate(np.arange(-r, r, step)):
                    if (i // 2 + j) % 2 == 0:
                        draw.rectangle((c[0] + u, c[1] + v, c[0] + u + step - 1, c[1] + v + step - 1), fill=fg)
    elif kind == "dots":
        d = r / 3
        for dx, dy in ((-1, -1), (1, 1)):
            draw.ellipse((c[0] + dx * r / 1.6 - d, c[1] + dy * r / 1.6 - d, c[0] + dx * r / 1.6 + d,
                          c[1] + dy * r / 1.6 + d), fill=fg)
    return img


def write_dataset(root: Path, recipe: Recipe) -> tuple[Path, Path]:
    """Write ``train/`` and ``val/`` ImageFolder trees of PNG files; returns both folders."""
    rng = np.random.default_rng(recipe.seed)
    for split, count in (("train", recipe.train_per_class), ("val", recipe.val_per_class)):
        for label in CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _draw(label, recipe.image_side, rng).save(folder / f"{label}_{i:04d}.png")
    return root / "train", root / "val"


def _load_split(folder: Path, cfg) -> tuple[np.ndarray, np.ndarray]:
    from resnest_deploy.calibration.images import find_images, iter_batches

    images = find_images(folder)
    arrays, labels = [], []
    for batch in iter_batches(images, cfg, 256):
        arrays.append(batch.array)
        labels += [images.classes.index(label) for label in batch.labels]
    return np.concatenate(arrays), np.asarray(labels)


def train(root: Path, recipe: Recipe) -> TrainedModel:
    """Generate the data, train, save the checkpoint and export the FP32 ONNX into ``root``."""
    import torch
    from torch import nn

    from resnest_deploy.exporters.metadata import meta_for_model
    from resnest_deploy.exporters.onnx_export import ExportOptions, export_onnx
    from resnest_deploy.models import create_model

    started = time.perf_counter()
    train_dir, val_dir = write_dataset(root / "data", recipe)
    torch.manual_seed(recipe.seed)
    model = create_model(ARCH, num_classes=len(CLASSES), seed=recipe.seed, bn_batches=0)
    cfg = meta_for_model(model, size=recipe.size, opset=18, batch="dynamic", dynamic_hw=False).input
    x_train, y_train = _load_split(train_dir, cfg)
    x_val, y_val = _load_split(val_dir, cfg)
    x_train_t, y_train_t = torch.from_numpy(x_train), torch.from_numpy(y_train)
    steps_per_epoch = math.ceil(len(x_train) / recipe.batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, epochs=recipe.epochs,
                                                   steps_per_epoch=steps_per_epoch, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    generator = torch.Generator().manual_seed(recipe.seed)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(x_train_t), generator=generator)
        for start in range(0, len(order), recipe.batch):
            idx = order[start:start + recipe.batch]
            xb = x_train_t[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), y_train_t[idx])
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        val_acc = float((model(torch.from_numpy(x_val)).argmax(1).numpy() == y_val).mean())
    checkpoint = root / "model.pth"
    torch.save(model.state_dict(), checkpoint)
    onnx_path = root / "model.onnx"
    export_onnx(ExportOptions(arch=ARCH, weights=checkpoint, output=onnx_path, img_size=recipe.size))
    info = {"val_top1": val_acc, "train_seconds": round(time.perf_counter() - started, 1),
            "train_images": len(x_train), "val_images": len(x_val), "recipe": asdict(recipe)}
    (root / "info.json").write_text(json.dumps(info, indent=2))
    return TrainedModel(root, checkpoint, onnx_path, train_dir, val_dir, info)


def default_cache_dir() -> Path:
    base = os.environ.get("RESNEST_DEPLOY_TEST_CACHE") or Path(__file__).resolve().parent.parent / ".cache" / "tests"
    return Path(base)


def get_trained_model(cache_dir: Path | None = None, recipe: Recipe = Recipe()) -> TrainedModel:
    """The cached trained model, training it first if needed (one process trains; others wait on a lock)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"trained-{ARCH}-{recipe.key()}"
    with open(cache_dir / ".trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "info.json").is_file():
            work = cache_dir / f".{final.name}.{os.getpid()}.tmp"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            train(work, recipe)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(work, final)
    info = json.loads((final / "info.json").read_text())
    return TrainedModel(final, final / "model.pth", final / "model.onnx", final / "data" / "train",
                        final / "data" / "val", info)


if __name__ == "__main__":
    import sys

    model = get_trained_model(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(json.dumps(model.info, indent=2))
