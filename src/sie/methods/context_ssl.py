"""ContextSSL: in-context symmetries with a GPT-style world model (Gupta et al., NeurIPS 2024; docs/methods.md).

As Sharut/In-Context-Symmetries (``main.py``, ``models.BranchNetwork``, ``gptmodel.GPT``) on 3DIEBench.
A sample is a pair of views (x_a, x_b) of one object with the rotation + colour change g between them
(``data.transform=rotcolor``: quaternion of R_a^-1 R_b, Δ floor hue, Δ spot hue; P = 6). Each training
step draws one *environment* e for the whole batch (rotation, colour or both, with probabilities
``env_ratio``) and zeroes the parameters that are not part of it: g_e. The batch's B pairs are cut, in
order, into contexts of n = ``block_size / 2`` pairs (the last one shorter when n does not divide B), so a
context holds pairs of *different* objects that share the environment. (With ``pairs_per_sample`` m > 1, a
sample holds 2m distinct views of one object, drawn by the data layer like any K views, forming the pairs
(x_0, x_1), (x_2, x_3), ...; the B m pairs stay sample-major, so a context holds runs of m pairs of one
object. Not in the reference.)

    h_a, h_b = f(x_a), f(x_b)                                  backbone features (B, D), no projector
    tokens   = [h_a,1 ; g_e,1], [h_b,1 ; 0], [h_a,2 ; g_e,2], ...    2 tokens per pair, width D + P
    o        = W_out(LN(T(W_in(tokens))))                      pre-LN GPT (3 layers, 4 heads, width 2048,
                                                               GELU MLP 4x, no positional embedding)  (2n, D)
    attention: token t sees tokens <= t, except that the token of h_b never sees its own pair's h_a;
               with random masking every earlier *pair* is hidden with probability ``mask_prob``
               (one draw per layer and query token, shared by the sequences of the batch and the heads)
    L_nce    = NT-Xent_τ(o_a, o_b)                             over all B pairs (gathered), cosines floored
                                                               at ``min_similarity`` as the reference
    u        = φ(normalize(o))                                 auxiliary regressor MLP D-1024-1024-P on all 2B outputs
    L_aux    = MSE(u[:, :4], q_b) if e has rotation + MSE(u[:, 4:], hues_b) if e has colour
                                                               q_b: absolute quaternion of view b's rotation,
                                                               hues_b: its (floor hue, spot hue)
    L        = L_nce + weight_equiv_loss · L_aux

The environment of step s is drawn from ``(train.seed, s)`` alone, so it is the same on every rank and
after a resume. At evaluation a context of c tokens (c / 2 pairs, built from training pairs in an
environment) precedes each query token, which sees the whole context and itself
(:meth:`ContextSSL.predict_in_context`), as the reference's key-value cache does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sie.config import Config, param
from sie.data.batch import Batch
from sie.distributed import gather_with_grad
from sie.errors import ConfigError
from sie.geometry import euler_xyz_to_quaternion
from sie.losses import info_nce_loss, invariance_loss
from sie.methods.base import Method, MethodOutput, StepProgress
from sie.methods.registry import register_method
from sie.seeding import derive_seed

__all__ = [
    "ENVIRONMENTS",
    "ContextSSL",
    "ContextSSLConfig",
    "auxiliary_loss",
    "draw_environment",
    "environment_actions",
    "interleave_pairs",
    "pair_attention_mask",
    "random_pair_mask",
]

ENVIRONMENTS: tuple[str, ...] = ("rotation", "colour", "rotcolour")
"""The environments, in the order of ``env_ratio``."""

_ROTATION = slice(0, 4)  # quaternion (x, y, z, w) in the rotcolor parameters
_COLOUR = slice(4, 6)  # floor hue, spot hue
_HUE_LATENTS = [3, 6]  # floor hue, spot hue in the 7-value latent vector


@dataclass(frozen=True)
class ContextSSLConfig:
    """``model.context_ssl.*``; defaults = Sharut/In-Context-Symmetries ``config.yml`` (its README's best
    command is ``configs/context_ssl_3diebench.yaml``)."""

    block_size: int = param(128, "tokens per context sequence, two per pair (the GPT's block size)", "tokens")
    pairs_per_sample: int = param(
        1,
        "pairs of one object per sample: 1 = the reference (a context holds pairs of different objects); "
        "m > 1 draws 2m distinct views of each object, so a context holds runs of m pairs of one object",
        "pairs",
    )
    n_embd: int = param(2048, "width of the transformer predictor", "dims")
    n_layer: int = param(3, "transformer layers")
    n_head: int = param(4, "attention heads (must divide n_embd)")
    dropout: float = param(0.0, "dropout inside the transformer (the reference's GPTConfig default)")
    temperature: float = param(0.5, "NT-Xent temperature (config.yml 0.5; the README command 0.1)")
    min_similarity: float = param(
        1e-7, "cosine similarities are raised to this before the softmax, as the reference (-1 = off)"
    )
    weight_equiv_loss: float = param(1.0, "weight of the auxiliary transformation regressor's loss")
    aux_hidden: int = param(1024, "hidden width of the auxiliary regressor (two hidden layers)", "dims")
    env_ratio: tuple[float, ...] = param(
        (0.5, 0.5, 0.0), "probabilities of the rotation, colour and rotation+colour environments"
    )
    random_mask: bool = param(False, "hide each earlier pair of the context with probability mask_prob")
    mask_prob: float = param(0.15, "probability of hiding a context pair when random_mask is on")
    eval_normalize: bool = param(True, "L2-normalise predictor outputs before the evaluation probes")
    eval_contexts: tuple[int, ...] = param(
        (0, 2, 6, 14, 30, 126), "context lengths (tokens, even) the evaluation reports", "tokens"
    )

    def check(self) -> None:
        """Refuse settings out of range, naming the key (called by ``sie.config.validate``, which adds the
        flag or file that set it, and again when the method is built)."""
        opts = self
        checks = {
            "block_size": opts.block_size >= 2 and opts.block_size % 2 == 0,
            "pairs_per_sample": opts.pairs_per_sample >= 1,
            "n_embd": opts.n_embd >= 1,
            "n_layer": opts.n_layer >= 1,
            "n_head": opts.n_head >= 1 and opts.n_embd % max(1, opts.n_head) == 0,
            "dropout": 0.0 <= opts.dropout < 1.0,
            "temperature": opts.temperature > 0,
            "min_similarity": -1.0 <= opts.min_similarity <= 1.0,
            "weight_equiv_loss": opts.weight_equiv_loss >= 0,
            "aux_hidden": opts.aux_hidden >= 1,
            "mask_prob": 0.0 <= opts.mask_prob <= 1.0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"model.context_ssl.{key}={getattr(opts, key)!r} is out of range for method 'context-ssl'"
                )
        ratio = opts.env_ratio
        if len(ratio) != 3 or any(p < 0 for p in ratio) or not math.isclose(sum(ratio), 1.0, abs_tol=1e-6):
            raise ConfigError(
                f"model.context_ssl.env_ratio={list(ratio)} must be 3 non-negative probabilities (rotation, "
                f"colour, rotation+colour) that sum to 1; they sum to {sum(ratio):g}"
            )
        longest = opts.block_size - 2  # the query pair takes the last two tokens of a block
        for c in opts.eval_contexts:
            if c < 0 or c % 2 or c > longest:
                raise ConfigError(
                    f"model.context_ssl.eval_contexts holds {c}: a context length must be even and in "
                    f"[0, block_size - 2 = {longest}] (model.context_ssl.block_size={opts.block_size})"
                )


def _options(cfg: Config) -> ContextSSLConfig:
    opts: ContextSSLConfig = cfg.model.section("context_ssl")
    opts.check()
    return opts


def _training_views(cfg: Config) -> int:
    return 2 * _options(cfg).pairs_per_sample  # also refuses bad settings when the config is resolved


# ---- pure pieces ---------------------------------------------------------------------------------------


def pair_attention_mask(tokens: int, device: torch.device | None = None) -> Tensor:
    """(T, T) bool, True where query t may attend to key s: s <= t, except that the second token of a
    pair (odd t) does not see its own pair's first token (t - 1)."""
    allowed = torch.ones(tokens, tokens, dtype=torch.bool, device=device).tril()
    odd = torch.arange(1, max(tokens, 1), 2, device=device)
    allowed[odd, odd - 1] = False
    return allowed


def random_pair_mask(
    tokens: int,
    mask_prob: float,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """(T, T) bool, True where a key stays visible: for every query token, each pair of keys (2j, 2j + 1)
    is hidden with probability ``mask_prob``; a token always sees itself. T must be even."""
    keep = torch.rand(tokens, tokens // 2, generator=generator, device=device) >= mask_prob
    return keep.repeat_interleave(2, dim=1) | torch.eye(tokens, dtype=torch.bool, device=device)


def draw_environment(seed: int, step: int, ratio: tuple[float, ...]) -> int:
    """Index into :data:`ENVIRONMENTS` of training step ``step``: a draw from ``ratio`` seeded by (seed, step)."""
    rng = np.random.default_rng(derive_seed(seed, "context-ssl-environment", step))
    p = np.asarray(ratio, dtype=np.float64)
    return int(rng.choice(len(p), p=p / p.sum()))


def environment_actions(params: Tensor, environment: int) -> Tensor:
    """(N, 6) rotcolor parameters -> a copy with the parts outside the environment zeroed: rotation keeps
    the quaternion, colour the two hue changes, rotation+colour everything."""
    out = params.clone()
    if ENVIRONMENTS[environment] == "rotation":
        out[:, _COLOUR] = 0
    elif ENVIRONMENTS[environment] == "colour":
        out[:, _ROTATION] = 0
    return out


def auxiliary_loss(regressed: Tensor, quaternion: Tensor, hues: Tensor, environment: int) -> Tensor:
    """The auxiliary regressor's loss: MSE of its first 4 outputs (N, 6) to ``quaternion`` (N, 4) when the
    environment has rotation, plus MSE of its last 2 to ``hues`` (N, 2) when it has colour."""
    name = ENVIRONMENTS[environment]
    loss = regressed.new_zeros((), dtype=torch.float32)
    if name in ("rotation", "rotcolour"):
        loss = loss + invariance_loss(regressed[:, _ROTATION], quaternion)
    if name in ("colour", "rotcolour"):
        loss = loss + invariance_loss(regressed[:, _COLOUR], hues)
    return loss


def interleave_pairs(h_a: Tensor, h_b: Tensor, actions: Tensor) -> Tensor:
    """(S, n, D), (S, n, D), (S, n, P) -> (S, 2n, D + P) tokens [h_a ; g], [h_b ; 0] per pair, in order."""
    first = torch.cat([h_a, actions.to(h_a.dtype)], dim=-1)
    second = torch.cat([h_b, torch.zeros_like(actions, dtype=h_b.dtype)], dim=-1)
    return torch.stack([first, second], dim=2).flatten(1, 2)


@register_method(
    "context-ssl",
    description="ContextSSL: a GPT over a context of (state, action, next state) pairs, NT-Xent on its outputs",
    terms=("loss/nce", "loss/aux"),
    reference="Sharut/In-Context-Symmetries (3DIEBench)",
    views=_training_views,
    views_key="model.context_ssl.pairs_per_sample x 2",
    section=ContextSSLConfig,
    requires_transform=("rotcolor", 6),
)
class ContextSSL(Method):
    """ContextSSL; see the module docstring for the model and the loss.

    Attributes:
        read_in, layers, final_norm, read_out: the GPT predictor (tokens (S, T, D + P) -> (S, T, D)).
        aux_predictor: the auxiliary regressor φ, (N, D) -> (N, P).
        steps_done: optimiser steps taken (decides the environment of the next step; in the state dict).
    """

    steps_done: Tensor

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__(cfg, transform_dim)
        opts = _options(cfg)
        self.opts = opts
        self.seed = cfg.train.seed
        self.pairs_per_context = opts.block_size // 2
        self.context_lengths = tuple(opts.eval_contexts)
        self.context_environments = ENVIRONMENTS[:2]  # the reference evaluates rotation and colour contexts
        d, width = self.repr_dim, opts.n_embd
        self.read_in = nn.Linear(d + transform_dim, width)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=width,
                nhead=opts.n_head,
                dim_feedforward=4 * width,
                dropout=opts.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,  # GPT-2's pre-LN block: x + attn(LN(x)), x + mlp(LN(x))
            )
            for _ in range(opts.n_layer)
        )
        self.final_norm = nn.LayerNorm(width)
        self.read_out = nn.Linear(width, d)
        self._gpt_init()
        self.aux_predictor = nn.Sequential(
            nn.Linear(d, opts.aux_hidden),
            nn.ReLU(),
            nn.Linear(opts.aux_hidden, opts.aux_hidden),
            nn.ReLU(),
            nn.Linear(opts.aux_hidden, transform_dim),
        )
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._next_step: int | None = None  # steps_done on the host, so no step reads the device

    def _gpt_init(self) -> None:
        """GPT-2's initialisation, as the reference: N(0, 0.02) weights, zero biases, the residual output
        projections N(0, 0.02 / sqrt(2 n_layer)); LayerNorms at 1 and 0."""
        residual_std = 0.02 / math.sqrt(2 * self.opts.n_layer)
        for module in [self.read_in, self.read_out, *self.layers]:
            for name, p in module.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif "norm" in name:
                    nn.init.ones_(p)
                elif name.endswith(("out_proj.weight", "linear2.weight")):
                    nn.init.normal_(p, 0.0, residual_std)
                else:
                    nn.init.normal_(p, 0.0, 0.02)

    # ---- the predictor ---------------------------------------------------------------------------------

    def transformer(self, tokens: Tensor, allowed: list[Tensor]) -> Tensor:
        """Tokens (S, T, D + P) and one (T, T) visibility mask per layer (True = may attend) -> (S, T, D)."""
        x = self.read_in(tokens)
        for layer, mask in zip(self.layers, allowed, strict=True):
            x = layer(x, src_mask=~mask)  # PyTorch's boolean attention masks mark what is hidden
        out: Tensor = self.read_out(self.final_norm(x))
        return out

    def training_masks(self, tokens: int, device: torch.device) -> list[Tensor]:
        """One (T, T) visibility mask per layer: the pair-causal mask, with random pair masking if enabled."""
        base = pair_attention_mask(tokens, device)
        if not (self.opts.random_mask and self.training):
            return [base] * len(self.layers)
        return [base & random_pair_mask(tokens, self.opts.mask_prob, device=device) for _ in self.layers]

    def contextual_outputs(self, h_a: Tensor, h_b: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """(B, D), (B, D) features of the pairs and their (B, P) environment actions -> the GPT's outputs
        at the first and second token of every pair, (B, D) each; contexts of ``pairs_per_context``
        consecutive pairs, the last one shorter when it does not divide B."""
        b = h_a.shape[0]
        n = min(self.pairs_per_context, b)
        masks = self.training_masks(2 * n, h_a.device)
        full = b // n * n
        outs = []
        for start, stop in ((0, full), (full, b)):
            count = stop - start
            if count == 0:
                continue
            per = n if count % n == 0 else count  # the remainder is one shorter context
            tokens = interleave_pairs(
                h_a[start:stop].reshape(-1, per, h_a.shape[-1]),
                h_b[start:stop].reshape(-1, per, h_b.shape[-1]),
                actions[start:stop].reshape(-1, per, actions.shape[-1]),
            )
            t = tokens.shape[1]
            outs.append(self.transformer(tokens, [m[:t, :t] for m in masks]).reshape(count, 2, -1))
        out = torch.cat(outs)
        return out[:, 0], out[:, 1]

    def predict_in_context(
        self, context: tuple[Tensor, Tensor, Tensor], queries: Tensor, actions: Tensor, chunk: int = 256
    ) -> Tensor:
        """The GPT's output for each query token after a context of pairs.

        Args:
            context: features of the context pairs (c, D), (c, D) and their (c, P) environment actions
                (c = 0 for no context).
            queries: (Q, D) features of the query views.
            actions: (Q, P) the queries' actions (zeros for the second view of a pair / the gallery).

        Returns:
            (Q, D) outputs; each query sees the 2c context tokens and itself, not the other queries.
        """
        h_a, h_b, g = context
        c2 = 2 * h_a.shape[0]
        ctx_tokens = interleave_pairs(h_a[None], h_b[None], g[None])  # (1, 2c, D + P)
        query_tokens = torch.cat([queries, actions.to(queries.dtype)], dim=-1)
        outs = []
        for start in range(0, len(queries), chunk):
            q = query_tokens[start : start + chunk]
            t = c2 + len(q)
            allowed = torch.zeros(t, t, dtype=torch.bool, device=queries.device)
            allowed[:c2, :c2] = pair_attention_mask(c2, queries.device)
            allowed[c2:, :c2] = True
            allowed[c2:, c2:] = torch.eye(len(q), dtype=torch.bool, device=queries.device)
            tokens = torch.cat([ctx_tokens.to(q.dtype), q[None]], dim=1)
            outs.append(self.transformer(tokens, [allowed] * len(self.layers))[0, c2:])
        return torch.cat(outs)

    def evaluate_in_context(
        self, context: tuple[Tensor, Tensor, Tensor], queries: Tensor, params: Tensor, environment: str
    ) -> Tensor:
        """:meth:`predict_in_context` with the context's and the queries' parameters restricted to
        ``environment`` (``rotation``, ``colour`` or ``rotcolour``); L2-normalised with ``eval_normalize``."""
        if environment not in ENVIRONMENTS:
            raise ValueError(
                f"unknown environment {environment!r}; expected one of {', '.join(ENVIRONMENTS)}"
            )
        index = ENVIRONMENTS.index(environment)
        h_a, h_b, g = context
        out = self.predict_in_context(
            (h_a, h_b, environment_actions(g, index)), queries, environment_actions(params, index)
        )
        return F.normalize(out, dim=-1) if self.opts.eval_normalize else out

    # ---- training ----------------------------------------------------------------------------------------

    def environment(self) -> int:
        """Index into :data:`ENVIRONMENTS` of the current training step."""
        if self._next_step is None:  # read the buffer once after building or loading, not every step
            self._next_step = int(self.steps_done)
        return draw_environment(self.seed, self._next_step, self.opts.env_ratio)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._next_step = None  # steps_done may have changed: read it again

    def forward(self, batch: Batch) -> MethodOutput:
        """NT-Xent between the GPT's outputs at the two tokens of every pair + the auxiliary regression."""
        if batch.latents is None:
            raise ValueError("method 'context-ssl' needs the batch's per-view latents (Batch.latents)")
        self.check_batch(batch)  # K = 2m views, P = 6
        b, k = batch.views.shape[:2]
        # One backbone call on all B x 2m views: training-mode BatchNorm takes its statistics over both
        # views together, as the reference's encoder does on torch.cat([x, xv]) (main.py, models.py).
        h = self.backbone(batch.views.flatten(0, 1)).reshape(b, k, -1)  # (B, 2m, D)
        d = h.shape[-1]
        # Pair j of a sample is (view 2j, view 2j + 1) with the parameters between them; the B x m pairs
        # stay sample-major, so a context holds runs of m pairs of one object.
        h_a, h_b = h[:, 0::2].reshape(-1, d), h[:, 1::2].reshape(-1, d)
        params = batch.transforms[:, 0::2].reshape(h_a.shape[0], -1)
        environment = self.environment()
        actions = environment_actions(params, environment)
        out_a, out_b = self.contextual_outputs(h_a, h_b, actions)
        nce = info_nce_loss(
            gather_with_grad(out_a),
            gather_with_grad(out_b),
            self.opts.temperature,
            min_similarity=self.opts.min_similarity,
        )
        # Both tokens of a pair regress view b's absolute rotation (quaternion) and hues, as the reference.
        latents_b = batch.latents[:, 1::2].reshape(h_a.shape[0], -1).to(h.device)
        quaternion = euler_xyz_to_quaternion(latents_b[:, 0:3].double()).float()
        hues = latents_b[:, _HUE_LATENTS].float()
        regressed = self.aux_predictor(F.normalize(torch.cat([out_a, out_b]), dim=-1))
        aux = auxiliary_loss(regressed, quaternion.repeat(2, 1), hues.repeat(2, 1), environment)
        loss = nce + self.opts.weight_equiv_loss * aux
        return self.output(loss, {"loss/nce": nce, "loss/aux": aux}, h)

    def on_step_end(self, progress: StepProgress) -> None:
        """Count the step: the next forward draws the environment of step ``progress.step + 1``."""
        self.steps_done.fill_(progress.step + 1)
        self._next_step = progress.step + 1
