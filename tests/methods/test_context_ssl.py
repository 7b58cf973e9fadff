"""ContextSSL: masks and environments by hand, the loss against a plain step-by-step re-computation,
what each token can see, evaluation in context, refusals and the published preset."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tests.methods.plain import plain_info_nce, plain_mse, random_batch

from sie.config import resolve_config
from sie.errors import ConfigError
from sie.geometry import euler_xyz_to_quaternion
from sie.methods import StepProgress, build_method, views_per_sample
from sie.methods.context_ssl import (
    ContextSSL,
    auxiliary_loss,
    draw_environment,
    environment_actions,
    pair_attention_mask,
    random_pair_mask,
)

pytestmark = pytest.mark.usefixtures("stand_in_backbone")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _method(*overrides: str, seed: int = 0) -> ContextSSL:
    torch.manual_seed(seed)
    cfg = resolve_config(
        "paper",
        overrides=[
            "model.method=context-ssl",
            "data.transform=rotcolor",
            "model.context_ssl.block_size=4",
            "model.context_ssl.n_embd=16",
            "model.context_ssl.n_head=2",
            "model.context_ssl.aux_hidden=8",
            "model.context_ssl.eval_contexts=[0,2]",
            *overrides,
        ],
    )
    method = build_method(cfg, 6)
    assert isinstance(method, ContextSSL)
    return method


# ---- pure pieces by hand -----------------------------------------------------------------------------


def test_pair_attention_mask_by_hand() -> None:
    # Tokens a1 b1 a2 b2: causal, and b_k does not see its own a_k.
    expected = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    assert torch.equal(pair_attention_mask(4), expected)


def test_random_pair_mask_hides_whole_pairs_and_never_the_token_itself() -> None:
    assert torch.equal(random_pair_mask(6, 0.0), torch.ones(6, 6, dtype=torch.bool))
    assert torch.equal(random_pair_mask(6, 1.0), torch.eye(6, dtype=torch.bool))
    mask = random_pair_mask(200, 0.9, generator=torch.Generator().manual_seed(0))
    off_diagonal = mask & ~torch.eye(200, dtype=torch.bool)
    pairs = off_diagonal.reshape(200, 100, 2)
    kept = mask.reshape(200, 100, 2)
    # Both keys of a pair share one draw (the diagonal may add a key back to a hidden pair).
    rows = torch.arange(200)
    own = rows // 2
    other = ~torch.nn.functional.one_hot(own, 100).bool()
    assert torch.equal(kept[..., 0][other], kept[..., 1][other])
    assert 0.05 < pairs.any(-1)[other].float().mean().item() < 0.15  # about 1 - 0.9 of the pairs visible


def test_environment_actions_zero_the_other_parameters() -> None:
    g = torch.arange(1.0, 13.0).reshape(2, 6)
    assert torch.equal(environment_actions(g, 0), torch.tensor([[1.0, 2, 3, 4, 0, 0], [7, 8, 9, 10, 0, 0]]))
    assert torch.equal(environment_actions(g, 1), torch.tensor([[0.0, 0, 0, 0, 5, 6], [0, 0, 0, 0, 11, 12]]))
    assert torch.equal(environment_actions(g, 2), g)
    assert g[0, 4] == 5  # the input is not changed


def test_auxiliary_loss_by_hand() -> None:
    regressed = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.5, 0.5]])
    quaternion = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    hues = torch.tensor([[0.5, 0.0]])
    assert auxiliary_loss(regressed, quaternion, hues, 0).item() == pytest.approx((1 + 1) / 4)
    assert auxiliary_loss(regressed, quaternion, hues, 1).item() == pytest.approx(0.25 / 2)
    assert auxiliary_loss(regressed, quaternion, hues, 2).item() == pytest.approx(0.5 + 0.125)


def test_environment_draw_is_a_function_of_seed_and_step() -> None:
    ratio = (0.5, 0.5, 0.0)
    draws = [draw_environment(3, s, ratio) for s in range(2000)]
    assert draws == [draw_environment(3, s, ratio) for s in range(2000)]
    assert draws != [draw_environment(4, s, ratio) for s in range(2000)]
    assert set(draws) == {0, 1} and 0.45 < sum(draws) / len(draws) < 0.55
    assert {draw_environment(0, s, (0.0, 0.0, 1.0)) for s in range(50)} == {2}


# ---- the loss against a plain re-computation ------------------------------------------------------------


def _plain_layer(
    layer: torch.nn.TransformerEncoderLayer, x: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """One pre-LN GPT block on (T, E) tokens, token by token and head by head."""
    t, e = x.shape
    heads = layer.self_attn.num_heads
    hd = e // heads
    w, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
    y = F.layer_norm(x, (e,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    q, k, v = (y @ w[i * e : (i + 1) * e].T + b[i * e : (i + 1) * e] for i in range(3))
    attended = torch.zeros(t, e)
    for i in range(t):
        for h in range(heads):
            cols = slice(h * hd, (h + 1) * hd)
            visible = [j for j in range(t) if allowed[i, j]]
            scores = torch.stack([torch.dot(q[i, cols], k[j, cols]) / math.sqrt(hd) for j in visible])
            weights = torch.softmax(scores, dim=0)
            attended[i, cols] = sum(wj * v[j, cols] for wj, j in zip(weights, visible, strict=True))
    x = x + layer.self_attn.out_proj(attended)
    y = F.layer_norm(x, (e,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
    return x + layer.linear2(F.gelu(layer.linear1(y)))


def _plain_outputs(method: ContextSSL, h_a: torch.Tensor, h_b: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(n, 2, D) outputs of one context of n pairs: tokens a1 b1 a2 b2 ..., the pair-causal mask."""
    tokens = []
    for i in range(len(h_a)):
        tokens.append(torch.cat([h_a[i], g[i]]))
        tokens.append(torch.cat([h_b[i], torch.zeros_like(g[i])]))
    x = method.read_in(torch.stack(tokens))
    allowed = [
        [j <= i and not (i % 2 == 1 and j == i - 1) for j in range(len(tokens))] for i in range(len(tokens))
    ]
    for layer in method.layers:
        x = _plain_layer(layer, x, torch.tensor(allowed))
    return method.read_out(method.final_norm(x)).reshape(len(h_a), 2, -1)


def _plain_loss(method: ContextSSL, batch, environment: int) -> torch.Tensor:
    # Pairs sample by sample: (view 2j, view 2j + 1) of sample i, its parameters and view 2j + 1's latents.
    m = batch.num_views // 2
    pairs = [(i, j) for i in range(batch.batch_size) for j in range(m)]
    h_a = torch.stack([method.backbone(batch.views[i, 2 * j][None])[0] for i, j in pairs])
    h_b = torch.stack([method.backbone(batch.views[i, 2 * j + 1][None])[0] for i, j in pairs])
    latents_b = torch.stack([batch.latents[i, 2 * j + 1] for i, j in pairs])
    g = torch.stack([batch.transforms[i, 2 * j] for i, j in pairs]).clone()
    if environment == 0:
        g[:, 4:] = 0
    elif environment == 1:
        g[:, :4] = 0
    n = method.pairs_per_context
    outs = [_plain_outputs(method, h_a[s : s + n], h_b[s : s + n], g[s : s + n]) for s in range(0, len(g), n)]
    out = torch.cat(outs)
    nce = plain_info_nce(out[:, 0], out[:, 1], method.opts.temperature, method.opts.min_similarity)
    quaternion = euler_xyz_to_quaternion(latents_b[:, :3].double()).float()
    hues = latents_b[:, [3, 6]]
    regressed = method.aux_predictor(F.normalize(torch.cat([out[:, 0], out[:, 1]]), dim=-1))
    aux = 0.0
    if environment in (0, 2):
        aux += plain_mse(regressed[:, :4], torch.cat([quaternion, quaternion]))
    if environment in (1, 2):
        aux += plain_mse(regressed[:, 4:], torch.cat([hues, hues]))
    return torch.tensor(nce + method.opts.weight_equiv_loss * aux)


@pytest.mark.parametrize("ratio", ["[1,0,0]", "[0,1,0]", "[0,0,1]"])
def test_loss_equals_the_plain_formula(ratio: str) -> None:
    # 5 pairs in contexts of 2 pairs: two full contexts and a shorter last one.
    method = _method(
        f"model.context_ssl.env_ratio={ratio}", "model.context_ssl.weight_equiv_loss=5.0"
    ).train()
    batch = random_batch(5, 6, seed=3, latents=True)
    out = method(batch)
    environment = [float(v) for v in ratio.strip("[]").split(",")].index(1.0)
    expected = _plain_loss(method, batch, environment)
    torch.testing.assert_close(out.loss, expected.float(), rtol=1e-4, atol=1e-5)
    assert set(out.terms) == {"loss/nce", "loss/aux"} and out.representations.shape == (5, 2, 512)


def test_several_pairs_of_one_object_per_sample() -> None:
    # 3 samples of 2 pairs each (4 views of one object) in contexts of 2 pairs: one object per context.
    method = _method("model.context_ssl.pairs_per_sample=2", "model.context_ssl.env_ratio=[0,0,1]").train()
    assert views_per_sample(method.cfg) == 4 and method.views_per_sample == 4
    batch = random_batch(3, 6, seed=4, views=4, latents=True)
    out = method(batch)
    torch.testing.assert_close(out.loss, _plain_loss(method, batch, 2).float(), rtol=1e-4, atol=1e-5)
    assert out.representations.shape == (3, 4, 512)


def test_dimensions_views_and_init() -> None:
    method = _method()
    assert views_per_sample(method.cfg) == 2 and method.pairs_per_context == 2
    assert (method.read_in.in_features, method.read_in.out_features) == (512 + 6, 16)
    assert (method.read_out.in_features, method.read_out.out_features) == (16, 512)
    assert method.layers[0].linear1.out_features == 64 and method.layers[0].self_attn.num_heads == 2
    assert method.layers[0].norm_first
    assert [m.out_features for m in method.aux_predictor if isinstance(m, torch.nn.Linear)] == [8, 8, 6]
    assert torch.count_nonzero(method.read_in.bias) == 0
    assert method.layers[0].linear2.weight.std().item() < method.layers[0].linear1.weight.std().item()
    default = resolve_config("paper", overrides=["model.method=context-ssl", "data.transform=rotcolor"])
    opts = default.model.section("context_ssl")
    assert (opts.block_size, opts.n_embd, opts.n_layer, opts.n_head, opts.temperature) == (
        128,
        2048,
        3,
        4,
        0.5,
    )


# ---- what each token sees -------------------------------------------------------------------------------


def _random_pairs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (n, 512) of view a and view b and (n, 6) rotcolor parameters of n pairs."""
    return (
        torch.randn(n, 512, generator=gen),
        torch.randn(n, 512, generator=gen),
        torch.randn(n, 6, generator=gen),
    )


def test_second_token_never_sees_its_own_first_view_and_tokens_never_see_later_pairs() -> None:
    method = _method("model.context_ssl.block_size=8").eval()
    gen = torch.Generator().manual_seed(0)
    h_a, h_b, g = _random_pairs(4, gen)
    out_a, out_b = method.contextual_outputs(h_a, h_b, g)
    changed = h_a.clone()
    changed[2] += 1.0
    new_a, new_b = method.contextual_outputs(changed, h_b, g)
    torch.testing.assert_close(new_b[2], out_b[2])  # b_3 does not see a_3
    torch.testing.assert_close(new_a[:2], out_a[:2])  # earlier pairs do not see a_3
    torch.testing.assert_close(new_b[:2], out_b[:2])
    assert not torch.allclose(new_a[3], out_a[3]) and not torch.allclose(new_b[3], out_b[3])


def test_full_random_masking_leaves_each_token_alone() -> None:
    method = _method("model.context_ssl.random_mask=true", "model.context_ssl.mask_prob=1.0").train()
    gen = torch.Generator().manual_seed(1)
    h_a, h_b, g = _random_pairs(4, gen)
    out_a, out_b = method.contextual_outputs(h_a, h_b, g)
    empty = (torch.zeros(0, 512), torch.zeros(0, 512), torch.zeros(0, 6))
    torch.testing.assert_close(out_a, method.predict_in_context(empty, h_a, g), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        out_b, method.predict_in_context(empty, h_b, torch.zeros_like(g)), rtol=1e-5, atol=1e-6
    )


def test_prediction_in_context_equals_the_next_pair_of_a_sequence() -> None:
    # The query after a context of c pairs is the first token of pair c + 1 of a training sequence.
    method = _method("model.context_ssl.block_size=8").eval()
    gen = torch.Generator().manual_seed(2)
    h_a, h_b, g = _random_pairs(4, gen)
    out_a, _ = method.contextual_outputs(h_a, h_b, g)
    queries = torch.randn(3, 512, generator=gen)
    in_context = method.predict_in_context(
        (h_a[:3], h_b[:3], g[:3]), torch.cat([h_a[3:], queries]), g[[3, 0, 1, 2]], chunk=2
    )
    torch.testing.assert_close(in_context[0], out_a[3], rtol=1e-5, atol=1e-6)
    alone = method.predict_in_context((h_a[:3], h_b[:3], g[:3]), queries[1:2], g[1:2])
    torch.testing.assert_close(in_context[2], alone[0], rtol=1e-5, atol=1e-6)  # queries do not see each other


def test_environment_follows_the_step_count() -> None:
    method = _method("train.seed=5")
    assert method.environment() == draw_environment(5, 0, (0.5, 0.5, 0.0))
    method.on_step_end(StepProgress(step=6, total_steps=10, epoch=0, epochs=1))
    assert int(method.steps_done) == 7 and "steps_done" in method.state_dict()
    assert method.environment() == draw_environment(5, 7, (0.5, 0.5, 0.0))


def test_environment_after_loading_a_state_follows_the_loaded_step_count() -> None:
    method = _method("train.seed=5")
    method.environment()  # the host copy of the step count is now set
    other = _method("train.seed=5")
    other.on_step_end(StepProgress(step=11, total_steps=20, epoch=0, epochs=1))
    method.load_state_dict(other.state_dict())
    assert method.environment() == draw_environment(5, 12, (0.5, 0.5, 0.0))


def test_both_views_go_through_the_backbone_in_one_call() -> None:
    """Training-mode BatchNorm must see all 2B images at once, as the reference's torch.cat([x, xv])."""
    method = _method().train()
    calls: list[tuple[int, ...]] = []
    backbone_forward = method.backbone.forward

    def recording_forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return backbone_forward(x)

    method.backbone.forward = recording_forward  # type: ignore[method-assign]
    batch = random_batch(4, 6, seed=2, latents=True)
    method(batch)
    assert calls == [(8, *batch.views.shape[2:])]


# ---- refusals and the preset ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.context_ssl.env_ratio=[0.5,0.4,0.0]", "env_ratio=[0.5, 0.4, 0.0]"),
        ("model.context_ssl.env_ratio=[0.5,0.5]", "env_ratio"),
        ("model.context_ssl.eval_contexts=[0,130]", "eval_contexts holds 130"),
        ("model.context_ssl.eval_contexts=[3]", "eval_contexts holds 3"),
        ("model.context_ssl.block_size=7", "block_size=7"),
        ("model.context_ssl.n_head=3", "n_head=3"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(override: str, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg = resolve_config(
            "paper", overrides=["model.method=context-ssl", "data.transform=rotcolor", override]
        )
        build_method(cfg, 6)
    message = str(err.value)
    assert named in message and "\n" not in message


def test_a_bad_setting_is_refused_when_the_config_is_resolved_naming_its_set_item() -> None:
    item = "model.context_ssl.env_ratio=[0.5,0.3,0.1]"
    with pytest.raises(
        ConfigError, match=rf"^--set {re.escape(item)}: model\.context_ssl\.env_ratio=.* sum to 0\.9"
    ):
        resolve_config("paper", overrides=["model.method=context-ssl", "data.transform=rotcolor", item])


def test_refuses_rotation_only_data() -> None:
    cfg = resolve_config("paper", overrides=["model.method=context-ssl"])
    with pytest.raises(ConfigError, match="rotcolor"):
        build_method(cfg, 4)


def test_published_preset() -> None:
    cfg = resolve_config("paper", config_file=CONFIGS / "context_ssl_3diebench.yaml")
    opts = cfg.model.section("context_ssl")
    assert (cfg.model.method, cfg.model.arch, cfg.data.transform, cfg.data.resolution) == (
        "context-ssl", "torchvision_resnet18", "rotcolor", 128,
    )  # fmt: skip
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.optim.optimizer) == (512, 1000, "adam")
    assert cfg.optim.lr == pytest.approx(5e-5 * 512 / 256) and cfg.optim.weight_decay == 1e-3
    assert (cfg.optim.schedule, cfg.optim.warmup_epochs) == ("cosine", 10.0)
    assert (opts.temperature, opts.weight_equiv_loss, opts.env_ratio) == (0.1, 5.0, (0.5, 0.5, 0.0))
    assert (opts.random_mask, opts.mask_prob, opts.block_size, opts.n_layer) == (True, 0.9, 128, 3)
