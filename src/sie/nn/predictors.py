"""Predictors: map an embedding and transformation parameters g to the embedding of the other view.

Two families, both ``forward(z (N, d), params (N, P)) -> (N, d)``:

* :class:`HypernetworkPredictor` (SIE): a hypernetwork ``H`` maps g to the weights (and optionally the
  biases) of a small generated network ``d -> h1 -> ... -> d``, which is then applied to z. The
  reference default is a *linear* hypernetwork without biases generating one d x d layer:
  ``p_g(z) = W(g) z`` with ``W(g) = sum_k g_k A_k``.
* :class:`MLPPredictor`: an ordinary MLP on ``concat(g, z)`` (g first, as the reference).

Two equal ways to run a hypernetwork (``implementation``):

``materialized`` (the reference): compute the flat parameter vector ``H(g)`` (N, total), view each
layer's slice as per-sample weights (N, out, in) and apply them with a batched matmul. For the SIE
configuration (d = 1024) that writes N x 1024 x 1024 values per step (512 MiB at N = 128, fp32),
and the same again in the backward pass.

``factorized`` (default): the last layer of H is linear, so every generated weight is an affine
function of a small "code" c (c = g for the linear hypernetwork, the last hidden activation of the
deep one, L values): ``W(g) = sum_k c_k A_k (+ B0)``. Hence

    W(g) x = sum_k c_k (A_k x) (+ B0 x) = Ahat · vec(x ⊗ c) (+ B0 x)

where ``Ahat`` is the hypernetwork's own weight slice viewed as (out, in * L): one ordinary matmul of
the (N, in * L) outer products with a weight that already exists. Nothing of size N x out x in is
ever built; the flops are the same as the materialised product's weight generation alone. Generated
biases ``b(g) = C c (+ c0)`` are a plain linear layer on c. Because it relies only on the last
hypernetwork layer being linear, it applies to every configuration the reference offers (linear or
deep hypernetwork, generated biases or not, any number of generated layers, ReLU or not). The two
implementations share parameters and agree to float rounding (tests/nn/test_predictors.py).

Parameter layout (identical for both implementations): the hypernetwork's output vector holds, for
each generated layer in order, the weight (out, in) row-major followed, with ``bias_pred``, by the
bias (out,).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "HYPERNETWORK_IMPLEMENTATIONS",
    "HypernetworkImplementation",
    "HypernetworkPredictor",
    "MLPPredictor",
    "batched_linear",
]

HypernetworkImplementation = Literal["factorized", "materialized"]
HYPERNETWORK_IMPLEMENTATIONS: tuple[str, ...] = get_args(HypernetworkImplementation)


def batched_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """A per-sample ``nn.Linear``: x (N, in), weight (N, out, in), bias (N, out) or None -> (N, out).

    ``out[n] = weight[n] @ x[n] + bias[n]`` (the reference's bmm on ``x.unsqueeze(1)`` and a
    transpose, written with explicit dimensions so a batch of one stays (1, out)).
    """
    out = torch.bmm(weight, x.unsqueeze(2)).squeeze(2)
    return out if bias is None else out + bias


def _check_inputs(z: Tensor, params: Tensor, dim: int, param_dim: int) -> None:
    if z.ndim != 2 or z.shape[1] != dim:
        raise ValueError(f"predictor input z must be (N, {dim}); got {tuple(z.shape)}")
    if params.ndim != 2 or params.shape != (z.shape[0], param_dim):
        raise ValueError(
            f"transformation parameters must be (N, P) = ({z.shape[0]}, {param_dim}); got {tuple(params.shape)}"
        )


class HypernetworkPredictor(nn.Module):
    """SIE's hypernetwork predictor ``p_g(z)``: (N, d), (N, P) -> (N, d).

    Args:
        dim: embedding dims d (input and output of the generated network).
        param_dim: number P of transformation parameters (4 for a quaternion, 6 for rot + colour).
        hidden: hidden widths of the generated network (``()`` = one d x d layer, the reference default).
        hypernetwork: ``linear`` = one ``Linear(P, total)``; ``deep`` = ``Linear(P, P) - ReLU -
            Linear(P, P) - ReLU - Linear(P, total)`` (the reference's hidden width equals P).
        bias_pred: the hypernetwork also generates a bias for every generated layer.
        bias_hypernet: the hypernetwork's own linear layers have biases.
        relu: ReLU between the generated layers (never after the last).
        implementation: ``factorized`` (default) or ``materialized``; see the module docstring.
        init_gain: None (the reference) keeps PyTorch's default initialisation of the generator,
            U(-1/sqrt(L), 1/sqrt(L)) for a code of L numbers, under which a generated d x d layer
            multiplies a random vector's norm by about 0.29 sqrt(d) (6.5 at d = 512). A number
            rescales the generator's weight rows of every generated layer (fan-in f) to standard
            deviation ``init_gain / sqrt(f)``: with a unit-norm code (quaternions through the linear
            hypernetwork) each generated layer then has that gain in expectation. Biases keep their
            initialisation.
    """

    def __init__(
        self,
        dim: int,
        param_dim: int,
        hidden: Sequence[int] = (),
        *,
        hypernetwork: Literal["linear", "deep"] = "linear",
        bias_pred: bool = False,
        bias_hypernet: bool = False,
        relu: bool = False,
        implementation: HypernetworkImplementation = "factorized",
        init_gain: float | None = None,
    ) -> None:
        super().__init__()
        if init_gain is not None and not init_gain > 0:
            raise ValueError(f"init_gain must be positive or None; got {init_gain}")
        if dim <= 0 or param_dim <= 0 or any(h <= 0 for h in hidden):
            raise ValueError(
                f"dims must be positive; got dim={dim}, param_dim={param_dim}, hidden={list(hidden)}"
            )
        if implementation not in HYPERNETWORK_IMPLEMENTATIONS:
            raise ValueError(
                f"implementation must be one of {HYPERNETWORK_IMPLEMENTATIONS}, got {implementation!r}"
            )
        self.dim = dim
        self.param_dim = param_dim
        self.relu = relu
        self.bias_pred = bias_pred
        self.implementation: HypernetworkImplementation = implementation
        sizes = [dim, *hidden, dim]
        # (in, out, weight offset, bias offset or -1) of every generated layer in the flat vector.
        self.layers: list[tuple[int, int, int, int]] = []
        offset = 0
        for fan_in, fan_out in itertools.pairwise(sizes):
            weight_offset = offset
            offset += fan_in * fan_out
            bias_offset = -1
            if bias_pred:
                bias_offset = offset
                offset += fan_out
            self.layers.append((fan_in, fan_out, weight_offset, bias_offset))
        self.total_params = offset
        if hypernetwork == "linear":
            self.code: nn.Module = nn.Identity()
        elif hypernetwork == "deep":
            self.code = nn.Sequential(
                nn.Linear(param_dim, param_dim, bias=bias_hypernet),
                nn.ReLU(),
                nn.Linear(param_dim, param_dim, bias=bias_hypernet),
                nn.ReLU(),
            )
        else:
            raise ValueError(f"hypernetwork must be 'linear' or 'deep', got {hypernetwork!r}")
        # The last (linear) layer of the hypernetwork; its weight (total, code_dim) holds the A_k.
        self.generator = nn.Linear(param_dim, self.total_params, bias=bias_hypernet)
        if init_gain is not None:
            self._set_init_gain(init_gain)

    def _set_init_gain(self, gain: float) -> None:
        code_dim = self.generator.in_features
        default_std = 1.0 / math.sqrt(3.0 * code_dim)  # std of PyTorch's U(-1/sqrt(L), 1/sqrt(L))
        with torch.no_grad():
            for fan_in, fan_out, w_off, _ in self.layers:
                rows = self.generator.weight[w_off : w_off + fan_in * fan_out]
                rows.mul_(gain / (math.sqrt(fan_in) * default_std))

    def generated_parameters(self, params: Tensor) -> Tensor:
        """The flat generated-network parameters H(g): (N, P) -> (N, total)."""
        out: Tensor = self.generator(self.code(params))
        return out

    def forward(self, z: Tensor, params: Tensor) -> Tensor:
        """Embedding z (N, d) of view a and parameters g (N, P) -> predicted embedding of view b (N, d)."""
        _check_inputs(z, params, self.dim, self.param_dim)
        if self.implementation == "materialized":
            return self._forward_materialized(z, params)
        return self._forward_factorized(z, params)

    def _activation(self, x: Tensor, index: int) -> Tensor:
        return F.relu(x) if self.relu and index < len(self.layers) - 1 else x

    def _forward_materialized(self, z: Tensor, params: Tensor) -> Tensor:
        flat = self.generated_parameters(params)
        n = z.shape[0]
        x = z
        for index, (fan_in, fan_out, w_off, b_off) in enumerate(self.layers):
            weight = flat[:, w_off : w_off + fan_out * fan_in].reshape(n, fan_out, fan_in)
            bias = flat[:, b_off : b_off + fan_out] if b_off >= 0 else None
            x = self._activation(batched_linear(x, weight, bias), index)
        return x

    def _forward_factorized(self, z: Tensor, params: Tensor) -> Tensor:
        code = self.code(params)  # (N, L)
        n, code_dim = code.shape
        gen_weight, gen_bias = self.generator.weight, self.generator.bias  # (total, L), (total,) | None
        x = z
        for index, (fan_in, fan_out, w_off, b_off) in enumerate(self.layers):
            # Rows w_off.. of the generator weight are A[o * in + i, k]; viewed as (out, in * L) they
            # contract with the outer product x[n, i] * c[n, k] flattened to index i * L + k.
            a_hat = gen_weight[w_off : w_off + fan_out * fan_in].reshape(fan_out, fan_in * code_dim)
            outer = (x.unsqueeze(2) * code.unsqueeze(1)).reshape(n, fan_in * code_dim)
            y = F.linear(outer, a_hat)
            if gen_bias is not None:  # the constant part B0 of W(g)
                y = y + F.linear(x, gen_bias[w_off : w_off + fan_out * fan_in].reshape(fan_out, fan_in))
            if b_off >= 0:  # generated bias b(g) = C c (+ c0)
                y = y + F.linear(
                    code,
                    gen_weight[b_off : b_off + fan_out],
                    None if gen_bias is None else gen_bias[b_off : b_off + fan_out],
                )
            x = self._activation(y, index)
        return x


class MLPPredictor(nn.Module):
    """The reference's MLP predictor on ``concat(g, z)`` (parameters first): (N, d), (N, P) -> (N, d).

    ``num_layers`` = 1: ``Linear(P + d, d)``; k: k linear layers of width d with ReLU between; biases
    everywhere, no BatchNorm.
    """

    def __init__(self, dim: int, param_dim: int, num_layers: int = 1) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers={num_layers} must be >= 1")
        self.dim = dim
        self.param_dim = param_dim
        layers: list[nn.Module] = [nn.Linear(param_dim + dim, dim)]
        for _ in range(num_layers - 1):
            layers += [nn.ReLU(), nn.Linear(dim, dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, params: Tensor) -> Tensor:
        """Embedding z (N, d) and parameters g (N, P) -> predicted embedding (N, d)."""
        _check_inputs(z, params, self.dim, self.param_dim)
        out: Tensor = self.net(torch.cat([params, z], dim=1))
        return out
