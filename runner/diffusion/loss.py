"""The denoising loss on the concept images, the attack's objective and its measure.

The images are encoded once by the frozen VAE (the latent distribution's mean, times the VAE's
scaling factor). One draw is (image, timestep t uniform over the training steps, Gaussian noise);
the loss is the mean squared error between the UNet's prediction for the noised latent, conditioned
on the image's prompt (with the attack tokens), and the noise (or the velocity, for a v-prediction
model): Stable Diffusion's training loss. Training draws come from the attack's seeded generator;
``evaluate`` uses a fixed set of draws from its own seed, the same for every row of a job, so the
numbers (no attack, random tokens, attack, defended) are comparable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.scoring import autocast


class DenoisingLoss:
    def __init__(self, pipe, images: torch.Tensor, prompts: list[str], device: torch.device, precision: str = "fp32"):
        from diffusers import DDPMScheduler

        self.unet, self.device, self.precision = pipe.unet, device, precision
        self.prompts = [prompts[i % len(prompts)] for i in range(len(images))]  # prompt of each image, cycled
        self.noise = DDPMScheduler.from_config(pipe.scheduler.config)
        vae = pipe.vae
        with torch.no_grad():
            latents = []
            for chunk in images.split(8):
                dist = vae.encode(chunk.to(device, vae.dtype)).latent_dist
                latents.append(dist.mean * vae.config.scaling_factor)
        self.latents = torch.cat(latents).float()

    def __len__(self) -> int:
        return len(self.latents)

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image indices, timesteps, noise) for ``n`` draws, from ``generator`` (on the CPU)."""
        idx = torch.randint(len(self.latents), (n,), generator=generator)
        steps = torch.randint(self.noise.config.num_train_timesteps, (n,), generator=generator)
        noise = torch.randn((n, *self.latents.shape[1:]), generator=generator)
        return idx, steps, noise

    def loss(self, encoder, slots, draws, defense=None) -> torch.Tensor:
        idx, steps, noise = draws
        latents, steps, noise = self.latents[idx.to(self.latents.device)], steps.to(self.device), noise.to(self.device)
        with autocast(self.precision, self.device):
            cond = encoder.encode([self.prompts[i] for i in idx.tolist()], slots, defense)
            noisy = self.noise.add_noise(latents, noise, steps)
            pred = self.unet(noisy, steps, encoder_hidden_states=cond).sample
        if self.noise.config.prediction_type == "v_prediction":
            target = self.noise.get_velocity(latents, noise, steps)
        else:
            target = noise
        return F.mse_loss(pred.float(), target.float())

    @torch.no_grad()
    def evaluate(self, encoder, slots, defense=None, n_draws: int = 64, seed: int = 0, batch_size: int = 8) -> float:
        """The mean loss over ``n_draws`` fixed draws (from ``seed``), batch by batch."""
        draws = self.draw(n_draws, torch.Generator().manual_seed(seed))
        total = 0.0
        for start in range(0, n_draws, batch_size):
            part = tuple(d[start : start + batch_size] for d in draws)
            total += self.loss(encoder, slots, part, defense).item() * len(part[0])
        return total / n_draws
