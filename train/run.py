"""Train an effres model: the paper's self-supervised recipe with L2 PGD adversarial augmentation.

    python train/run.py --config train/configs/cpu.yaml --data DIR --val-data DIR --out runs/NAME
    python train/run.py --resume runs/NAME            # continue exactly where it stopped
    torchrun --nproc-per-node 4 train/run.py --config train/configs/paper.yaml ...   # multi-GPU

A run folder holds ``config.yaml`` (resolved), ``metrics.csv``, TensorBoard logs, ``last/`` and
``best/`` (each ``model.safetensors`` + ``config.json``; ``last/`` also ``state.pt`` with the
optimizer, scheduler, RNG and step). Checkpoints are written every ``checkpoint_minutes``, at
epoch ends and on Ctrl-C, always at an optimizer-step boundary so no accumulation is lost.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from effres_core.model import hub  # noqa: E402
from effres_core.gradient.adversarial import l2_pgd  # noqa: E402
from effres_core.gradient.losses import mape_loss  # noqa: E402
from effres_core.model.net import EffResNet  # noqa: E402
from effres_core.synthesis.degradations import KERNELS  # noqa: E402
from train.data import BatchStream, SampleSettings, load_faces, make_batch  # noqa: E402

logger = logging.getLogger("effres.train")

DEFAULTS = {
    "backbone": "mobilenet_v2",
    "imagenet": True,
    "patch_size": 128,
    "stride": 128,
    "window_patches": 3,
    "patches_per_image": 2,
    "prescale_height": [256, 2048],
    "prescale_probability": 0.8,   # share of samples prescaled to a random height in prescale_height
    "min_factor": 0.0625,          # downscale factor f ~ U(min_factor, max_factor)
    "max_factor": 1.0,
    "degrade_probability": 0.9,    # share of samples downscaled and scaled back up (the rest stay as they are)
    "kernels": list(KERNELS),      # resizers the down and the up step are drawn from
    "random_offset": True,         # training patch grid starts at a random offset
    "min_foreground": 0.5,         # training patches need this share of face
    "mask": True,                  # False: train unmasked (every pixel counts as face)
    "loss": "mape",                # mape | mae | mse | msle
    "nuisances": True,
    "nuisance_probability": 0.6,
    "micro_batch": 16,
    "effective_batch": 512,
    "epochs": 10,
    "patches_per_epoch": 100000,
    "lr": 1e-3,
    "lr_decay": 0.9,
    "adam_betas": [0.9, 0.999],
    "adam_eps": 1e-8,
    "adversarial": "pgd",          # pgd | fgsm | none
    "pgd_steps": 10,
    "pgd_step_size": 30.0,
    "pgd_linf": 10.0,
    "pgd_random_init": False,      # start the attack at a random point of the L-infinity ball
    "adversarial_ratio": 1.0,      # adversarial twins per regular micro-batch (1: every one, 0.5: every other)
    "regular_weight": 1.0,         # loss weights of the clean and the adversarial step
    "adversarial_weight": 1.0,
    "inference_patches": 100,      # scoring settings: validation uses them, the exported config records them
    "inference_min_foreground": 0.9,
    "aggregation": "median",       # median | mean of the patch scores
    "init_weights": "",            # start from these weights (a model folder or file) instead of ImageNet
    "bf16": True,                  # on CUDA only
    "channels_last": True,
    "workers": 2,
    "seed": 0,
    "checkpoint_minutes": 10,
    "validate_every_steps": 0,     # optimizer steps between validations (0: epoch ends only)
    "val_batches": 8,
    "max_steps": 0,                # stop after this many optimizer steps (0: run all epochs)
    "max_minutes": 0,              # stop (with a checkpoint) after this wall time (0: no limit)
    "halve_above": 1024,
    "max_crop_side": 0,            # shrink face crops whose short side is longer (0: keep them as found)
    "face_detector": "haar",       # finds the training faces: haar (the shipped runs), mtcnn, retinaface, auto
    "threads": 0,                  # torch CPU threads in the main process (0: torch's default)
}


def load_config(path: str | None, overrides: dict) -> dict:
    config = dict(DEFAULTS)
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(loaded) - set(DEFAULTS) - {"data", "val_data"}
        if unknown:
            raise ValueError(f"unknown config keys in {path}: {sorted(unknown)}")
        config.update(loaded)
    config.update({k: v for k, v in overrides.items() if v is not None})
    if config["effective_batch"] % config["micro_batch"]:
        raise ValueError("effective_batch must be a multiple of micro_batch")
    if config["adversarial"] not in ("pgd", "fgsm", "none"):
        raise ValueError("adversarial must be pgd, fgsm or none")
    if config["loss"] not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {config['loss']!r}")
    if config["aggregation"] not in ("median", "mean"):
        raise ValueError(f"aggregation must be median or mean, got {config['aggregation']!r}")
    if not 0 <= config["adversarial_ratio"] <= 1:
        raise ValueError(f"adversarial_ratio must be in [0, 1], got {config['adversarial_ratio']}")
    if config["regular_weight"] < 0 or config["adversarial_weight"] < 0:
        raise ValueError("regular_weight and adversarial_weight must be >= 0")
    if config["inference_patches"] < 1:
        raise ValueError(f"inference_patches must be at least 1, got {config['inference_patches']}")
    return config


def _msle(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # log1p needs pred > -1; below 0 a ratio is wrong anyway, so clip there (as Keras clips at 0).
    return (torch.log1p(pred.clamp(min=0)) - torch.log1p(y)).pow(2).mean()


#: The paper's loss (mape) and the three of its ablation (Table 3).
LOSSES = {
    "mape": mape_loss,
    "mae": lambda pred, y: (pred - y).abs().mean(),
    "mse": lambda pred, y: (pred - y).pow(2).mean(),
    "msle": _msle,
}


class Trainer:
    def __init__(self, config: dict, out: Path, device: torch.device, rank: int = 0, world_size: int = 1):
        self.config, self.out, self.device, self.rank, self.world_size = config, out, device, rank, world_size
        c = config
        self.settings = SampleSettings(
            patch_size=c["patch_size"], stride=c["stride"], window_patches=c["window_patches"],
            patches_per_image=c["patches_per_image"], prescale_height=tuple(c["prescale_height"]),
            min_factor=c["min_factor"], max_factor=c["max_factor"], nuisance_probability=c["nuisance_probability"],
            prescale_probability=c["prescale_probability"], degrade_probability=c["degrade_probability"],
            kernels=tuple(c["kernels"]), random_offset=c["random_offset"], min_foreground=c["min_foreground"],
            mask=c["mask"])
        cropping = {"halve_above": c["halve_above"], "max_crop_side": c["max_crop_side"],
                    "detector": c["face_detector"]}  # training and validation faces are cropped alike
        self.faces, skipped = load_faces(c["data"], out / "cache", **cropping)
        self.val_faces = []
        if c.get("val_data"):
            self.val_faces, val_skipped = load_faces(c["val_data"], out / "cache", **cropping)
            skipped += val_skipped
        if rank == 0:
            logger.info("training faces: %d, validation faces: %d, skipped files: %d",
                        len(self.faces), len(self.val_faces), len(skipped))
            for line in skipped:
                logger.info("  skipped %s", line)
        if c["imagenet"] and c["backbone"] != "tiny":
            net = EffResNet.from_imagenet(c["backbone"], c["patch_size"])
        elif c["backbone"] == "tiny":
            net = EffResNet(patch_size=c["patch_size"], width=0.25)
        else:
            net = EffResNet(c["backbone"], c["patch_size"])
        if c["init_weights"]:  # fine-tune: same architecture, weights from a model folder or file
            start = hub.load_pretrained(c["init_weights"])
            if start.config["backbone"] != net.backbone or start.patch_size != net.patch_size:
                raise ValueError(f"init_weights {c['init_weights']} is a {start.backbone}/{start.patch_size} model, "
                                 f"the config asks for {net.backbone}/{net.patch_size}")
            net.load_state_dict(start.state_dict(), strict=True)
        self.net = net.to(device)
        if c["channels_last"]:  # faster convolutions on CUDA and on oneDNN CPUs alike
            self.net = self.net.to(memory_format=torch.channels_last)
        self.model = self.net
        if world_size > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=c["lr"], betas=tuple(c["adam_betas"]),
                                          eps=c["adam_eps"])
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=c["lr_decay"])
        self.accum = c["effective_batch"] // (c["micro_batch"] * world_size) or 1
        self.steps_per_epoch = max(1, c["patches_per_epoch"] // c["effective_batch"])
        self.step = 0              # optimizer steps done
        self.best = -math.inf
        self.stop_requested = False

    # ---- state ---------------------------------------------------------------------------------
    def save(self, name: str, metrics: dict | None = None):
        if self.rank != 0:
            return
        folder = self.out / name
        extra = {"trained_steps": self.step, **({"validation": metrics} if metrics else {})}
        hub.save_pretrained(self.net, folder, extra_config=extra)
        if name == "last":
            tmp = folder / "state.pt.tmp"
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "step": self.step, "best": self.best, "rng": torch.get_rng_state(),
                        "config": self.config}, tmp)
            os.replace(tmp, folder / "state.pt")  # atomic: a kill mid-write never leaves a broken state

    def resume(self):
        folder = self.out / "last"
        if not (folder / "state.pt").is_file():
            return False
        from safetensors.torch import load_file

        self.net.load_state_dict(load_file(str(folder / hub.WEIGHTS_NAME)), strict=True)
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best = state["step"], state["best"]
        torch.set_rng_state(state["rng"])
        logger.info("resumed from %s at optimizer step %d", folder, self.step)
        return True

    # ---- one micro-batch ------------------------------------------------------------------------
    def _loss(self, x, y, model=None):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda" and self.config["bf16"]):
            pred = (model or self.model)(x)
        return LOSSES[self.config["loss"]](pred.float(), y)

    def has_twin(self, index: int) -> bool:
        """Whether micro-batch ``index`` (counted over the whole run) gets an adversarial twin:
        evenly spread, ``adversarial_ratio`` of them."""
        r = self.config["adversarial_ratio"]
        return self.config["adversarial"] != "none" and math.floor((index + 1) * r) > math.floor(index * r)

    def adversarial(self, x, y):
        c = self.config
        if c["adversarial"] == "none":
            return None
        steps = 1 if c["adversarial"] == "fgsm" else c["pgd_steps"]
        # Attack with BatchNorm statistics frozen: the attack must not move the running averages.
        self.net.eval()
        try:
            # The bare net (no DDP gradient sync), in bf16 on CUDA like the training forward.
            x_adv = l2_pgd(lambda z: self._loss(z, y, self.net), x, steps=steps,
                           step_size=c["pgd_step_size"], linf=c["pgd_linf"], pixel_range=255.0,
                           random_init=c["pgd_random_init"])
        finally:
            self.net.train()
        return x_adv

    def micro_step(self, x, y, index: int = 0) -> tuple[float, float]:
        """One micro-batch (number ``index`` of the run): the clean loss and, when it has a twin, the
        adversarial loss, weighted by ``regular_weight`` / ``adversarial_weight`` (the paper: 1 and 1)."""
        c = self.config
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if c["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        x_adv = self.adversarial(x, y) if self.has_twin(index) else None
        clean = self._loss(x, y)
        (c["regular_weight"] * clean / self.accum).backward()
        adv_value = float("nan")
        if x_adv is not None:
            adv = self._loss(x_adv, y)
            (c["adversarial_weight"] * adv / self.accum).backward()
            adv_value = float(adv.detach())
        return float(clean.detach()), adv_value

    # ---- validation -----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """Mean MAPE on fixed validation batches, plus the ranking metrics of effres_core.evaluation."""
        self.net.eval()
        metrics: dict = {}
        try:
            if self.val_faces:
                errs = []
                for i in range(self.config["val_batches"]):
                    x, y = make_batch(self.val_faces, 10_000_000 + i, 32, 12345, self.settings)
                    pred = self.net(x.to(self.device)).float().clamp(0, 1)
                    errs.append(float(mape_loss(pred, y.to(self.device))))
                metrics["val_mape"] = sum(errs) / len(errs)
                try:
                    from effres_core.evaluation import RatioScorer, quick_validation

                    scorer = RatioScorer(self.net, n_patches=self.config["inference_patches"],
                                         reduce=self.config["aggregation"], device=self.device)
                    metrics.update(quick_validation(scorer, self.config["val_data"], cache_dir=self.out / "cache"))
                except Exception as err:  # validation extras must never kill a long run
                    logger.warning("ranking validation failed: %s: %s", err.__class__.__name__, err)
        finally:
            self.net.train()
        return metrics

    def selection_score(self, metrics: dict) -> float:
        if "folder_srcc" in metrics:
            return metrics["folder_srcc"]
        return -metrics.get("val_mape", math.inf)

    # ---- the loop -------------------------------------------------------------------------------
    def fit(self):
        c = self.config
        total_steps = self.steps_per_epoch * c["epochs"]
        if c["max_steps"]:
            total_steps = min(total_steps, c["max_steps"])
        stream = BatchStream(self.faces, c["micro_batch"], c["seed"], self.settings, start=self.step * self.accum,
                             rank=self.rank, world_size=self.world_size, nuisances=c["nuisances"])
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=c["workers"],
                                             pin_memory=self.device.type == "cuda",
                                             persistent_workers=c["workers"] > 0)
        writer = None
        if self.rank == 0:
            try:
                from torch.utils.tensorboard import SummaryWriter
                writer = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:
                logger.info("tensorboard is not installed: metrics go to metrics.csv only")
        csv_path = self.out / "metrics.csv"
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=self.step, desc="train", unit="step", disable=self.rank != 0,
                   dynamic_ncols=True)
        started = last_ckpt = time.time()
        batches = iter(loader)
        self.net.train()
        while self.step < total_steps and not self.stop_requested:
            t0 = time.time()
            clean_sum = adv_sum = 0.0
            twins = 0
            for i in range(self.accum):
                x, y = next(batches)
                clean, adv = self.micro_step(x, y, self.step * self.accum + i)
                clean_sum += clean
                if math.isfinite(adv):
                    adv_sum += adv
                    twins += 1
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            patches_per_s = c["micro_batch"] * self.accum * self.world_size / (time.time() - t0)
            row = {"step": self.step, "epoch": (self.step - 1) // self.steps_per_epoch + 1,
                   "lr": self.optimizer.param_groups[0]["lr"], "loss": clean_sum / self.accum,
                   "adv_loss": adv_sum / twins if twins else float("nan"), "patches_per_s": patches_per_s}
            epoch_end = self.step % self.steps_per_epoch == 0
            if epoch_end:
                self.scheduler.step()
            do_val = epoch_end or (c["validate_every_steps"] and self.step % c["validate_every_steps"] == 0) \
                or self.step == total_steps
            if do_val and self.rank == 0:
                metrics = self.validate()
                row.update(metrics)
                score = self.selection_score(metrics)
                if score > self.best:
                    self.best = score
                    self.save("best", metrics)
                self.save("last", metrics)
                last_ckpt = time.time()
                logger.info("step %d: %s", self.step, json.dumps({k: round(v, 4) for k, v in metrics.items()
                                                                 if isinstance(v, float)}))
            elif time.time() - last_ckpt > c["checkpoint_minutes"] * 60:
                self.save("last")
                last_ckpt = time.time()
            if self.rank == 0:
                self._log(csv_path, writer, row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", adv=f"{row['adv_loss']:.3f}", pps=f"{patches_per_s:.0f}")
            bar.update(1)
            out_of_time = bool(c["max_minutes"]) and time.time() - started > c["max_minutes"] * 60
            if self.world_size > 1:
                # All ranks must stop after the same step, or the others wait forever in the next all-reduce.
                flags = torch.tensor([float(self.stop_requested), float(out_of_time)], device=self.device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                self.stop_requested, out_of_time = bool(flags[0]), bool(flags[1])
            if out_of_time:
                logger.info("time budget of %s minutes reached", c["max_minutes"])
                break
        self.save("last")
        bar.close()
        if writer:
            writer.close()
        return self.step

    def _log(self, csv_path: Path, writer, row: dict):
        fields = ["step", "epoch", "lr", "loss", "adv_loss", "patches_per_s", "val_mape", "folder_srcc",
                  "folder_pra", "pooled_srcc"]
        new = not csv_path.exists()
        with csv_path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if writer:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    writer.add_scalar(k, v, self.step)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (train/configs/paper.yaml or cpu.yaml)")
    parser.add_argument("--data", help="folder of sharp face images (searched recursively)")
    parser.add_argument("--val-data", dest="val_data", help="folder of sharp validation faces")
    parser.add_argument("--out", help="run folder (default runs/<config name>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from RUN_DIR/last")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--push-to-hub", dest="push_to_hub", metavar="REPO_ID", help="publish best/ when done")
    for key, value in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, dest=key, type=lambda s: s.lower() in ("1", "true", "yes", "on"),
                                metavar="BOOL")
        elif isinstance(value, list) and key == "kernels":
            parser.add_argument(flag, dest=key, nargs="+", choices=KERNELS, metavar="KERNEL")
        elif isinstance(value, list):
            parser.add_argument(flag, dest=key, type=type(value[0]), nargs=len(value))
        else:
            parser.add_argument(flag, dest=key, type=type(value))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device:
        device = torch.device(args.device)
    else:
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    overrides = {k: v for k, v in vars(args).items() if k in DEFAULTS}
    overrides.update(data=args.data, val_data=args.val_data)
    if args.resume:
        out = Path(args.resume)
        saved = yaml.safe_load((out / "config.yaml").read_text())
        config = load_config(None, {**saved, **{k: v for k, v in overrides.items() if v is not None}})
    else:
        config = load_config(args.config, overrides)
        out = Path(args.out or f"runs/{Path(args.config or 'default').stem}")
    if not config.get("data"):
        raise SystemExit("error: no training data: pass --data DIR (or set data: in the config)")
    if not Path(config["data"]).is_dir():
        raise SystemExit(f"error: training data folder {config['data']} does not exist")
    torch.manual_seed(config["seed"])
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    trainer = Trainer(config, out, device, rank, world_size)
    if args.resume:
        trainer.resume()

    def request_stop(signum, frame):  # finish the current optimizer step, checkpoint, exit
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        logger.info("stop requested: saving a checkpoint after this step (Ctrl-C again to abort)")

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    trainer.fit()
    if rank == 0:
        logger.info("done at step %d; weights in %s", trainer.step, out)
        if args.push_to_hub:
            from train.export import export_run
            export_run(out, out / "export", push_to_hub=args.push_to_hub)
    if world_size > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
