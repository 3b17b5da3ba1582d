"""Stochastic pooling (Zeiler & Fergus 2013)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .pool import _RULE, K, windows
from .registry import Window, register


@register(
    "stochastic",
    params=[K],
    summary="stochastic pooling of relu(x) (negative inputs are clipped to 0): sample one activation per "
    "window with p_i = a_i / sum a (eval: sum p_i a_i)",
    source="Zeiler & Fergus 2013, 'Stochastic Pooling for Regularization of Deep CNNs' (ICLR, arXiv:1301.3557)",
    learnable=False,
    shape_rule=_RULE + "; padding is zero (never sampled)",
    onnx=True,
    onnx_note="exports the eval-mode rule (probability-weighted average); training-mode sampling is not exported",
)
class StochasticPool(Window):
    """Stochastic pooling (Zeiler & Fergus 2013, arXiv:1301.3557, Sec. 3).

    **The input goes through a ReLU first**: ``a = relu(x)``, so negative inputs are clipped to 0 and
    the output is always >= 0 (the paper assumes non-negative, post-ReLU inputs). At a site fed by a
    pre-activation map (e.g. a conv or BN output before its ReLU) the negative half is discarded, and a
    window with no positive value outputs 0. Then, per k x k window, ``p_i = a_i / sum_k a_k``:

    * training (``module.train()``): output one activation ``a_i`` sampled with probability ``p_i``
      (a window of all zeros outputs 0). The gradient flows to the sampled element, as in max pooling.
      Sampling is vectorised (inverse-CDF against one ``torch.rand`` draw per output) and uses torch's
      global RNG, so ``torch.manual_seed`` makes it reproducible.
    * evaluation (``module.eval()``): the deterministic probability-weighted average
      ``sum_i p_i a_i = sum a_i^2 / sum a_i`` (0 for an all-zero window).

    Precision: the probabilities (the cumulative sums, the uniform draw, and the eval rule's sums) are
    computed in at least float32, also for bfloat16/float16 inputs and under autocast, where a bf16
    cumulative sum would make small probabilities 0 (e.g. 0.5 next to 256) and an fp16 one overflows
    beyond 65504. The output has the input's dtype, as a pool's would (the sampled value itself is
    returned exactly). Window placement (padding ``(k-1)//2`` of zeros, which are never sampled) and
    output size are those of ``max(k)``. No parameters, no hyper-parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(x)
        k, s, p = self.k, self.stride, self.pad
        ct = torch.promote_types(x.dtype, torch.float32)  # float32 for bf16/fp16, float64 stays
        if not self.training:
            # sum a^2 / sum a over each window (same count on top and bottom, so avg_pool is fine)
            a32 = a.to(ct)
            num = F.avg_pool2d(a32 * a32, k, s, p, count_include_pad=True)
            den = F.avg_pool2d(a32, k, s, p, count_include_pad=True)
            pos = den > 0
            y = torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(den))
            return y.to(x.dtype)
        win = windows(a, k, s, p)  # (N, C, OH, OW, k*k), padding = 0
        cdf = win.detach().to(ct).cumsum(-1)
        total = cdf[..., -1:]
        u = torch.rand(total.shape, dtype=ct, device=x.device)
        # the first index whose cumulative mass exceeds u * total has a_i > 0 (or the window is all 0)
        idx = (cdf <= u * total).sum(-1, keepdim=True).clamp_(max=k * k - 1)
        return win.gather(-1, idx).squeeze(-1)

    def other_ops(self, c: int, h: int, w: int) -> int:
        # eval rule per output: k^2 squares + 2 (k^2 - 1) adds + 1 divide (+ the ReLU on the input)
        return c * self.out_size(h) * self.out_size(w) * (3 * self.k * self.k - 1) + c * h * w
