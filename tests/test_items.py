"""Checks for item representations: shapes, padding rows, all() vs forward, frozen text,
safetensors round trips, and PAD's concat fusion."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from padrec.models.items import ConcatFusion, IDEmbedding, ItemRepresentation, TextMLP, normalize_text

N, D_TEXT, D = 30, 24, 8


def text_table(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(N + 1, D_TEXT, generator=g)
    text[0] = 0
    return text


FACTORIES: dict[str, Callable[[], ItemRepresentation]] = {
    "id": lambda: IDEmbedding(N, D),
    "id-xavier": lambda: IDEmbedding(N, D, init="xavier_normal"),
    "text": lambda: TextMLP(text_table(), D, num_hidden_layers=2),
    "text-release-padding": lambda: TextMLP(text_table(), D, num_hidden_layers=1, zero_padding=False),
    "text-linear-standardized": lambda: TextMLP(
        text_table(), D, num_hidden_layers=0, final_activation=False, input_norm="standardize"
    ),
    "concat": lambda: ConcatFusion(IDEmbedding(N, D), TextMLP(text_table(), D, num_hidden_layers=1), D),
}


pytestmark = pytest.mark.usefixtures("single_thread")


def build(case: str, seed: int = 0) -> ItemRepresentation:
    torch.manual_seed(seed)
    return FACTORIES[case]()


@pytest.fixture(params=list(FACTORIES))
def case(request: pytest.FixtureRequest) -> str:
    return request.param


def ids() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    out = torch.randint(0, N + 1, (4, 6, 2), generator=g)
    out[0, :2] = 0
    return out


def test_shapes_any_id_shape(case: str) -> None:
    rep = build(case)
    assert rep(ids()).shape == (4, 6, 2, D)
    assert rep(torch.tensor([1, 2, 3])).shape == (3, D)
    assert rep(torch.tensor(5)).shape == (D,)
    assert rep.all().shape == (N + 1, D)
    assert rep.num_items == N and rep.dim == D


def test_all_matches_forward_in_eval(case: str) -> None:
    rep = build(case).eval()
    everything = torch.arange(N + 1)
    torch.testing.assert_close(rep.all(), rep(everything))
    i = ids()
    torch.testing.assert_close(rep(i), rep.all()[i])


def test_padding_row(case: str) -> None:
    rep = build(case).eval()
    with torch.no_grad():  # trained biases are non-zero; at init they are zeros
        for name, p in rep.named_parameters():
            if name.endswith("bias"):
                p.fill_(0.1)
    zero_padding = getattr(rep, "zero_padding", True)
    row0 = rep(torch.tensor([0]))
    assert torch.all(row0 == 0) == zero_padding
    assert torch.all(rep.all()[0] == 0) == zero_padding


def test_gradients_and_padding_gets_none(case: str) -> None:
    rep = build(case).train()
    rep(ids()).pow(2).sum().backward()
    grads = {n: p.grad for n, p in rep.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    for name, g in grads.items():
        if name.endswith("embedding.weight"):
            assert torch.all(g[0] == 0)


def test_safetensors_round_trip(case: str, tmp_path) -> None:
    rep = build(case, seed=0).eval()
    path = tmp_path / "items.safetensors"
    save_file({k: v.contiguous() for k, v in rep.state_dict().items()}, str(path))
    other = build(case, seed=99).eval()
    other.load_state_dict(load_file(str(path)))
    torch.testing.assert_close(other.all(), rep.all())


def test_id_embedding_init() -> None:
    torch.manual_seed(0)
    rep = IDEmbedding(2000, 64, init_std=0.05)
    assert abs(rep.all()[1:].std().item() - 0.05) < 0.005
    assert rep.embedding.padding_idx == 0
    with pytest.raises(ValueError):
        IDEmbedding(3, 4, init="uniform")  # type: ignore[arg-type]


def test_text_mlp_structure_matches_release() -> None:
    rep = TextMLP(text_table(), D, num_hidden_layers=4, dropout=0.1)
    kinds = [type(m).__name__ for m in rep.mlp]
    assert kinds == ["Linear", "GELU"] + ["Dropout", "Linear", "GELU"] * 4
    assert rep.mlp[0].in_features == D_TEXT and rep.mlp[0].out_features == D
    assert rep.mlp[2].p == 0.1


def test_text_mlp_without_final_activation_ends_in_a_linear() -> None:
    rep = TextMLP(text_table(), D, num_hidden_layers=0, final_activation=False)
    assert [type(m).__name__ for m in rep.mlp] == ["Linear"]
    rep = TextMLP(text_table(), D, num_hidden_layers=2, final_activation=False)
    assert [type(m).__name__ for m in rep.mlp] == ["Linear", "GELU"] + ["Dropout", "Linear", "GELU"] + [
        "Dropout",
        "Linear",
    ]
    out = rep.eval().all()[1:]
    assert (out < -0.2).any()  # a final GELU would keep every coordinate above -0.17


def test_normalize_text_centers_standardizes_and_drops_constant_dimensions() -> None:
    text = text_table() * 0.05 + 0.3
    text[0] = 0
    text[1:, 5] = 0.7  # constant over the catalogue, as two of MiniLM's dimensions are
    assert normalize_text(text, "none") is text
    centered = normalize_text(text, "center")
    torch.testing.assert_close(centered[1:].mean(0), torch.zeros(D_TEXT), atol=1e-6, rtol=0)
    torch.testing.assert_close(centered[1:] - text[1:], (-text[1:].mean(0)).expand(N, -1), atol=1e-6, rtol=0)
    std = normalize_text(text, "standardize")
    assert torch.equal(std[0], torch.zeros(D_TEXT))
    assert torch.equal(std[1:, 5], torch.zeros(N))
    keep = [j for j in range(D_TEXT) if j != 5]
    torch.testing.assert_close(std[1:, keep].std(0), torch.ones(len(keep)), atol=1e-5, rtol=0)
    torch.testing.assert_close(std[1:].mean(0), torch.zeros(D_TEXT), atol=1e-5, rtol=0)
    assert torch.isfinite(std).all()
    with pytest.raises(ValueError, match="input_norm"):
        normalize_text(text, "whiten")  # type: ignore[arg-type]
    rep = TextMLP(text, D, input_norm="standardize")
    torch.testing.assert_close(rep.text, std)


def test_text_is_frozen_nonpersistent_buffer() -> None:
    rep = TextMLP(text_table(), D)
    assert "text" not in rep.state_dict()
    assert all(p is not rep.text for p in rep.parameters())
    assert not rep.text.requires_grad
    rep(torch.tensor([1, 2])).sum().backward()
    assert rep.text.grad is None
    assert "text" in dict(rep.named_buffers())


def test_text_buffer_does_not_alias_and_dtype_float() -> None:
    text = text_table().double()
    rep = TextMLP(text, D)
    assert rep.text.dtype == torch.float32
    with pytest.raises(ValueError):
        TextMLP(torch.zeros(5), D)


def test_concat_fusion_formula_and_pair() -> None:
    torch.manual_seed(0)
    idr = IDEmbedding(N, D)
    txt = TextMLP(text_table(), D, num_hidden_layers=1)
    fusion = ConcatFusion(idr, txt, D, dropout=0.1).eval()
    i = torch.tensor([[3, 0, 7]])
    a, b = fusion.pair(i)
    torch.testing.assert_close(a, idr(i))
    torch.testing.assert_close(b, txt(i))
    expected = torch.nn.functional.gelu(fusion.linear(torch.cat([a, b], -1)))
    expected[0, 1] = 0
    torch.testing.assert_close(fusion(i), expected)
    torch.testing.assert_close(fusion.fuse(a, b, i), expected)
    assert fusion.linear.in_features == 2 * D


def test_concat_fusion_pair_then_fuse_shares_dropout_draws() -> None:
    torch.manual_seed(0)
    fusion = ConcatFusion(IDEmbedding(N, D), TextMLP(text_table(), D, dropout=0.5), D).train()
    i = torch.tensor([1, 2, 3])
    a, b = fusion.pair(i)
    fused = fusion.fuse(a, b, i)
    (fused.sum() + a.sum() + b.sum()).backward()
    assert fusion.second.mlp[0].weight.grad is not None


def test_concat_fusion_passthrough_init_starts_as_the_first_side() -> None:
    torch.manual_seed(0)
    idr = IDEmbedding(N, D)
    txt = TextMLP(text_table(), D)
    i = torch.tensor([[3, 0, 7], [1, 2, 5]])
    exact = ConcatFusion(idr, txt, D, activation="identity", init="passthrough").eval()
    torch.testing.assert_close(exact(i), idr(i))
    torch.testing.assert_close(exact.all(), idr.all())
    gelu = ConcatFusion(idr, txt, D, init="passthrough").eval()
    torch.testing.assert_close(gelu(i), torch.nn.functional.gelu(idr(i)))
    # the text side starts at weight 0 but still gets a gradient
    gelu.train()
    gelu(i).pow(2).sum().backward()
    assert gelu.linear.weight.grad[:, D:].abs().sum() > 0


def test_concat_fusion_rejects_bad_init() -> None:
    with pytest.raises(ValueError, match="first.dim == dim"):
        ConcatFusion(IDEmbedding(N, D), TextMLP(text_table(), D), D + 1, init="passthrough")
    with pytest.raises(ValueError, match="init must be"):
        ConcatFusion(IDEmbedding(N, D), TextMLP(text_table(), D), D, init="orthogonal")  # type: ignore[arg-type]


def test_concat_fusion_rejects_mismatched_catalogues() -> None:
    with pytest.raises(ValueError):
        ConcatFusion(IDEmbedding(N, D), IDEmbedding(N + 1, D), D)


def test_module_moves_with_buffers() -> None:
    rep = ConcatFusion(IDEmbedding(N, D), TextMLP(text_table(), D), D).to(torch.float64)
    assert rep.second.text.dtype == torch.float64
    assert rep.all().dtype == torch.float64
