"""The closed forms of the phase-change "toy model of the toy model", each against a Monte-Carlo
estimate of the same model's loss computed with the package's own forward pass and loss."""

import pytest
import torch

from superposition.analysis.theory import (
    DEDICATED,
    NOT_REPRESENTED,
    PHASES,
    SUPERPOSITION,
    antipodal_bias,
    antipodal_error,
    feature_moments,
    pair_error,
    phase_candidate,
    phase_diagram,
    unequal_pair,
)
from superposition.models import forward, instance_loss


def monte_carlo(params, p: float, importance, batches: int = 16, batch: int = 25_000, seed: int = 0):
    """(mean, standard error) of the ReLU output model's loss on x_i = 0 w.p. 1 − p, else U[0, 1]."""
    g = torch.Generator().manual_seed(seed)
    n = params["W"].shape[1]
    imp = torch.tensor([importance], dtype=torch.float32)
    losses = []
    for _ in range(batches):
        on = torch.rand(1, batch, n, generator=g) < p
        x = torch.where(on, torch.rand(1, batch, n, generator=g), 0.0)
        losses.append(float(instance_loss(forward("relu_output", params, x).output, x, imp)))
    t = torch.tensor(losses, dtype=torch.float64)
    return float(t.mean()), float(t.std() / batches**0.5)


def assert_matches(exact: float, params, p: float, importance) -> None:
    mean, err = monte_carlo(params, p, importance)
    # 4 standard errors, plus float32 rounding of the forward pass.
    assert abs(mean - exact) <= 4 * err + 1e-6 * max(exact, 1e-3), (exact, mean, err)


@pytest.mark.parametrize("p", [1.0, 0.3, 0.05])
@pytest.mark.parametrize("b", [-0.6, -0.1, 0.0, 0.15, 0.8])
def test_antipodal_error_matches_monte_carlo(p, b):
    params = {"W": torch.tensor([[[1.0], [-1.0]]]), "b": torch.tensor([[b, b]])}
    # Importance (1, 1): the loss is the mean over the two (mirror-image) features, each f(b).
    assert_matches(float(antipodal_error(p, b)), params, p, [1.0, 1.0])


def test_antipodal_error_branches_join_smoothly():
    p = torch.tensor([1.0, 0.5, 0.01], dtype=torch.float64)
    eps = 1e-6
    at_zero = antipodal_error(p, 0.0)
    torch.testing.assert_close(at_zero, p**2 / 6)
    left = (at_zero - antipodal_error(p, -eps)) / eps
    right = (antipodal_error(p, eps) - at_zero) / eps
    torch.testing.assert_close(left, -(p**2) / 3, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(right, -(p**2) / 3, atol=1e-5, rtol=1e-4)


def test_antipodal_error_endpoints():
    # b = 1: the output is x1 − x2 + 1 everywhere, so f = E[(1 − x2)²] = 1 − p + p/3 = 1 − 2p/3.
    p = torch.tensor([1.0, 0.4, 0.02], dtype=torch.float64)
    torch.testing.assert_close(antipodal_error(p, 1.0), 1 - 2 * p / 3)
    # b = −1: the output is always 0, so f = E[x1²] = p/3.
    torch.testing.assert_close(antipodal_error(p, -1.0), p / 3)
    with pytest.raises(ValueError, match="bias"):
        antipodal_error(0.5, 1.5)


@pytest.mark.parametrize("p", [1.0, 0.5, 0.1, 0.01])
def test_antipodal_bias_is_the_minimum(p):
    b = antipodal_bias(p)
    grid = torch.linspace(-1, 1, 20_001, dtype=torch.float64)
    best = antipodal_error(p, grid).min()
    assert float(antipodal_error(p, b)) <= float(best) + 1e-15
    assert 0 < float(b) < 1


def test_antipodal_bias_limits():
    p = torch.tensor([1e-3, 1e-2], dtype=torch.float64)
    torch.testing.assert_close(antipodal_bias(p), p**2 / 6, rtol=0.02, atol=0)  # sparse: b* ≈ p²/6
    assert float(antipodal_bias(1.0)) == pytest.approx(0.4421, abs=1e-3)
    assert antipodal_bias(torch.ones(2, 3)).shape == (2, 3)


CASES = [(p, r) for p in (0.8, 0.2, 0.04) for r in (0.3, 3.0)]


@pytest.mark.parametrize("n_hidden", [1, 2])
@pytest.mark.parametrize(("p", "r"), CASES)
def test_every_candidate_loss_matches_monte_carlo(n_hidden, p, r):
    diagram = phase_diagram(n_hidden, [r], [p])
    importance = [1.0] * n_hidden + [r]
    for phase in (NOT_REPRESENTED, SUPERPOSITION):
        assert_matches(float(diagram.losses[phase, 0, 0]), phase_candidate(n_hidden, phase, p), p, importance)
    # Dedicated: the extra feature takes feature 1's dimension (loss var/n) or, with m >= 2, features
    # 1 and 2 pair up antipodally to free one (loss 2f*/n); the phase's loss is the better of the two.
    n = n_hidden + 1
    _, var = feature_moments(p)
    dropped = float(var) / n
    assert_matches(dropped, phase_candidate(n_hidden, DEDICATED, p), p, importance)
    expected = dropped
    if n_hidden >= 2:
        paired = 2 * float(antipodal_error(p, antipodal_bias(p))) / n
        assert_matches(paired, phase_candidate(n_hidden, DEDICATED, p, pair_freed=True), p, importance)
        expected = min(dropped, paired)
    assert float(diagram.losses[DEDICATED, 0, 0]) == pytest.approx(expected, rel=1e-12)


def test_candidate_losses_in_closed_form():
    p, r = torch.tensor([0.5]), torch.tensor([2.0])
    _, var = feature_moments(p)
    f = antipodal_error(p, antipodal_bias(p))
    two = phase_diagram(1, r, p).losses[:, 0, 0]
    torch.testing.assert_close(two, torch.stack([2 * var, var, 3 * f]).squeeze(-1) / 2)
    three = phase_diagram(2, r, p).losses[:, 0, 0]
    torch.testing.assert_close(three, torch.stack([2 * var, torch.minimum(var, 2 * f), 3 * f]).squeeze(-1) / 3)


def test_phase_map_shape_and_regions():
    r = torch.logspace(-1, 1, 9)
    p = torch.logspace(0, -2, 9)
    for m in (1, 2):
        d = phase_diagram(m, r, p)
        assert d.losses.shape == (3, 9, 9) and d.phase.shape == (9, 9) and d.bias.shape == (9,)
        dense, sparse = d.phase[:, 0], d.phase[:, -1]
        assert not (dense == SUPERPOSITION).any()  # sparsity is necessary for superposition
        assert (dense[r < 1] == NOT_REPRESENTED).all() and (dense[r > 1] == DEDICATED).all()
        assert (sparse[r < 1] == SUPERPOSITION).all()
    # n = 2: sparse enough, even a 10x more important extra feature shares the dimension.
    assert (phase_diagram(1, r, p).phase[:, -1] == SUPERPOSITION).all()
    # n = 3: an important extra feature takes a dimension and the other two pair up instead.
    assert (phase_diagram(2, r, p).phase[r > 1, -1] == DEDICATED).all()


def test_two_feature_map_is_symmetric_under_r_to_one_over_r():
    """r·L(1/r) swaps 'not represented' and 'dedicated' and keeps 'superposition'."""
    r = torch.logspace(-1, 1, 10, dtype=torch.float64)  # r = 1 itself is a tie, left out
    p = torch.logspace(0, -2, 13, dtype=torch.float64)
    a, b = phase_diagram(1, r, p).phase, phase_diagram(1, r.flip(0), p).phase
    swap = torch.tensor([DEDICATED, NOT_REPRESENTED, SUPERPOSITION])
    torch.testing.assert_close(swap[b], a)


def test_superposition_boundary_at_equal_importance():
    """r = 1: superposition wins once f* < var/2; with b = 0 that is p < 4/7; the bias moves it a little."""
    p = torch.linspace(0.3, 1.0, 701, dtype=torch.float64)
    phase = phase_diagram(1, [1.0], p).phase[0]
    boundary = float(p[phase == SUPERPOSITION].max())
    assert 4 / 7 - 0.01 < boundary < 4 / 7 + 0.06


def test_candidate_weights_and_errors():
    params = phase_candidate(2, SUPERPOSITION, 0.1)
    assert params["W"].shape == (1, 3, 2) and params["b"].shape == (1, 3)
    torch.testing.assert_close(params["W"][0, 2], -params["W"][0, 0])
    assert len(PHASES) == 3
    with pytest.raises(ValueError, match="phase"):
        phase_candidate(1, 5, 0.1)
    with pytest.raises(ValueError, match="pair_freed"):
        phase_candidate(1, DEDICATED, 0.1, pair_freed=True)
    with pytest.raises(ValueError, match="n_hidden"):
        phase_diagram(0, [1.0], [0.5])


def test_the_left_out_triangle_never_wins():
    """m = 2: three unit features at 120° with their best common bias lose to the best candidate."""
    from superposition.analysis.phase import expected_loss

    r, p = torch.logspace(-1, 1, 4), torch.logspace(0, -2, 4)
    best = phase_diagram(2, r, p).losses.min(0).values
    angles = torch.tensor([0.0, 2 * torch.pi / 3, 4 * torch.pi / 3])
    biases = torch.linspace(-0.2, 0.2, 21)
    params = {"W": torch.stack([angles.cos(), angles.sin()], -1).expand(len(biases), 3, 2).contiguous(),
              "b": biases[:, None].expand(-1, 3).contiguous()}
    for i, rr in enumerate(r.tolist()):
        for j, pp in enumerate(p.tolist()):
            prob = torch.full((len(biases), 3), pp)
            imp = torch.tensor([1.0, 1.0, rr]).expand(len(biases), 3)
            triangle = expected_loss("relu_output", params, prob, imp, samples=1024).min()
            assert triangle > best[i, j], (rr, pp)


# --- antipodal pairs of unequal norms -------------------------------------------------------


def pair_params(norms, biases) -> dict[str, torch.Tensor]:
    """The two-feature model W = [a, −c] (one dimension) with biases (b₁, b₂), instances first."""
    norms, biases = torch.as_tensor(norms, dtype=torch.float32), torch.as_tensor(biases, dtype=torch.float32)
    W = torch.stack([norms[..., 0], -norms[..., 1]], -1).unsqueeze(-1)
    return {"W": W.reshape(-1, 2, 1), "b": biases.reshape(-1, 2)}


def test_pair_error_reduces_to_the_equal_norm_pair():
    p = torch.tensor([1.0, 0.3, 0.02], dtype=torch.float64)
    b = antipodal_bias(p)
    for r in (1.0, 0.25, 4.0):
        got = pair_error(r, p, torch.ones(3, 2, dtype=torch.float64), torch.stack([b, b], -1))
        torch.testing.assert_close(got, (1 + r) * antipodal_error(p, b), rtol=1e-6, atol=0)


@pytest.mark.parametrize(("p", "r"), [(0.27, 0.1), (0.05, 3.0), (0.6, 1.5)])
def test_pair_error_matches_the_package_loss(p, r):
    """Unequal norms and biases, evaluated independently by the package's forward pass and loss."""
    from superposition.analysis.phase import expected_loss

    norms = torch.tensor([[1.1, 0.7], [0.8, 1.2]], dtype=torch.float64)
    biases = torch.tensor([[0.05, -0.1], [0.2, 0.0]], dtype=torch.float64)
    exact = pair_error(r, p, norms, biases) / 2  # the package averages over the 2 features
    prob, imp = torch.full((2, 2), p), torch.tensor([[1.0, r]] * 2)
    got = expected_loss("relu_output", pair_params(norms, biases), prob, imp, nodes=256)
    torch.testing.assert_close(got, exact, rtol=2e-4, atol=1e-9)


def brute_force_pair(r: float, p: float, rounds: int = 4, draws: int = 3000) -> float:
    """The lowest loss of W = [a, −c], b = (b₁, b₂) found by shrinking random searches, each model
    scored by the package's own forward pass (`expected_loss` on a midpoint grid)."""
    from superposition.analysis.phase import expected_loss

    g = torch.Generator().manual_seed(0)
    centre = torch.tensor([1.0, 1.0, 0.0, 0.0])
    width = torch.tensor([0.5, 0.5, 0.3, 0.3])
    prob, imp = torch.full((draws, 2), p), torch.tensor([[1.0, r]]).expand(draws, 2)
    best = float("inf")
    for _ in range(rounds):
        x = centre + width * (2 * torch.rand(draws, 4, generator=g) - 1)
        x[0] = centre
        loss = expected_loss("relu_output", pair_params(x[:, :2], x[:, 2:]), prob, imp, nodes=96)
        k = int(loss.argmin())
        best, centre, width = min(best, float(loss[k]) * 2), x[k], width / 3
    return best


@pytest.mark.slow
@pytest.mark.parametrize(("p", "r"), [(0.14, 0.1), (0.27, 0.2)])
def test_unequal_pair_is_the_brute_force_optimum(p, r):
    """Where unequal norms pay and superposition is the best phase (r far from 1 at moderate
    sparsity), the optimised family matches a brute-force search of the whole pair space, and both
    beat the paper's equal-norm pair by more than 2%."""
    found = unequal_pair([r], [p])
    brute = brute_force_pair(r, p)
    equal = (1 + r) * float(antipodal_error(p, antipodal_bias(p)))
    assert float(found.error) == pytest.approx(brute, rel=3e-3)
    assert float(found.error) < 0.98 * equal and brute < 0.98 * equal
    _, var = feature_moments(p)
    assert float(found.error) < r * float(var)  # below dropping the extra feature: superposition wins
    a, c = found.norms[0, 0].tolist()
    assert a > c > 0.5  # the more important feature gets the longer vector; both are represented


def test_unequal_pairs_lower_the_superposition_loss_and_the_freed_pair_only():
    r, p = torch.logspace(-1, 1, 5), torch.logspace(0, -2, 5)
    for m in (1, 2):
        paper, ours = phase_diagram(m, r, p), phase_diagram(m, r, p, unequal_pairs=True)
        torch.testing.assert_close(ours.losses[NOT_REPRESENTED], paper.losses[NOT_REPRESENTED])
        assert (ours.losses[SUPERPOSITION] <= paper.losses[SUPERPOSITION] * (1 + 1e-12)).all()
        assert (ours.losses[SUPERPOSITION] < paper.losses[SUPERPOSITION] * 0.995).any()
        assert (ours.losses[DEDICATED] <= paper.losses[DEDICATED] * (1 + 1e-12)).all()
        if m == 1:  # no freed pair
            torch.testing.assert_close(ours.losses[DEDICATED], paper.losses[DEDICATED])
    # m = 2 at 1 − S = 0.62 (the trained freed pair has norms 0.85, biases 0.24): the freed pair with
    # free norms beats both the paper's unit-norm pair (2f*) and dropping a feature (var), by > 5%.
    dense = torch.tensor([0.616], dtype=torch.float64)
    paper, ours = phase_diagram(2, [1.0], dense), phase_diagram(2, [1.0], dense, unequal_pairs=True)
    assert float(ours.losses[DEDICATED]) < 0.95 * float(paper.losses[DEDICATED])
    pair = unequal_pair([1.0], dense)
    assert pair.norms[0, 0].tolist() == pytest.approx([0.85, 0.85], abs=0.02)
    found = unequal_pair(r, p)
    # r = 1 (the middle row): the best pair is symmetric. Dense, it is the tie of the linear regime:
    # W = ±1/√2, b = 1/2 reproduces x₁ + x₂'s mean, error 1/12 = var, like dropping a feature.
    torch.testing.assert_close(found.norms[2, :, 0], found.norms[2, :, 1], rtol=1e-6, atol=1e-6)
    assert float(found.error[2, 0]) == pytest.approx(1 / 12, rel=1e-3)
    assert found.norms[2, 0].tolist() == pytest.approx([2**-0.5] * 2, rel=1e-3)
    flipped = unequal_pair(1 / r, p)  # r·e(1/r) is e(r) with the pair's roles swapped
    torch.testing.assert_close(found.error, r[:, None].double() * flipped.error, rtol=1e-5, atol=1e-12)
