"""One iteration of the alternating GAN game: k D-steps, then one G-step.

The step reads nothing back to the host: batches are drawn on the device, metrics are summed into a
device tensor, and divergence is detected when the loop reads that tensor at an eval interval. That
keeps the inner loop free of syncs and makes the whole iteration capturable in a CUDA graph.

G and D may be DDP-wrapped. Each wrapped module runs exactly one forward per backward: the D-step
hands D the real and the fake batch in one call, which scores each apart (so BatchNorm normalises
fakes in the D-step as in the G-step, where D sees fakes alone). D-step fakes and the G-step's pass
through D use the unwrapped modules, so G's gradients flow through D without D's parameters taking
part (their requires_grad is off for it).

With augmentation on (``augment``), every batch D sees goes through it, real and fake alike, in the
D-step, in the penalty's pass and in G's pass through D (differentiably: G learns through it); ADA's
probability moves on D's logits on the augmented reals, on the device.

Class-conditional (``num_classes`` > 0, a source with labels): the D-step draws real images with their
labels and G's fakes of the *same* labels, so D sees (x, y) for both from the data's label distribution
and a penalty is taken at one set of labels; the G-step draws labels from the data (with a real batch,
the loss pairs, its labels). Unconditional steps run exactly the ops they ran before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gan_ray.augment import Augmentation
from gan_ray.data.sources import DataSource
from gan_ray.losses import GanLoss
from gan_ray.models import unwrap
from gan_ray.noise import NoiseSampler
from gan_ray.penalties import Penalty
from gan_ray.training.ema import WeightAverage
from gan_ray.training.schedules import Schedule


@dataclass
class StepMetrics:
    """Device-side running sums: [loss_d, loss_g, d_real, d_fake] and how many terms each holds."""

    device: torch.device
    sums: Tensor = field(init=False)
    d_terms: int = 0
    g_terms: int = 0

    def __post_init__(self) -> None:
        self.sums = torch.zeros(4, device=self.device)

    def reset(self) -> None:
        self.sums.zero_()
        self.d_terms = self.g_terms = 0

    def read(self) -> dict[str, float]:
        """Means since the last reset: the one host sync of an eval interval.

        Under torch.distributed the sums are averaged over ranks first, so every rank sees the same
        values and a divergence stops all ranks at the same eval (none is left waiting in a collective).
        ``loss_d_rank_spread`` is then how far the ranks' own D losses were apart: above 0 when the
        ranks trained on different data and noise, as they must for DDP to average anything.
        """
        sums = self.sums
        spread = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            hi, lo, sums = sums.clone(), sums.clone(), sums.clone()
            torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
            torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
            torch.distributed.all_reduce(sums)
            sums /= torch.distributed.get_world_size()
            spread = float(hi[0] - lo[0])
        values = sums.tolist()
        d, g = max(self.d_terms, 1), max(self.g_terms, 1)
        out = {
            "loss_d": values[0] / d,
            "loss_g": values[1] / g,
            "d_real": values[2] / d,
            "d_fake": values[3] / d,
        }
        if spread is not None:
            out["loss_d_rank_spread"] = spread / d
        return out


def all_ranks_agree(flag: bool, device: torch.device) -> bool:
    """``flag`` on every rank (a logical AND across ranks under torch.distributed; ``flag`` alone otherwise).

    A collective: every rank must call it at the same point, so all of them take the same branch after.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0], device=device, dtype=torch.int32)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
    return bool(value.item())


@dataclass
class GanStep:
    """Everything one iteration touches. ``__call__`` runs k D-steps and one G-step."""

    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    loss: GanLoss
    source: DataSource
    noise: NoiseSampler
    noise_dim: int
    batch_size: int
    d_steps_per_g_step: int
    metrics: StepMetrics
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False
    # An average of G's weights, updated after every G-step (None: off).
    ema: WeightAverage | None = None
    # step -> factor on both learning rates (None: constant); ``iterations`` is the step it is at.
    lr_schedule: Schedule | None = None
    # A gradient penalty added to D's loss (None: none), its weight moved by ``penalty_schedule``.
    penalty: Penalty | None = None
    penalty_schedule: Schedule | None = None
    # Lazy regularisation: the penalty at every N-th D-step only, at N times its weight (StyleGAN2).
    penalty_every: int = 1
    # What D's inputs go through (None: nothing): DiffAugment's transforms, at ADA's probability or not.
    augment: Augmentation | None = None
    iterations: int = 0
    # The D-step being taken, counted from the run's start (``__call__`` sets it).
    d_index: int = 0
    # The name the config chose the noise by (a plug-in's import path), for the hyperparameters read back.
    noise_name: str = ""
    # Classes G and D are conditioned on (0: unconditional); the source then has sample_labelled/_labels.
    num_classes: int = 0

    def __post_init__(self) -> None:
        self.device = self.metrics.device
        self.base_lr_g = self.opt_g.param_groups[0]["lr"]
        self.base_lr_d = self.opt_d.param_groups[0]["lr"]
        # D's outputs read as probabilities only for the cross-entropy losses.
        self.d_output: Callable[[Tensor], Tensor] = (
            torch.sigmoid if self.loss.has_probabilities else (lambda x: x)
        )

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _real(self) -> Tensor:
        x = self.source.sample(self.batch_size)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _real_labelled(self) -> tuple[Tensor, Tensor | None]:
        """A real batch and its labels (None when unconditional)."""
        if not self.num_classes:
            return self._real(), None
        x, labels = self.source.sample_labelled(self.batch_size)
        return (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), labels

    def _z(self) -> Tensor:
        return self.noise(self.batch_size, self.noise_dim, device=self.device)

    def _seen(self, x: Tensor) -> Tensor:
        """A batch as D sees it: augmented, where augmentation is on."""
        return x if self.augment is None else self.augment(x)

    @staticmethod
    def _generate(g: nn.Module, z: Tensor, labels: Tensor | None) -> Tensor:
        return g(z) if labels is None else g(z, labels)

    @staticmethod
    def _judge(d: nn.Module, *batches: Tensor, labels: Tensor | None):
        return d(*batches) if labels is None else d(*batches, labels=labels)

    def _penalised(self) -> bool:
        """Whether this D-step carries the penalty (``d_index`` counts D-steps from the run's start, so a
        resumed run keeps the rhythm)."""
        return self.penalty is not None and self.d_index % self.penalty_every == 0

    def d_step(self) -> None:
        g_plain, d_plain = unwrap(self.generator), unwrap(self.discriminator)
        real, labels = self._real_labelled()
        with torch.no_grad(), self._autocast():
            fake = self._generate(g_plain, self._z(), labels)
        seen_real, seen_fake = self._seen(real), self._seen(fake.to(real.dtype))
        with self._autocast():
            # One call of the (maybe DDP) D scores real and fake, each batch apart: one DDP forward per
            # backward, and BatchNorm sees the fakes alone, as it does in the G-step. Scoring
            # cat([real, fake]) would pool the statistics, and G would train against a D that the
            # D-step never trained.
            real_logits, fake_logits = (
                x.float() for x in self._judge(self.discriminator, seen_real, seen_fake, labels=labels)
            )
            loss = self.loss.d_loss(real_logits, fake_logits)
        if self.augment is not None:
            self.augment.observe(real_logits)
        if self._penalised():
            # Through the plain D, in its own forward: a DDP module runs one forward per backward (the
            # penalty's gradients still reach DDP's hooks through the shared parameters). In fp32: the
            # input gradients are small differences that bf16 would round away. With augmentation, the
            # gradient is taken at the un-augmented input through the augmentation (as stylegan2-ada's R1).
            d_judge = d_plain if labels is None else (lambda x: d_plain(x, labels=labels))
            d_seen = d_judge if self.augment is None else (lambda x: d_judge(self.augment(x)))
            with torch.autocast(self.device.type, enabled=False):
                term = self.penalty.term(d_seen, real.float(), fake.float(), pack=getattr(d_plain, "pac", 1))
                loss = loss + self.penalty_every * self.penalty_weight() * term
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        clip = self.loss.clip_value
        if clip is not None:
            with torch.no_grad():
                torch._foreach_clamp_min_(params := list(d_plain.parameters()), -clip)
                torch._foreach_clamp_max_(params, clip)
        with torch.no_grad():
            self.metrics.sums[0] += loss.detach()
            self.metrics.sums[2] += self.d_output(real_logits.detach()).mean()
            self.metrics.sums[3] += self.d_output(fake_logits.detach()).mean()
        self.metrics.d_terms += 1

    def g_step(self) -> None:
        d_plain = unwrap(self.discriminator)
        real, labels = self._g_step_labels()
        d_plain.requires_grad_(False)
        try:
            with self._autocast():
                fake = self._generate(self.generator, self._z(), labels)
                if self.channels_last:
                    fake = fake.contiguous(memory_format=torch.channels_last)
                if self.loss.g_needs_real:
                    # Each batch scored apart, as in the D-step, so BatchNorm judges them alike.
                    real = self._seen(self._real() if real is None else real)
                    real_logits, fake_logits = (
                        x.float() for x in self._judge(d_plain, real, self._seen(fake), labels=labels)
                    )
                else:
                    real_logits, fake_logits = (
                        None,
                        self._judge(d_plain, self._seen(fake), labels=labels).float(),
                    )
                loss = self.loss.g_loss(real_logits, fake_logits)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
            if self.ema is not None:
                self.ema.update()
        finally:
            d_plain.requires_grad_(True)
        with torch.no_grad():
            self.metrics.sums[1] += loss.detach()
        self.metrics.g_terms += 1

    def _g_step_labels(self) -> tuple[Tensor | None, Tensor | None]:
        """(a real batch or None, the labels of G's fakes or None). Unconditional: (None, None), and the
        real batch a pairing loss needs is drawn after the noise, as it always was."""
        if not self.num_classes:
            return None, None
        if self.loss.g_needs_real:
            return self._real_labelled()
        return None, self.source.sample_labels(self.batch_size)

    def lr_factor(self) -> float:
        """Where the learning-rate schedule stands now (1 without one)."""
        return 1.0 if self.lr_schedule is None else self.lr_schedule(self.iterations)

    def penalty_weight(self) -> float:
        """The penalty's weight now: its starting weight times where its schedule stands (0 without one)."""
        if self.penalty is None:
            return 0.0
        factor = 1.0 if self.penalty_schedule is None else self.penalty_schedule(self.iterations)
        return self.penalty.weight * factor

    def __call__(self) -> None:
        if self.lr_schedule is not None:
            factor = self.lr_factor()
            for opt, base in ((self.opt_g, self.base_lr_g), (self.opt_d, self.base_lr_d)):
                for group in opt.param_groups:
                    group["lr"] = base * factor
        for i in range(self.d_steps_per_g_step):
            self.d_index = self.iterations * self.d_steps_per_g_step + i
            self.d_step()
        self.g_step()
        self.iterations += 1
