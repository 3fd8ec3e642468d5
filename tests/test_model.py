"""FDRL behaviour that a wrong implementation would break."""

import dataclasses
import math

import pytest
import torch

from fdrl_core import FDRLConfig
from fdrl_core.model import FDRL, FDRLInference, fdrl_losses, grad_reverse, grl_lambda
from tests.conftest import random_batch

VARIANTS = [dict(align_variant="A"), dict(align_variant="B"), dict(encoder="transformer"),
            dict(pred_granularity="pooled"), dict(speech_norm="utterance", speech_pool=8, speech_dropout=0.3),
            dict(speech_pool=1, adversary="grl")]


def _model(**kw):
    torch.manual_seed(0)
    return FDRL(FDRLConfig(**kw))


@pytest.mark.parametrize("kw", VARIANTS)
def test_forward_backward_finite_with_empty_text(kw):
    m = _model(**kw, text_dropout=0.0).train()
    s, ms, t, mt, y = random_batch()
    out = m(s, ms, t, mt)
    losses = fdrl_losses(m, out, y, progress=0.3)
    assert {"cls", "align", "disp", "pred", "total"} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    losses["total"].backward()
    for name, p in m.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    assert not out.has["text"][2] and out.has["text"][0]


def test_shared_encoder_is_one_set_of_weights():
    m = _model()
    # the same module object serves both modalities, and no second copy of its weights exists
    shared_ids = {id(p) for p in m.shared.parameters()}
    assert shared_ids.isdisjoint({id(p) for p in m.private_speech.parameters()})
    assert shared_ids.isdisjoint({id(p) for p in m.private_text.parameters()})
    n_shared = sum(p.numel() for p in m.shared.parameters())
    assert sum(p.numel() for n, p in m.named_parameters() if n.startswith("shared.")) == n_shared
    # a change to the shared weights moves both modalities' shared streams
    s, ms, t, mt, _ = random_batch(empty_text=())
    m.eval()
    before = m(s, ms, t, mt).streams
    with torch.no_grad():
        next(m.shared.parameters()).add_(0.5)
    after = m(s, ms, t, mt).streams
    for name in ("shared_speech", "shared_text"):
        assert not torch.allclose(before[name], after[name])
    for name in ("private_speech", "private_text"):
        assert torch.allclose(before[name], after[name])


def test_gradient_reversal_flips_alignment_gradient_into_shared_encoder():
    x = torch.randn(3, 5, requires_grad=True)
    (grad_reverse(x, 0.7) * 2).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -1.4))

    m = _model(align_weight=1.0, disp_weight=0.0, pred_weight=0.0, grl_schedule="constant", dropout=0.0,
               adversary="grl")
    s, ms, t, mt, y = random_batch(empty_text=())
    enc_w = m.shared.net[0].weight

    def align_grads():
        m.zero_grad()
        out = m(s, ms, t, mt)
        fdrl_losses(m, out, y)["align"].backward()
        return enc_w.grad.clone(), m.shared_disc[0].weight.grad.clone()

    m.eval()
    enc_rev, disc_rev = align_grads()
    m.cfg = dataclasses.replace(m.cfg, grl_lambda=-1.0)  # a "reversal" by -1 is no reversal
    enc_plain, disc_plain = align_grads()
    assert torch.allclose(enc_rev, -enc_plain, atol=1e-6)
    assert torch.allclose(disc_rev, disc_plain, atol=1e-6)  # the discriminator itself is not reversed


def test_confusion_alignment_trains_encoder_and_discriminator_separately():
    m = _model(align_weight=1.0, disp_weight=0.0, pred_weight=0.0, dropout=0.0).eval()
    s, ms, t, mt, y = random_batch(empty_text=())
    losses = fdrl_losses(m, m(s, ms, t, mt), y)
    # the encoder's term reaches the shared encoder only, never the discriminator's weights
    enc, disc = m.shared.net[0].weight, m.shared_disc[0].weight
    g_enc, g_disc = torch.autograd.grad(losses["align"], [enc, disc], allow_unused=True)
    assert g_enc is not None and g_enc.abs().sum() > 0
    assert g_disc is None or g_disc.abs().sum() == 0
    # the discriminator's own term reaches the discriminator only (it sees detached frames)
    g_enc, g_disc = torch.autograd.grad(losses["disc_shared"], [enc, disc], allow_unused=True)
    assert g_enc is None or g_enc.abs().sum() == 0
    assert g_disc is not None and g_disc.abs().sum() > 0


def test_grl_schedule_ramps_from_zero():
    cfg = FDRLConfig()
    assert grl_lambda(cfg, 0.0) == 0.0
    assert grl_lambda(cfg, 0.1) < grl_lambda(cfg, 0.5) < grl_lambda(cfg, 1.0) <= cfg.grl_lambda
    assert math.isclose(grl_lambda(FDRLConfig(grl_schedule="constant", grl_lambda=0.3), 0.0), 0.3)


@pytest.mark.parametrize("weight,modules", [
    ("align_weight", ["shared_disc"]),
    ("disp_weight", ["private_disc"]),
    ("pred_weight", ["predictor"]),
])
def test_zero_weight_removes_component_gradient(weight, modules):
    s, ms, t, mt, y = random_batch()
    for value, expect_grad in ((0.0, False), (0.2, True)):
        m = _model(**{weight: value}).train()
        fdrl_losses(m, m(s, ms, t, mt), y, progress=0.5)["total"].backward()
        for mod in modules:
            grads = [p.grad for p in getattr(m, mod).parameters()]
            has = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert has == expect_grad, (weight, value, mod)


@pytest.mark.parametrize("kw", VARIANTS)
def test_padding_does_not_change_outputs(kw):
    m = _model(**kw).eval()
    s, ms, t, mt, _ = random_batch(b=1, ts=30, tt=7, empty_text=())
    pad_s = torch.cat([s, torch.randn(1, 25, 384)], 1)
    pad_ms = torch.cat([ms, torch.zeros(1, 25, dtype=torch.bool)], 1)
    pad_t = torch.cat([t, torch.randn(1, 9, 384)], 1)
    pad_mt = torch.cat([mt, torch.zeros(1, 9, dtype=torch.bool)], 1)
    with torch.no_grad():
        a = m(s, ms, t, mt).logits
        b = m(pad_s, pad_ms, pad_t, pad_mt).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_batch_items_are_independent():
    m = _model().eval()
    s, ms, t, mt, _ = random_batch()
    with torch.no_grad():
        full = m(s, ms, t, mt).logits
        one = m(s[1:2], ms[1:2], t[1:2], mt[1:2]).logits
    assert torch.allclose(full[1:2], one, atol=1e-5)


def test_empty_text_falls_back_to_speech_only():
    m = _model().eval()
    s, ms, t, mt, _ = random_batch(b=2, empty_text=(0, 1))
    with torch.no_grad():
        out = m(s, ms, t, mt)
        no_text = m(s, ms, None, None)
        other_garbage = m(s, ms, torch.randn_like(t) * 100, mt)
    assert torch.isfinite(out.logits).all()
    assert not out.has["text"].any() and out.has["speech"].all()
    # with no valid token, whatever sits in the text tensor is ignored
    assert torch.allclose(out.logits, no_text.logits, atol=1e-6)
    assert torch.allclose(out.logits, other_garbage.logits, atol=1e-6)


def test_single_modality_configs_ignore_the_other_modality():
    s, ms, t, mt, y = random_batch(empty_text=())
    for mods, other in ((("speech",), "text"), (("text",), "speech")):
        m = _model(modalities=mods).eval()
        with torch.no_grad():
            a = m(s, ms, t, mt)
            b = m(s * (3 if other == "speech" else 1), ms, t * (3 if other == "text" else 1), mt)
        assert torch.allclose(a.logits, b.logits, atol=1e-6)
        assert not a.has[other].any()
        assert torch.isfinite(fdrl_losses(m, m.train()(s, ms, t, mt), y)["total"])


def test_old_checkpoints_keep_their_layout():
    from fdrl_core.config import FDRLConfig as C

    old = {k: v for k, v in C().to_dict().items()
           if k not in ("encoder_arch", "adversary", "word_dropout", "speech_pool")}
    cfg = C.from_dict(old)
    assert (cfg.encoder_arch, cfg.adversary, cfg.word_dropout, cfg.speech_pool) == ("legacy", "grl", 0.0, 1)


def test_inference_wrapper_gives_probabilities():
    m = _model().eval()
    s, ms, t, mt, _ = random_batch()
    probs, logits = FDRLInference(m)(s, ms, t, mt)
    assert probs.shape == (4, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(4))
    assert torch.equal(probs.argmax(-1), logits.argmax(-1))


def test_training_reduces_loss_on_a_learnable_task():
    torch.manual_seed(0)
    m = FDRL(FDRLConfig(d_model=64, heads=2, dropout=0.0))
    s, ms, t, mt, _ = random_batch(b=16, empty_text=(3, 7))
    y = torch.arange(16) % 4
    s = s + torch.nn.functional.one_hot(y, 384)[:, None, :].float() * 3  # the label is in the speech
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for step in range(60):
        out = m.train()(s, ms, t, mt)
        loss = fdrl_losses(m, out, y, progress=step / 60)["total"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (m.eval()(s, ms, t, mt).logits.argmax(-1) == y).float().mean()
    assert loss.item() < first and acc == 1.0
