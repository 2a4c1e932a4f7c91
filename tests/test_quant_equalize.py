"""quant.equalize.equalize_activations: an exact reparametrization that balances the output
channels of every conv feeding a depthwise conv (Yolo-Fastest at 64x64, real images)."""

from __future__ import annotations

import pytest
import torch

from models.paths import data_dir
from quant.calibrate import calibrate_activations
from quant.data import letterbox_batch, unlabeled_images
from quant.equalize import _dense_to_depthwise_pairs, equalize_activations
from quant.model import QuantDetector
from quant.sensitivity import activation_sensitivity
from quant.zoo import build

torch.set_num_threads(1)  # shared CI machine

pytestmark = pytest.mark.skipif(
    not (data_dir() / "weights" / "darknet" / "yolo-fastest-voc.weights").is_file()
    or not (data_dir() / "unlabeled" / "imagenet-1k-sample").is_dir(),
    reason="darknet weights / unlabeled images not found (run make data)",
)


def _spans(qdet: QuantDetector, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        _, kept = qdet.forward_real(x, quantize=True, keep=set(names))
    return {n: t.amax(dim=(0, 2, 3)).clamp(min=0) - t.amin(dim=(0, 2, 3)).clamp(max=0)
            for n, t in kept.items()}  # fmt: skip


def test_equalize_activations_is_exact_and_balances_channels() -> None:
    _, qdet = build("yolo-fastest-voc", 4, "pow2", 8)
    x = letterbox_batch(unlabeled_images()[:4], 64)
    calibrate_activations(qdet, [x])
    pairs = _dense_to_depthwise_pairs(qdet)
    producers = [p for p, _ in pairs]
    assert len(pairs) > 10 and all(qdet.by_name[d].attrs["depthwise"] for _, d in pairs)
    qdet.set_act_quant(False)
    with torch.no_grad():
        before = qdet(x)
    spans0 = _spans(qdet, x, producers)
    scales0 = {p: qdet.wq[p].log2_scale.detach().clone() for p in producers}

    assert equalize_activations(qdet, [x], max_factor=16.0) == len(pairs)
    assert not any(q.enabled for q in qdet.aq)  # the switches are left as they were
    with torch.no_grad():
        after = qdet(x)
    for a, b in zip(before, after, strict=True):  # same function (weights fake-quantized)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    spans1 = _spans(qdet, x, producers)
    for p in producers:
        shift = qdet.wq[p].log2_scale.detach() - scales0[p]
        assert torch.equal(shift, shift.round()) and shift.min() >= 0 and shift.max() <= 4
        top = spans0[p].max()
        live = spans0[p] > 0
        # every live channel now spans more than half the widest one, unless the factor capped
        ok = (spans1[p] > top / 2 - 1e-6) | (shift == 4)
        assert bool(ok[live].all()), p
        torch.testing.assert_close(spans1[p].max(), top)

    # with the ranges re-fitted, 8-bit activations disturb the outputs less than before
    calibrate_activations(qdet, [x], quantized_weights=True)
    qdet.set_act_quant(True)
    total, per = activation_sensitivity(qdet, x)
    assert all(q.enabled for q in qdet.aq)  # left as they were
    assert len(per) == len(qdet.aq) and per[0].error >= per[-1].error >= 0
    _, plain = build("yolo-fastest-voc", 4, "pow2", 8)
    calibrate_activations(plain, [x], quantized_weights=True)
    assert total < activation_sensitivity(plain, x)[0]
