"""Load a Stable Diffusion pipeline (``diffusion_model=``): a hub id or local directory, optionally with
an unlearned text encoder or UNet swapped in, or a tiny random pipeline built from config.

``source: hub``   ``id`` (hub id or a local diffusers directory), ``revision``; ``text_encoder`` /
                  ``unet``: ``{id, subfolder}`` of a replacement (AdvUnlearn's text encoder on the hub;
                  an ESD / FMN / UCE / SalUn UNet as a local diffusers directory or hub id), or null.
``source: tiny``  a random-weight UNet2DConditionModel, AutoencoderKL and CLIPTextModel, with a small
                  CLIP-style BPE tokenizer trained on a built-in word list (``TINY_WORDS``) and shipped
                  in ``data/tiny_clip``; the same seed gives the same weights, so the offline path is
                  reproducible.

The safety checker is never loaded (the attack is measured by the detectors, not hidden by it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from runner.errors import ConfigError

log = logging.getLogger(__name__)
SCHEDULERS = ("lms", "ddim", "pndm")
TINY_TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "data" / "tiny_clip"  # train_tiny_tokenizer wrote it
# the tiny tokenizer's vocabulary: every word is a whole-word entry of the tiny CLIP vocabulary
TINY_TEXT = """a an the of in on with at by and or to from for photo picture image painting drawing
sketch portrait landscape style art artwork red blue green yellow orange purple black white grey pink
brown circle square triangle star shape disc ring line stripe dot pattern background bright dark light
small large big tiny round sharp soft woman man person people girl boy child body face hand nude naked
bare skin dress shirt clothes church building house tower bridge street city car truck van bus dog
cat bird fish horse tree flower forest river lake sea mountain sky cloud sun moon night day morning
evening gogh monet picasso dali vincent starry oil canvas brush stroke colour color golf ball parachute
garbage chain saw gas pump french horn tench english springer cassette player beautiful old new
young happy calm wild quiet loud"""
TINY_WORDS = TINY_TEXT.split()


def check(node) -> None:
    """Config checks that need no download (the loader reports what it cannot fetch)."""
    source = node.get("source")
    if source not in ("hub", "tiny"):
        raise ConfigError("diffusion_model.source", f"`{source}` is not a source", "use hub or tiny")
    if source == "hub":
        for key in ("id", "text_encoder.id", "unet.id"):
            if _missing(node, key):
                raise ConfigError(
                    f"diffusion_model.{key}",
                    "is required by this diffusion_model option",
                    f"set diffusion_model.{key}=<hub id or local diffusers directory>",
                )
        if not node.get("id"):
            raise ConfigError("diffusion_model.id", "is empty", "e.g. diffusion_model.id=CompVis/stable-diffusion-v1-4")
    else:
        t = node.tiny
        for key in ("resolution", "text_hidden", "text_layers", "text_heads", "max_length", "norm_groups", "seed"):
            value = t.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
                raise ConfigError(
                    f"diffusion_model.tiny.{key}", f"must be a positive whole number, got {value!r}", "e.g. 32"
                )
        if t.resolution % 8:
            raise ConfigError("diffusion_model.tiny.resolution", f"{t.resolution} is not a multiple of 8", "e.g. 16")
        for key in ("unet_channels", "vae_channels"):
            chans = list(t.get(key) or [])
            if len(chans) != 2 or any(not isinstance(c, int) or c < 1 or c % t.norm_groups for c in chans):
                raise ConfigError(
                    f"diffusion_model.tiny.{key}",
                    f"must be two channel counts divisible by tiny.norm_groups ({t.norm_groups}), got {chans}",
                    "e.g. [16, 32] with norm_groups 8",
                )


def check_scheduler(name) -> None:
    if name not in SCHEDULERS:
        raise ConfigError("generation.scheduler", f"`{name}` is not a scheduler", f"use one of {', '.join(SCHEDULERS)}")


def _missing(node, key: str) -> bool:
    try:
        OmegaConf.select(node, key, throw_on_missing=True)
    except MissingMandatoryValue:
        return True
    return False


def identity(node) -> dict:
    return OmegaConf.to_container(node, resolve=True)


def load_pipeline(node, device: torch.device, scheduler: str = "pndm"):
    """A ``StableDiffusionPipeline`` on ``device`` in float32 eval mode, every weight frozen, sampling
    with ``scheduler`` (lms, ddim, or the model's own pndm) over the model's noise schedule."""
    check(node)
    check_scheduler(scheduler)
    pipe = _tiny_pipeline(node.tiny) if node.source == "tiny" else _hub_pipeline(node)
    pipe.scheduler = sampling_scheduler(scheduler, pipe.scheduler.config)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.requires_grad_(False)
        part.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def sampling_scheduler(name: str, config):
    from diffusers import DDIMScheduler, LMSDiscreteScheduler, PNDMScheduler

    cls = {"lms": LMSDiscreteScheduler, "ddim": DDIMScheduler, "pndm": PNDMScheduler}[name]
    return cls.from_config(config)


def _fetch(what: str, key: str, load):
    try:
        return load()
    except (OSError, ValueError) as exc:
        raise ConfigError(
            key,
            f"cannot load {what} ({str(exc).splitlines()[0][:300]})",
            "download it first (huggingface-cli download <id>) or give a local diffusers directory; "
            "diffusion_model=tiny runs offline",
        ) from None


def _hub_pipeline(node):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    kwargs = {"revision": node.revision} if node.get("revision") else {}
    pipe = _fetch(
        f"the pipeline `{node.id}`",
        "diffusion_model.id",
        lambda: StableDiffusionPipeline.from_pretrained(
            str(node.id), safety_checker=None, requires_safety_checker=False, torch_dtype=torch.float32, **kwargs
        ),
    )
    # an unlearned text encoder or UNet laid over the pipeline's own (AdvUnlearn, ESD checkpoints)
    for part, cls, label in (("text_encoder", CLIPTextModel, "text encoder"), ("unet", UNet2DConditionModel, "UNet")):
        swap = node.get(part)
        if swap is not None and swap.get("id"):
            sub = {"subfolder": swap.subfolder} if swap.get("subfolder") else {}
            loaded = _fetch(
                f"the {label} `{swap.id}` {sub}",
                f"diffusion_model.{part}.id",
                lambda cls=cls, swap=swap, sub=sub: cls.from_pretrained(str(swap.id), torch_dtype=torch.float32, **sub),
            )
            setattr(pipe, part, loaded)
    return pipe


def train_tiny_tokenizer(directory: Path) -> None:
    """Write ``vocab.json`` and ``merges.txt`` of a CLIP-style BPE vocabulary trained on ``TINY_WORDS`` (CLIP's
    normalisation and pre-tokenisation, ``</w>`` word ends, CLIP's byte alphabet). The trainer breaks ties
    differently from run to run, so the result is shipped (``data/tiny_clip``) rather than trained per job."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=eos))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    split = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=2048,
        special_tokens=[bos, eos],
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [" ".join(TINY_WORDS), ", . ! ? ; : - ' \" ( )"]
    bpe.train_from_iterator(corpus * 4, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False, indent=0) + "\n")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def tiny_tokenizer(max_length: int):
    """The tiny pipeline's CLIPTokenizer, from the shipped ``data/tiny_clip`` vocabulary: every word of
    ``TINY_WORDS`` a whole-word entry ``word</w>``, plus CLIP's byte alphabet."""
    from transformers import CLIPTokenizer

    vocab = json.loads((TINY_TOKENIZER_DIR / "vocab.json").read_text())
    lines = (TINY_TOKENIZER_DIR / "merges.txt").read_text().splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def _tiny_pipeline(t):
    """Random weights from ``t.seed``: a 2-level UNet with cross-attention (``unet_channels``), a 2-level
    VAE (``vae_channels``; latents at half the resolution) and a small CLIP text model over the tiny
    tokenizer."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer(int(t.max_length))
    torch.manual_seed(int(t.seed))
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=int(t.text_hidden),
            intermediate_size=2 * int(t.text_hidden),
            num_hidden_layers=int(t.text_layers),
            num_attention_heads=int(t.text_heads),
            max_position_embeddings=int(t.max_length),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=int(t.resolution) // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=tuple(int(c) for c in t.unet_channels),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=int(t.text_hidden),
        attention_head_dim=8,
        norm_num_groups=int(t.norm_groups),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(int(c) for c in t.vae_channels),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=int(t.norm_groups),
        sample_size=int(t.resolution),
    )
    # Stable Diffusion v1's noise schedule
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
