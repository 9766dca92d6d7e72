"""Train the demo model: label-to-video pretraining, then image-to-video fine-tuning.

    python -m alg_guidance.demo.train --out runs/plain
    python -m alg_guidance.demo.train --out runs/controlled --variant controlled --init runs/plain/l2v

Both stages train rectified flow (`x_t = (1 - t) x0 + t noise`, the model predicts `noise - x0`, `t` drawn
logit-normally) on procedural clips (`alg_guidance.demo.data`) with label dropout for classifier-free guidance,
AdamW, a linear warm-up, bfloat16 autocast on CUDA and an exponential moving average of the weights, which is what
gets saved. Pretraining sees the plain data without any image; fine-tuning gives the model the first frame as its
image condition (whose embedding starts at zero) on the data of `--variant`. Every clip, every batch and the
initial weights follow from `--seed`. Writes `<out>/l2v` and `<out>/i2v` (diffusers `save_pretrained` folders:
`config.json` and fp16 safetensors) and `<out>/train.json` (the arguments, the losses, the times).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .data import ClipSpec, make_clip
from .model import DemoVideoTransformer, image_condition

PRETRAIN_SEEDS = 0
"""Pretraining clips are drawn from seeds `PRETRAIN_SEEDS + i`."""

FINETUNE_SEEDS = 10**6
"""Fine-tuning clips are drawn from seeds `FINETUNE_SEEDS + i`."""

logger = logging.getLogger(__name__)


def _clip_pixels(arguments: tuple[int, ClipSpec]) -> tuple[np.ndarray, int]:
    clip = make_clip(*arguments)
    return clip.uint8(), clip.label


def make_dataset(first_seed: int, count: int, spec: ClipSpec, workers: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` clips from seed `first_seed` on, as `uint8` `[count, F, H, W, 3]`, and their labels `[count]`."""
    jobs = [(first_seed + index, spec) for index in range(count)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_clip_pixels, jobs, chunksize=64))
    else:
        results = [_clip_pixels(job) for job in jobs]
    pixels = torch.from_numpy(np.stack([pixels for pixels, _ in results]))
    return pixels, torch.tensor([label for _, label in results], dtype=torch.long)


def rectified_flow_loss(
    model: DemoVideoTransformer,
    videos: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    *,
    image_conditioned: bool,
    label_dropout: float,
) -> torch.Tensor:
    """The velocity MSE of one batch: `videos` `[B, 3, F, H, W]` in `[-1, 1]`, `labels` `[B]`."""
    batch, device = len(videos), videos.device
    noise = torch.randn(videos.shape, generator=generator, device=device)
    t = torch.sigmoid(torch.randn(batch, generator=generator, device=device))  # logit-normal(0, 1)
    dropped = torch.rand(batch, generator=generator, device=device) < label_dropout
    labels = torch.where(dropped, torch.full_like(labels, model.null_label), labels)
    x_t = (1 - t.view(-1, 1, 1, 1, 1)) * videos + t.view(-1, 1, 1, 1, 1) * noise
    condition = image_condition(videos[:, :, 0], videos.shape[2]) if image_conditioned else None
    velocity = model(x_t, t * model.config.timestep_scale, labels, condition)
    return torch.nn.functional.mse_loss(velocity.float(), (noise - videos).float())


def train_stage(
    model: DemoVideoTransformer,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    image_conditioned: bool,
    label_dropout: float = 0.1,
    warmup: int = 200,
    ema_decay: float = 0.999,
    log_every: int = 100,
    name: str = "stage",
) -> tuple[DemoVideoTransformer, list[tuple[int, float]]]:
    """Train `model` for `steps` steps on the clips `pixels` (`uint8`, on the training device); returns its EMA.

    Returns:
        The EMA copy of the model, and the `(step, mean loss)` of every `log_every` steps.
    """
    device = pixels.device
    generator = torch.Generator(device).manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup)))
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
    losses, running, started = [], [], time.perf_counter()
    model.requires_grad_(True).train()
    for step in range(1, steps + 1):
        index = torch.randint(len(pixels), (batch,), generator=generator, device=device)
        videos = pixels[index].permute(0, 4, 1, 2, 3).float() / 127.5 - 1
        with autocast:
            loss = rectified_flow_loss(
                model,
                videos,
                labels[index],
                generator,
                image_conditioned=image_conditioned,
                label_dropout=label_dropout,
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for average, current in zip(ema.parameters(), model.parameters(), strict=True):
                average.lerp_(current, 1 - decay)
        running.append(loss.item())
        if not math.isfinite(running[-1]):
            raise RuntimeError(f"{name}: the loss is not finite at step {step}")
        if step % log_every == 0 or step == steps:
            losses.append((step, float(np.mean(running))))
            logger.info(
                "%s step %d/%d loss %.4f (%.0f s)", name, step, steps, losses[-1][1], time.perf_counter() - started
            )
            running = []
    return ema, losses


def save(model: DemoVideoTransformer, path: Path) -> Path:
    """Save `model` with fp16 weights (safetensors) and its config into the folder `path`."""
    saved = copy.deepcopy(model).cpu()
    for tensor in saved.parameters():
        tensor.data = tensor.data.half()  # not ModelMixin.to(dtype), which warns about modules kept in float32
    saved.save_pretrained(path, safe_serialization=True)
    return path


def main(argv: list[str] | None = None) -> dict:
    """Train from the command line (see the module docstring); returns what `train.json` holds."""
    parser = argparse.ArgumentParser(prog="python -m alg_guidance.demo.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="The run folder (created).")
    parser.add_argument("--variant", choices=["plain", "controlled"], default="plain", help="Fine-tuning data.")
    parser.add_argument("--init", type=Path, help="Start fine-tuning from this saved label-to-video model.")
    parser.add_argument("--pretrain-steps", type=int, default=3000)
    parser.add_argument("--finetune-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pretrain-lr", type=float, default=3e-4)
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--clips", type=int, default=32768, help="Clips per stage, generated once.")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8, help="Processes generating clips.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    args.out.mkdir(parents=True, exist_ok=True)
    plain = ClipSpec(frames=args.frames, size=args.size)
    record: dict = {"arguments": {key: str(value) for key, value in vars(args).items()}, "stages": {}}
    started = time.perf_counter()
    if args.init is not None:
        model = DemoVideoTransformer.from_pretrained(args.init, use_safetensors=True, dtype=torch.float32).to(device)
        record["stages"]["l2v"] = {"from": str(args.init)}
    else:
        model = DemoVideoTransformer(
            frames=args.frames, size=args.size, width=args.width, depth=args.depth, heads=args.heads
        ).to(device)
        pixels, labels = make_dataset(PRETRAIN_SEEDS, args.clips, plain, args.workers)
        stage_start = time.perf_counter()
        model, losses = train_stage(
            model,
            pixels.to(device),
            labels.to(device),
            steps=args.pretrain_steps,
            batch=args.batch,
            lr=args.pretrain_lr,
            seed=args.seed,
            image_conditioned=False,
            warmup=args.warmup,
            log_every=args.log_every,
            name="label-to-video",
        )
        save(model, args.out / "l2v")
        record["stages"]["l2v"] = {"losses": losses, "seconds": time.perf_counter() - stage_start}
        del pixels, labels
    spec = ClipSpec(frames=args.frames, size=args.size, controlled=args.variant == "controlled")
    pixels, labels = make_dataset(FINETUNE_SEEDS, args.clips, spec, args.workers)
    stage_start = time.perf_counter()
    model, losses = train_stage(
        model,
        pixels.to(device),
        labels.to(device),
        steps=args.finetune_steps,
        batch=args.batch,
        lr=args.finetune_lr,
        seed=args.seed + 1,
        image_conditioned=True,
        warmup=args.warmup,
        log_every=args.log_every,
        name="image-to-video",
    )
    save(model, args.out / "i2v")
    record["stages"]["i2v"] = {"losses": losses, "seconds": time.perf_counter() - stage_start, "variant": args.variant}
    record["seconds"] = time.perf_counter() - started
    record["parameters"] = sum(parameter.numel() for parameter in model.parameters())
    (args.out / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    logger.info("wrote %s (%s parameters) in %.0f s", args.out / "i2v", f"{record['parameters']:,}", record["seconds"])
    return record


if __name__ == "__main__":
    main()
