"""Generate a portrait with face-sharpness guidance from the effres scorer (diffusers).

    python examples/diffusers_guidance.py --prompt "studio portrait photo of a woman" --scale 0.05
    python examples/diffusers_guidance.py --tiny        # offline: tiny random pipeline and scorer

Runs the same seed twice (scale 0 and the given scale) and saves both images side by side, with
the scorer's ratio of each. Needs ``pip install 'effres[diffusers]'``; the default model id is
downloaded from the Hugging Face Hub on first use.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

DEFAULT_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def _write_tiny_tokenizer(folder: Path):
    """A byte-level BPE vocabulary of single characters, enough for CLIPTokenizer; no downloads."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?-'")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token="<|endoftext|>",
                        bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                        model_max_length=77)
    return tok, len(tokens)


def _tiny_text_encoder(vocab_size: int, hidden: int = 32, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1, projection_dim=projection or hidden, hidden_act="gelu")
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(config).eval()


def build_tiny_pipeline(kind: str = "sd", folder: str | Path | None = None, seed: int = 0):
    """A tiny random ``StableDiffusionPipeline`` (``kind="sd"``) or ``StableDiffusionXLPipeline``
    (``"sdxl"``) built from configs, CPU, seconds, no downloads. Images are 64x64 (latents 32x32,
    a 2x VAE). The tokenizer files go to ``folder`` (a temporary folder by default)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline, \
        UNet2DConditionModel

    folder = Path(folder or tempfile.mkdtemp(prefix="effres-tiny-tok-"))
    torch.manual_seed(seed)
    tokenizer, vocab = _write_tiny_tokenizer(folder / "tokenizer")
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=64).eval()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    if kind == "sd":
        unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4,
                                    out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                    norm_num_groups=4, attention_head_dim=4).eval()
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=_tiny_text_encoder(vocab), tokenizer=tokenizer,
                                       unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    elif kind == "sdxl":
        unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4,
                                    out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
                                    norm_num_groups=4, attention_head_dim=(2, 4), use_linear_projection=True,
                                    addition_embed_type="text_time", addition_time_embed_dim=8,
                                    projection_class_embeddings_input_dim=6 * 8 + 32).eval()
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=_tiny_text_encoder(vocab), tokenizer=tokenizer,
                                         text_encoder_2=_tiny_text_encoder(vocab, projection=32),
                                         tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
                                         force_zeros_for_empty_prompt=False)
    else:
        raise ValueError(f"kind must be 'sd' or 'sdxl', got {kind!r}")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-id", default=DEFAULT_MODEL_ID, help="diffusers pipeline id or folder")
    parser.add_argument("--xl", action="store_true", help="load a StableDiffusionXLPipeline")
    parser.add_argument("--tiny", action="store_true", help="tiny random pipeline and scorer, offline")
    parser.add_argument("--effres-model", default=None, help="effres model id (default: bundled)")
    parser.add_argument("--prompt", default="close-up studio portrait photo of a middle-aged man, detailed skin")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--start", type=float, default=0.3)
    parser.add_argument("--end", type=float, default=1.0)
    parser.add_argument("--max-decode-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="guidance_example.png")
    args = parser.parse_args(argv)

    from effres_core.integrations.diffusers import EffResGuidanceCallback
    from effres_core.gradient.losses import sharpness_score

    if args.tiny:
        from effres_core.model.net import EffResNet

        pipe = build_tiny_pipeline("sdxl" if args.xl else "sd")
        torch.manual_seed(0)
        scorer = EffResNet(patch_size=32, width=0.25).eval()
        args.steps = min(args.steps, 5)
        extra = {"height": 64, "width": 64}
    else:
        from diffusers import AutoPipelineForText2Image

        from effres_core.measure.scorer import EffRes

        dtype = torch.float16 if args.device == "cuda" else torch.float32
        pipe = AutoPipelineForText2Image.from_pretrained(args.model_id, torch_dtype=dtype).to(args.device)
        scorer = EffRes.from_pretrained(args.effres_model, device=args.device)
        extra = {}
    images, ratios = [], []
    for scale in (0.0, args.scale):
        guidance = EffResGuidanceCallback(scorer, scale=scale, start=args.start, end=args.end,
                                          max_decode_size=args.max_decode_size)
        guidance.attach(pipe)
        generator = torch.Generator("cpu").manual_seed(args.seed)
        out = pipe(args.prompt, num_inference_steps=args.steps, generator=generator, output_type="pt",
                   callback_on_step_end=guidance, **extra).images
        guidance.detach(pipe)
        with torch.no_grad():
            score = sharpness_score(getattr(scorer, "net", scorer), out.float().to(next(scorer.parameters()).device))
        images.append(out[0].float().cpu())
        ratios.append(float(score[0]))
        print(f"scale {scale:g}: mean patch score {ratios[-1]:.4f}")
    from torchvision.utils import save_image

    save_image(torch.stack(images), args.out, nrow=2)
    print(f"saved {args.out} (left: no guidance, right: scale {args.scale:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
