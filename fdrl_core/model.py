"""FDRL: fine-grained disentangled representation learning for speech + text emotion recognition.

One file, read top to bottom: building blocks, the network, then the losses. Shapes: speech frames
[B, Ts, speech_dim] with a bool mask [B, Ts]; text token states [B, Tt, text_dim] with a mask [B, Tt].
An item whose mask has no True entry lacks that modality (silence, no transcript, an unreliable ASR
hypothesis): its pooled streams are replaced by learned "missing" vectors, so fusion falls back to
the other modality and nothing divides by zero. See FDRL_SPEC.md for where each choice comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fdrl_core.config import FDRLConfig

SPEECH, TEXT = 0, 1  # discriminator targets
STREAMS = ("shared_speech", "shared_text", "private_speech", "private_text")


# ----------------------------------------------------------------------------- building blocks


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam: float):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Identity forward, gradient times -lam backward: the encoder learns to fool the discriminator."""
    return _GradReverse.apply(x, lam)


def grl_lambda(cfg: FDRLConfig, progress: float) -> float:
    """DANN ramp 2/(1+exp(-10p))-1 keeps the adversary quiet while the encoders are still random."""
    if cfg.grl_schedule == "constant":
        return cfg.grl_lambda
    p = min(max(progress, 0.0), 1.0)
    return cfg.grl_lambda * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of the valid positions; an item with none gives zeros, never NaN."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def pool_frames(x: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean over non-overlapping windows of k frames: [B, T, d] -> [B, ceil(T/k), d] and its mask.
    Padded frames never count, so padding does not change the result (the window sums and the valid counts
    go through the same average pool, whose divisor cancels)."""
    m = mask.to(x.dtype).unsqueeze(1)  # [B, 1, T]
    num = F.avg_pool1d((x * m.transpose(1, 2)).transpose(1, 2), k, k, ceil_mode=True)
    den = F.avg_pool1d(m, k, k, ceil_mode=True)
    return (num / den.clamp(min=1e-6)).transpose(1, 2), den.squeeze(1) > 0


def _mlp(d_in: int, d_hidden: int, d_out: int, dropout: float, act=nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), act(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out))


class Projection(nn.Module):
    """Per-modality Linear -> GELU -> LayerNorm to the common width d (MISA's project_t/a/v)."""

    def __init__(self, d_in: int, d: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d), nn.GELU(), nn.LayerNorm(d), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class Encoder(nn.Module):
    """A shared or private subspace encoder, applied per frame/token (mlp) or with context.

    Each encoder starts with its own input projection and has no residual path from its input to its
    output: with `LN(h + MLP(h))` on the same h, shared and private frames started at cosine 0.96, i.e. as
    copies that the disparity loss then had to pull apart. Now they start unrelated (|cos| ~ 0.05).
    `arch="legacy"` rebuilds that older layout so checkpoints trained with it still load."""

    def __init__(self, cfg: FDRLConfig):
        super().__init__()
        d = cfg.d_model
        self.kind = cfg.encoder
        self.legacy = cfg.encoder_arch == "legacy"
        if self.kind == "mlp":
            self.net = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, d))
            self.norm = nn.LayerNorm(d)
        else:
            if not self.legacy:
                self.inp = nn.Linear(d, d)
            layer = nn.TransformerEncoderLayer(d, cfg.heads, 2 * d, cfg.dropout, batch_first=True,
                                               norm_first=True, activation="gelu")
            # nested tensors would make padded and unpadded runs differ and do not export
            self.net = nn.TransformerEncoder(layer, cfg.encoder_layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp":
            return self.norm(x + self.net(x)) if self.legacy else self.norm(self.net(x))
        if not self.legacy:
            x = self.inp(x)
        return self.net(x, src_key_padding_mask=attention_padding(mask))


def attention_padding(mask: torch.Tensor) -> torch.Tensor:
    """Key padding mask (True = ignore) that never masks a whole row: a fully masked row makes
    softmax NaN, so an empty item keeps position 0 visible (its output is discarded anyway)."""
    pad = ~mask
    first = pad[:, :1] & mask.any(dim=1, keepdim=True)
    return torch.cat([first, pad[:, 1:]], dim=1)


# ----------------------------------------------------------------------------- the network


@dataclass
class FDRLOutput:
    logits: torch.Tensor  # [B, C] fused classifier output: the prediction
    streams: dict[str, torch.Tensor]  # the four [B, T, d] encoder outputs
    masks: dict[str, torch.Tensor]  # "speech", "text": [B, T] bool masks after modality gating
    pooled: dict[str, torch.Tensor]  # the four [B, d] pooled streams (missing ones substituted)
    has: dict[str, torch.Tensor]  # "speech", "text": [B] bool, which modalities each item used


class FDRL(nn.Module):
    def __init__(self, cfg: FDRLConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or FDRLConfig()
        d = cfg.d_model
        self.proj_speech = Projection(cfg.speech_dim, d, cfg.dropout)
        self.proj_text = Projection(cfg.text_dim, d, cfg.dropout)
        self.shared = Encoder(cfg)  # ONE module, applied to both modalities
        self.private_speech = Encoder(cfg)
        self.private_text = Encoder(cfg)
        # learned stand-ins for the pooled streams of a missing modality, order as STREAMS
        self.missing = nn.Parameter(torch.randn(len(STREAMS), d) * 0.02)
        # fine-grained components (used by the losses only; inference needs none of them)
        self.shared_disc = _mlp(d, d, 2, cfg.dropout)
        self.private_disc = _mlp(d, d, 2, cfg.dropout)
        self.predictor = _mlp(d, d, cfg.num_classes, cfg.dropout)
        if cfg.align_variant == "B":
            self.cross_attn = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        # fusion over the four pooled streams, then the classifier (MISA layout)
        fusion_layer = nn.TransformerEncoderLayer(d, cfg.fusion_heads, 2 * d, cfg.dropout, batch_first=True,
                                                  norm_first=True, activation="gelu")
        self.fusion = nn.TransformerEncoder(fusion_layer, 1, enable_nested_tensor=False)
        self.classifier = nn.Sequential(nn.Linear(4 * d, 2 * d), nn.Dropout(cfg.dropout), nn.ReLU(),
                                        nn.Linear(2 * d, cfg.num_classes))
        # calibration: probabilities are softmax(logits / temperature); fitted on validation after training
        # (fdrl_core.calibration), 1.0 until then. Part of the weights, so every backend and export uses it.
        self.register_buffer("temperature", torch.ones(()))

    def _empty(self, ref: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = ref.shape[0]
        return ref.new_zeros(b, 1, dim), torch.zeros(b, 1, dtype=torch.bool, device=ref.device)

    def forward(self, speech: torch.Tensor | None, speech_mask: torch.Tensor | None,
                text: torch.Tensor | None, text_mask: torch.Tensor | None) -> FDRLOutput:
        cfg = self.cfg
        if speech is None and text is None:
            raise ValueError("FDRL needs speech frames, text token states, or both")
        if speech is None:
            speech, speech_mask = self._empty(text, cfg.speech_dim)
        if text is None:
            text, text_mask = self._empty(speech, cfg.text_dim)
        ms, mt = speech_mask.bool(), text_mask.bool()
        if "speech" not in cfg.modalities:
            ms = torch.zeros_like(ms)
        if "text" not in cfg.modalities:
            mt = torch.zeros_like(mt)
        elif self.training and cfg.text_dropout > 0 and "speech" in cfg.modalities:
            keep = torch.rand(mt.shape[0], 1, device=mt.device) >= cfg.text_dropout
            mt = mt & keep
        if self.training and cfg.speech_dropout > 0 and "text" in cfg.modalities and "speech" in cfg.modalities:
            # hide the speech of some items (never both modalities of one item): the words-only path is
            # learned too, so a text-only prediction means something (neutral words -> mostly neutral)
            drop = (torch.rand(ms.shape[0], 1, device=ms.device) < cfg.speech_dropout) & mt.any(1, keepdim=True)
            ms = ms & ~drop
        if self.training and cfg.word_dropout > 0:
            # word dropout on the token states: no single word may decide the label
            mt = mt & (torch.rand(mt.shape, device=mt.device) >= cfg.word_dropout)

        if cfg.speech_norm in ("utterance", "utterance_std"):  # remove the utterance's mean frame: voice and
            # channel offsets; "utterance_std" also scales each dimension to unit spread within the utterance
            m = ms.unsqueeze(-1).to(speech.dtype)
            speech = (speech - masked_mean(speech, ms).unsqueeze(1)) * m
            if cfg.speech_norm == "utterance_std":
                speech = speech / (masked_mean(speech.pow(2), ms).unsqueeze(1) + 1e-4).sqrt()
        if cfg.speech_pool > 1:  # 20 ms Whisper frames -> k * 20 ms: emotion needs no finer steps
            speech, ms = pool_frames(speech, ms, cfg.speech_pool)
        hs, ht = self.proj_speech(speech), self.proj_text(text)
        streams = {
            "shared_speech": self.shared(hs, ms),
            "shared_text": self.shared(ht, mt),
            "private_speech": self.private_speech(hs, ms),
            "private_text": self.private_text(ht, mt),
        }
        has = {"speech": ms.any(1), "text": mt.any(1)}
        pooled = {}
        for i, name in enumerate(STREAMS):
            mod = name.split("_")[1]
            mean = masked_mean(streams[name], ms if mod == "speech" else mt)
            pooled[name] = torch.where(has[mod].unsqueeze(-1), mean, self.missing[i].expand_as(mean))
        z = self.fusion(torch.stack([pooled[n] for n in STREAMS], dim=1))
        logits = self.classifier(z.flatten(1))
        return FDRLOutput(logits, streams, {"speech": ms, "text": mt}, pooled, has)


class FDRLInference(nn.Module):
    """What run time and export need: probabilities and logits, nothing else."""

    def __init__(self, model: FDRL):
        super().__init__()
        self.model = model

    def forward(self, speech, speech_mask, text, text_mask):
        logits = self.model(speech, speech_mask, text, text_mask).logits
        return torch.softmax(logits / self.model.temperature, dim=-1), logits


# ----------------------------------------------------------------------------- losses


def _masked_ce(logits: torch.Tensor, target: int, mask: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy against one class, averaged over valid positions only."""
    ce = F.cross_entropy(logits.flatten(0, 1), logits.new_full(logits.shape[:2], target, dtype=torch.long)
                         .flatten(), reduction="none").view(mask.shape)
    m = mask.to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp(min=1.0)


def _masked_p(logits: torch.Tensor, target: int, mask: torch.Tensor) -> torch.Tensor:
    """Mean probability given to the right class over valid positions: 0.5 for a confused 2-way
    discriminator, near 0 for a flipped one (accuracy alone cannot tell 0.51 from 0.99)."""
    m = mask.to(logits.dtype)
    return (torch.softmax(logits, -1)[..., target] * m).sum() / m.sum().clamp(min=1.0)


def _masked_acc(logits: torch.Tensor, target: int, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(logits.dtype)
    return ((logits.argmax(-1) == target).to(logits.dtype) * m).sum() / m.sum().clamp(min=1.0)


def orthogonality(c: torch.Tensor, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fine-grained shared/private disparity (FDRL_SPEC.md section 4, D1, frame-wise form): the squared
    cosine between the shared and the private vector of every valid frame/token, averaged per utterance,
    then over the utterances that have any valid position. 1 for identical (or scaled) streams, ~1/d for
    independent ones, whatever the length: an earlier correlation-matrix version could not tell the two
    apart (0.0947 vs 0.0910 at 12 tokens) and its floor 1/(T-1) made short texts dominate."""
    cos2 = F.cosine_similarity(c, p, dim=-1, eps=1e-6).pow(2)
    m = mask.to(cos2.dtype)
    n = m.sum(1)
    per_item = (cos2 * m).sum(1) / n.clamp(min=1.0)
    ok = (n > 0).to(per_item.dtype)
    return (per_item * ok).sum() / ok.sum().clamp(min=1.0)


def _pooled_orthogonality(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Speech-private vs text-private (D1b): squared cosine of each item's two pooled vectors."""
    if a.shape[0] == 0:
        return a.new_zeros(())
    return F.cosine_similarity(a, b, dim=-1, eps=1e-6).pow(2).mean()


def _frozen(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x) with the module's parameters detached: gradients reach x only."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    return torch.func.functional_call(module, params, (x,))


def _masked_uniform_ce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the uniform distribution over valid positions (ln K when it is uniform)."""
    ce = -F.log_softmax(logits, dim=-1).mean(-1)
    m = mask.to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp(min=1.0)


def _stream_ce(logits_bc: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits_bc, y, reduction="none")
    v = valid.to(ce.dtype)
    return (ce * v).sum() / v.sum().clamp(min=1.0)


def fdrl_losses(model: FDRL, out: FDRLOutput, y: torch.Tensor, progress: float = 1.0,
                class_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """L = cls + a*align + b*disp + c*pred (+ the shared discriminator's own loss on detached frames, which
    trains only the discriminator). A component whose weight is 0 is not computed at all, so its modules
    get no gradient. Per-modality parts (align_speech/align_text: ln 2 when balanced; orth_speech/orth_text:
    ~1/d when independent) and acc_* (detached accuracies, ~0.5 wanted for the shared discriminator) are
    monitors that the trainer logs."""
    cfg = model.cfg
    s, ms, mt = out.streams, out.masks["speech"], out.masks["text"]
    zero = out.logits.new_zeros(())
    losses = {"cls": F.cross_entropy(out.logits, y, weight=class_weights)}
    both = "speech" in cfg.modalities and "text" in cfg.modalities

    # fine-grained predictor: one head F, applied per frame/token on all four streams
    pred = zero
    if cfg.pred_weight > 0:
        terms = []
        for name in STREAMS:
            mod = name.split("_")[1]
            if mod not in cfg.modalities:
                continue
            m = ms if mod == "speech" else mt
            if cfg.pred_granularity == "frame":
                logits = masked_mean(model.predictor(s[name]), m)
            else:
                logits = model.predictor(masked_mean(s[name], m))
            terms.append(_stream_ce(logits, y, out.has[mod]))
        pred = torch.stack(terms).mean()
    losses["pred"] = pred

    # fine-grained alignment in the shared subspace
    align = zero
    if cfg.align_weight > 0 and both:
        if cfg.align_variant == "A" and cfg.adversary == "confusion":
            # the discriminator learns the modality from DETACHED shared frames (its own loss, weight 1:
            # it touches no encoder weight); the encoder is pushed towards a discriminator output of
            # 0.5/0.5 (CE against uniform), not towards the opposite label. A reversed gradient made the
            # encoder flip the discriminator (accuracy 0) instead of confusing it.
            ds_det = model.shared_disc(s["shared_speech"].detach())
            dt_det = model.shared_disc(s["shared_text"].detach())
            disc = (_masked_ce(ds_det, SPEECH, ms) + _masked_ce(dt_det, TEXT, mt)) / 2
            ds, dt = _frozen(model.shared_disc, s["shared_speech"]), _frozen(model.shared_disc, s["shared_text"])
            losses["align_speech"] = _masked_uniform_ce(ds, ms)
            losses["align_text"] = _masked_uniform_ce(dt, mt)
            align = (losses["align_speech"] + losses["align_text"]) / 2  # balanced value: ln 2
            losses["disc_shared"] = disc
            with torch.no_grad():
                losses["acc_shared_disc"] = (_masked_acc(ds_det, SPEECH, ms) + _masked_acc(dt_det, TEXT, mt)) / 2
                losses["p_shared_disc"] = (_masked_p(ds_det, SPEECH, ms) + _masked_p(dt_det, TEXT, mt)) / 2
        elif cfg.align_variant == "A":  # "grl": the earlier gradient-reversal form, kept for ablations
            lam = grl_lambda(cfg, progress)
            ds = model.shared_disc(grad_reverse(s["shared_speech"], lam))
            dt = model.shared_disc(grad_reverse(s["shared_text"], lam))
            losses["align_speech"] = _masked_ce(ds, SPEECH, ms)
            losses["align_text"] = _masked_ce(dt, TEXT, mt)
            align = (losses["align_speech"] + losses["align_text"]) / 2  # balanced value: ln 2
            with torch.no_grad():
                losses["acc_shared_disc"] = (_masked_acc(ds, SPEECH, ms) + _masked_acc(dt, TEXT, mt)) / 2
                losses["p_shared_disc"] = (_masked_p(ds, SPEECH, ms) + _masked_p(dt, TEXT, mt)) / 2
        else:
            aligned, _ = model.cross_attn(s["shared_text"], s["shared_speech"], s["shared_speech"],
                                          key_padding_mask=attention_padding(ms), need_weights=False)
            cos = F.cosine_similarity(aligned, s["shared_text"], dim=-1)
            valid = mt & out.has["speech"].unsqueeze(1)
            v = valid.to(cos.dtype)
            align = ((1 - cos) * v).sum() / v.sum().clamp(min=1.0)
    losses["align"] = align

    # fine-grained disparity in the private subspaces
    disp = zero
    if cfg.disp_weight > 0 and both:
        losses["orth_speech"] = orthogonality(s["shared_speech"], s["private_speech"], ms)
        losses["orth_text"] = orthogonality(s["shared_text"], s["private_text"], mt)
        disp = losses["orth_speech"] + losses["orth_text"]
        if cfg.orth_cross:
            pair = out.has["speech"] & out.has["text"]
            disp = disp + _pooled_orthogonality(out.pooled["private_speech"][pair], out.pooled["private_text"][pair])
        dps, dpt = model.private_disc(s["private_speech"]), model.private_disc(s["private_text"])
        disp = disp + _masked_ce(dps, SPEECH, ms) + _masked_ce(dpt, TEXT, mt)
        with torch.no_grad():
            losses["acc_private_disc"] = (_masked_acc(dps, SPEECH, ms) + _masked_acc(dpt, TEXT, mt)) / 2
    losses["disp"] = disp

    losses["total"] = losses["cls"] + cfg.align_weight * align + cfg.disp_weight * disp + cfg.pred_weight * pred
    if "disc_shared" in losses:
        losses["total"] = losses["total"] + losses["disc_shared"]
    return losses
