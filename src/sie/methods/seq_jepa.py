"""seq-JEPA: an action-conditioned world model over a sequence of views (Ghaemi et al., NeurIPS 2025; docs/methods.md).

As hafezgh/seq-jepa (``SeqJEPA_Transforms``) on 3DIEBench. A sample holds M + 1 views of one object
(M = ``model.seq_jepa.seq_len``, in the loader's random order) and the relative transformation
``g_i`` of R_i^-1 R_{i+1} between consecutive views (P parameters, a quaternion for rotation):

    z_i   = f(x_i)                                   per-view backbone embedding, i < M        (B, D)
    a_i   = A(g_i)                                   action embedding Linear(P, 128, no bias) + BN(affine=False),
                                                     one BatchNorm over all M actions of the batch
    t_i   = [z_i ; a_i] for i < M - 1, [z_{M-1} ; 0]  tokens (E = D + 128); the last observed view's action is 0
    c     = T([agg ; t_0 ... t_{M-1}])[0]            transformer aggregator, learned agg token (zeros), no
                                                     positional embedding, final LayerNorm          (B, E)
    y     = p([c ; a_{M-1}])                          predictor Linear(E + 128, 1024, no bias)-BN-ReLU-Linear(1024, D)
    L     = 1 - mean_b cos(y_b, sg(f_ema(x_M)_b))    target: the EMA encoder's raw embedding of view M

The EMA covers the encoder only; its momentum ramps from ``ema`` to 1 along a cosine over the epochs
(:mod:`sie.nn.ema`). Without action conditioning (``action_conditioning=false``, the paper's "w/o act
cond" row) tokens are the embeddings alone and the predictor sees the aggregate only. With
``learn_action_embedding=false`` the raw parameters take the place of a_i, zero-padded so that the
token width divides by the number of heads.

Evaluation: the backbone embedding is the per-view representation (relative and "individual"
rotation R², single-view classification); the aggregate of ``eval_seq_len`` views (:meth:`SeqJEPA.aggregate`)
gives the paper's classification row. The predictor maps (one view's embedding, action) to the next
view's embedding (a context of one view), so the retrieval metrics apply too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sie.config import Config, param
from sie.data.batch import Batch
from sie.errors import ConfigError
from sie.losses import cosine_distance_loss
from sie.methods.base import Method, MethodOutput, StepProgress
from sie.methods.registry import register_method
from sie.nn.ema import EMATarget, ema_momentum

__all__ = ["SeqJEPA", "SeqJEPAConfig"]


@dataclass(frozen=True)
class SeqJEPAConfig:
    """``model.seq_jepa.*``; defaults = hafezgh/seq-jepa's 3DIEBench command (README, train script)."""

    seq_len: int = param(
        3, "M_tr: observed views per training sequence (a sample holds M_tr + 1 views)", "views"
    )
    eval_seq_len: int = param(
        3, "M_val: views aggregated for the evaluation's aggregate classification", "views"
    )
    action_conditioning: bool = param(
        True, "action tokens and an action-conditioned predictor (false = 'w/o act cond')"
    )
    learn_action_embedding: bool = param(
        True, "embed actions with Linear + BatchNorm (false = raw parameters)"
    )
    action_dim: int = param(128, "width of the action embedding", "dims")
    num_layers: int = param(3, "transformer aggregator layers")
    num_heads: int = param(4, "attention heads (must divide the token width)")
    ff_mult: int = param(4, "feed-forward width of the aggregator as a multiple of the token width")
    dropout: float = param(0.1, "dropout inside the aggregator (PyTorch's default, as the reference)")
    pred_hidden: int = param(1024, "hidden width of the predictor (0 = one Linear + BatchNorm)", "dims")
    ema: float = param(0.996, "base momentum of the EMA target encoder")
    ema_schedule: Literal["cosine", "constant"] = param(
        "cosine", "momentum schedule: cosine ramp to 1, or constant"
    )
    ema_unit: Literal["epoch", "step"] = param(
        "epoch", "the cosine ramp advances per epoch (as the reference) or per step"
    )


def _options(cfg: Config) -> SeqJEPAConfig:
    opts: SeqJEPAConfig = cfg.model.section("seq_jepa")
    checks = {
        "seq_len": opts.seq_len >= 1,
        "eval_seq_len": opts.eval_seq_len >= 1,
        "action_dim": opts.action_dim >= 1,
        "num_layers": opts.num_layers >= 1,
        "num_heads": opts.num_heads >= 1,
        "ff_mult": opts.ff_mult >= 1,
        "dropout": 0.0 <= opts.dropout < 1.0,
        "pred_hidden": opts.pred_hidden >= 0,
        "ema": 0.0 <= opts.ema <= 1.0,
    }
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(
                f"model.seq_jepa.{key}={getattr(opts, key)!r} is out of range for method 'seq-jepa'"
            )
    return opts


def _training_views(cfg: Config) -> int:
    return _options(cfg).seq_len + 1


@register_method(
    "seq-jepa",
    description="seq-JEPA: transformer over a sequence of views + actions predicts the next view's EMA embedding",
    terms=("loss/seq_jepa",),
    reference="hafezgh/seq-jepa SeqJEPA_Transforms (3DIEBench)",
    views=_training_views,
    views_key="model.seq_jepa.seq_len + 1",
    section=SeqJEPAConfig,
)
class SeqJEPA(Method):
    """seq-JEPA; see the module docstring for the model and the loss.

    Attributes:
        token_dim: E, the width of a token and of the aggregate representation.
        target_encoder: the EMA copy of the backbone.
    """

    def __init__(self, cfg: Config, transform_dim: int) -> None:
        super().__init__(cfg, transform_dim)
        opts = _options(cfg)
        self.opts = opts
        self.seq_len = opts.seq_len
        self.aggregate_views = opts.eval_seq_len
        self.has_predictor = opts.action_conditioning
        d = self.repr_dim
        if not opts.action_conditioning:
            self.action_embed_dim = 0
            self.action_embedding: nn.Module | None = None
        elif opts.learn_action_embedding:
            self.action_embed_dim = opts.action_dim
            self.action_embedding = nn.Sequential(
                nn.Linear(transform_dim, opts.action_dim, bias=False),
                nn.BatchNorm1d(opts.action_dim, affine=False),
            )
        else:
            self.action_embed_dim = transform_dim
            self.action_embedding = None
        token = d + self.action_embed_dim
        if not opts.learn_action_embedding and opts.action_conditioning:
            token += -token % opts.num_heads  # zero padding, as the reference's raw-action variant
        elif token % opts.num_heads:
            raise ConfigError(
                f"model.seq_jepa.num_heads={opts.num_heads} does not divide the token width {token} "
                f"({d}-d embedding + model.seq_jepa.action_dim={self.action_embed_dim})"
            )
        self.token_dim = token
        self.agg_token = nn.Parameter(torch.zeros(1, 1, token))
        layer = nn.TransformerEncoderLayer(
            d_model=token,
            nhead=opts.num_heads,
            dim_feedforward=opts.ff_mult * token,
            dropout=opts.dropout,
            batch_first=True,
        )
        self.aggregator = nn.TransformerEncoder(
            layer, num_layers=opts.num_layers, norm=nn.LayerNorm(token), enable_nested_tensor=False
        )
        pred_in = token + self.action_embed_dim
        if opts.pred_hidden > 0:
            self.predictor = nn.Sequential(
                nn.Linear(pred_in, opts.pred_hidden, bias=False),
                nn.BatchNorm1d(opts.pred_hidden),
                nn.ReLU(),
                nn.Linear(opts.pred_hidden, d),
            )
        else:
            self.predictor = nn.Sequential(nn.Linear(pred_in, d, bias=False), nn.BatchNorm1d(d))
        self.target_encoder = EMATarget(self.backbone)

    # ---- pieces --------------------------------------------------------------------------------------

    def embed_actions(self, params: Tensor) -> Tensor:
        """(N, A, P) transformation parameters -> (N, A, a) action embeddings (one BatchNorm over N x A)."""
        n, count, p = params.shape
        if self.action_embedding is None:
            return params
        out: Tensor = self.action_embedding(params.reshape(n * count, p))
        return out.reshape(n, count, -1)

    def _aggregate_tokens(self, z: Tensor, actions: Tensor | None) -> Tensor:
        """Embeddings (N, M, D) and embedded actions of the first M - 1 views (N, M - 1, a) -> (N, E)."""
        n = z.shape[0]
        if actions is None:
            tokens = z
        else:
            last = actions.new_zeros(n, 1, actions.shape[-1])
            tokens = torch.cat([z, torch.cat([actions, last], dim=1).to(z.dtype)], dim=-1)
        pad = self.token_dim - tokens.shape[-1]
        if pad:
            tokens = F.pad(tokens, (0, pad))
        x = torch.cat([self.agg_token.expand(n, 1, -1).to(tokens.dtype), tokens], dim=1)
        out: Tensor = self.aggregator(x)[:, 0]
        return out

    def aggregate(self, z: Tensor, params: Tensor) -> Tensor:
        """The sequence representation c: embeddings (N, M, D) of M views in order and the (N, M - 1, P)
        parameters between consecutive ones -> (N, E)."""
        if params.shape[:2] != (z.shape[0], z.shape[1] - 1):
            raise ValueError(f"aggregate: need (N, M - 1, P) parameters for {tuple(z.shape)} embeddings")
        actions: Tensor | None = None
        if self.has_predictor:  # with one view there is no action: its token's action part is zero
            actions = (
                self.embed_actions(params)
                if params.shape[1]
                else z.new_zeros(len(z), 0, self.action_embed_dim)
            )
        return self._aggregate_tokens(z, actions)

    def _predict_from(self, context: Tensor, action: Tensor | None) -> Tensor:
        x = context if action is None else torch.cat([context, action.to(context.dtype)], dim=-1)
        out: Tensor = self.predictor(x)
        return out

    def embed_equivariant(self, h: Tensor) -> Tensor:
        """The predictor's space is the backbone's: (N, D) -> (N, D) unchanged."""
        return h

    def predict(self, z: Tensor, params: Tensor) -> Tensor:
        """(N, D) embedding of one view and (N, P) parameters -> (N, D) predicted next view (context of one)."""
        if not self.has_predictor:
            return super().predict(z, params)
        context = self.aggregate(z[:, None], params.new_zeros(z.shape[0], 0, params.shape[-1]))
        return self._predict_from(context, self.embed_actions(params[:, None])[:, 0])

    # ---- training ------------------------------------------------------------------------------------

    def forward(self, batch: Batch) -> MethodOutput:
        """1 - cosine between the predicted and the EMA-encoded embedding of the last view."""
        self.check_batch(batch)
        m = self.seq_len
        z = torch.stack([self.backbone(batch.views[:, i]) for i in range(m)], dim=1)  # (B, M, D)
        target = self.target_encoder(batch.views[:, m])  # (B, D), no gradient
        if self.has_predictor:
            actions = self.embed_actions(batch.transforms)  # (B, M, a): one BatchNorm over all M
            context = self._aggregate_tokens(z, actions[:, : m - 1])
            prediction = self._predict_from(context, actions[:, m - 1])
        else:
            prediction = self._predict_from(self._aggregate_tokens(z, None), None)
        loss = cosine_distance_loss(prediction, target.detach())
        # The last slot holds the target encoder's embedding of view M (detached, for the online probes).
        return self.output(loss, {"loss/seq_jepa": loss}, torch.cat([z, target[:, None].to(z.dtype)], dim=1))

    def on_step_end(self, progress: StepProgress) -> None:
        """Move the EMA target encoder towards the backbone."""
        momentum = ema_momentum(self.opts.ema, progress.progress(self.opts.ema_unit), self.opts.ema_schedule)
        self.target_encoder.update(self.backbone, momentum)
