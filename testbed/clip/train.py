"""Train the testbed's small CLIP (``clip-shapes``) on the synthetic captioned-shapes domain.

    python -m testbed.clip.train --seed 0 --steps 1000 --out testbed/clip/clip-shapes-fp16.pt

open_clip parts only: the model config ``clip-shapes.json`` registered with
``open_clip.add_model_config`` (ModifiedResNet image tower, 3-layer text transformer), open_clip's
offline BPE tokenizer and ``ClipLoss``. Batches are generated on the fly from ``shapes.py``
(stream ``"train"``, the given seed). After training the model is checked on a held-out validation
stream (``"val"``): zero-shot top-1 over the 24 colour x shape classes must reach ``--min-top1``,
otherwise the next seed is tried (up to ``--tries`` seeds). The kept checkpoint is the model's
state dict in fp16, written deterministically (see ``save_state_dict``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from testbed.clip import shapes

MODEL_NAME = "clip-shapes"
CONFIG_PATH = Path(__file__).with_name("clip-shapes.json")
DEFAULT_OUT = Path(__file__).with_name("clip-shapes-fp16.pt")

Tokenizer = Callable[..., torch.Tensor]


def register_config() -> None:
    """Register ``clip-shapes`` with open_clip (idempotent)."""
    import open_clip

    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_PATH)


def build(seed: int) -> tuple[Any, Tokenizer]:
    import open_clip

    register_config()
    torch.manual_seed(seed)
    model = open_clip.create_model(MODEL_NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    return model, tokenizer


@torch.no_grad()
def evaluate(
    model: Any, tokenizer: Tokenizer, *, seed: int, n: int = 480, stream: str = "val", batch: int = 120
) -> dict[str, float]:
    """Zero-shot top-1 over the 24 colour x shape classes on ``n`` fresh samples of ``(stream, seed)``,
    plus the mean cosine of image/own-caption pairs vs image/another-sample's-caption pairs (the other
    caption is the next sample's, re-drawn if it names the same colour x shape)."""
    model.eval()
    prompts = shapes.class_prompts()
    text = F.normalize(model.encode_text(tokenizer(prompts)).float(), dim=-1)
    labels = {p: i for i, p in enumerate(shapes.classes())}
    correct = 0
    matched: list[float] = []
    mismatched: list[float] = []
    for start in range(0, n, batch):
        ss = shapes.samples(seed, start, min(batch, n - start), stream=stream, template=0)
        img = F.normalize(model.encode_image(shapes.to_tensor_batch([s.image for s in ss])).float(), dim=-1)
        pred = (img @ text.T).argmax(dim=-1)
        truth = torch.tensor([labels[(s.spec.colour, s.spec.shape)] for s in ss])
        correct += int((pred == truth).sum())
        caps = [s.caption for s in ss]
        others = []
        for i, s in enumerate(ss):
            j = (i + 1) % len(ss)
            while ss[j].spec.label == s.spec.label:
                j = (j + 1) % len(ss)
            others.append(caps[j])
        t_own = F.normalize(model.encode_text(tokenizer(caps)).float(), dim=-1)
        t_other = F.normalize(model.encode_text(tokenizer(others)).float(), dim=-1)
        matched += (img * t_own).sum(-1).tolist()
        mismatched += (img * t_other).sum(-1).tolist()
    return {
        "top1": correct / n,
        "matched_cosine": sum(matched) / len(matched),
        "mismatched_cosine": sum(mismatched) / len(mismatched),
        "n": float(n),
    }


def save_state_dict(model: Any, path: Path) -> str:
    """fp16 state dict via a file object (zip root ``archive/``, so the bytes do not depend on the
    file name); atomic rename; returns the file's SHA-256."""
    state = {
        k: v.detach().to(torch.float16) if v.is_floating_point() else v.detach()
        for k, v in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_one(
    seed: int, steps: int, *, batch_size: int = 64, lr: float = 1e-3, warmup: int = 50, log_every: int = 50
) -> Any:
    from open_clip.loss import ClipLoss

    model, tokenizer = build(seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[seed {seed}] {MODEL_NAME}: {n_params / 1e6:.2f} M parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "logit_scale" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "logit_scale" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    loss_fn = ClipLoss()
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        batch = shapes.samples(seed, step * batch_size, batch_size, stream="train", template=None)
        images = shapes.to_tensor_batch([s.image for s in batch])
        texts = tokenizer([s.caption for s in batch])
        img_f, txt_f, scale = model(images, texts)
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % log_every == 0 or step == steps - 1:
            el = time.perf_counter() - t0
            print(
                f"[seed {seed}] step {step + 1}/{steps} loss {loss.item():.4f} "
                f"scale {model.logit_scale.exp().item():.1f} lr {lr_at(step):.2e} {el:.0f}s",
                flush=True,
            )
    model.eval()
    return model, tokenizer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="train the testbed clip-shapes CLIP")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-top1", type=float, default=0.90)
    ap.add_argument("--tries", type=int, default=3, help="seeds to try (seed, seed+1, ...)")
    ap.add_argument("--eval-n", type=int, default=480)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    for seed in range(args.seed, args.seed + args.tries):
        t0 = time.perf_counter()
        model, tokenizer = train_one(seed, args.steps, batch_size=args.batch_size, lr=args.lr)
        train_s = time.perf_counter() - t0
        metrics = evaluate(model, tokenizer, seed=seed, n=args.eval_n, stream="val")
        report = {"seed": seed, "steps": args.steps, "train_s": round(train_s, 1), **metrics}
        print(json.dumps(report), flush=True)
        if metrics["top1"] >= args.min_top1:
            sha = save_state_dict(model, args.out)
            size = args.out.stat().st_size
            print(json.dumps({"saved": str(args.out), "bytes": size, "sha256": sha, **report}), flush=True)
            return 0
        print(
            f"[seed {seed}] top-1 {metrics['top1']:.3f} < {args.min_top1}; trying the next seed", flush=True
        )
    print("no seed reached the held-out threshold", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
