"""Unit tests for pipeline.math.kl, checked against the exact KL of two tiny GPT-2
models by enumerating every response of a fixed length."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pipeline.math.kl import exact_token_kl, k3_kl, mean_and_se
from pipeline.modeling.models import response_token_logprobs, sequence_logps, small_gpt2

VOCAB = 3
LENGTH = 3
PROMPT = [0, 1]
RESPONSES = [list(r) for r in itertools.product(range(VOCAB), repeat=LENGTH)]  # 3**3 = 27
PROMPTS = [PROMPT] * len(RESPONSES)
PAD = 0


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = small_gpt2(vocab_size=VOCAB, n_layer=1, n_embd=8, n_head=2, n_positions=8)
    # GPT-2's init (std 0.02) gives almost uniform next-token distributions and a KL
    # near zero; larger weights make the two models clearly different.
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" not in name and "ln_f" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.7)
    return model.double().eval()


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    return _model(0), _model(1)


@pytest.fixture(scope="module")
def logps(models):
    policy, reference = models
    with torch.no_grad():
        lp = sequence_logps(policy, PROMPTS, RESPONSES, PAD).double()
        lq = sequence_logps(reference, PROMPTS, RESPONSES, PAD).double()
    return lp, lq


def _exact_kl(lp: torch.Tensor, lq: torch.Tensor) -> float:
    # KL(p || q) = sum_y p(y) (log p(y) - log q(y))
    return float((lp.exp() * (lp - lq)).sum())


def test_enumeration_covers_all_responses(logps):
    lp, lq = logps
    assert len(RESPONSES) == 27
    # Fixed-length responses: the 27 sequences carry all of the probability mass.
    assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(lq.exp().sum()) == pytest.approx(1.0, abs=1e-5)


def test_models_differ(logps):
    lp, lq = logps
    # Guard against a vacuous test: the KL must be well away from zero.
    assert _exact_kl(lp, lq) > 0.05


def test_k3_is_unbiased(logps):
    lp, lq = logps
    k3 = k3_kl(lp, lq)
    assert k3.shape == (27,)
    expectation = float((lp.exp() * k3).sum())
    assert expectation == pytest.approx(_exact_kl(lp, lq), abs=1e-5)


def test_k3_is_non_negative(logps):
    lp, lq = logps
    assert (k3_kl(lp, lq) >= 0).all()
    assert (k3_kl(lq, lp) >= 0).all()
    # Also on arbitrary log-ratios, including large ones.
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1000, generator=g, dtype=torch.float64) * 10
    b = torch.randn(1000, generator=g, dtype=torch.float64) * 10
    assert (k3_kl(a, b) >= 0).all()


def test_k3_hand_value():
    # rho = log q - log p = -1 - (-2) = 1 -> exp(1) - 1 - 1 = 0.718281828...
    out = k3_kl(
        torch.tensor([-2.0], dtype=torch.float64), torch.tensor([-1.0], dtype=torch.float64)
    )
    assert out.item() == pytest.approx(0.718281828459045, abs=1e-12)


def test_exact_token_kl_expectation_equals_sequence_kl(models, logps):
    policy, reference = models
    lp, lq = logps
    with torch.no_grad():
        p_tok, p_targets, p_mask = response_token_logprobs(policy, PROMPTS, RESPONSES, PAD)
        q_tok, q_targets, q_mask = response_token_logprobs(reference, PROMPTS, RESPONSES, PAD)
    assert torch.equal(p_targets, q_targets)
    assert torch.equal(p_mask, q_mask)
    # prompt (2) + response (3) = 5 tokens -> 4 next-token positions, the last 3 are response
    assert p_tok.shape == (27, 4, VOCAB)
    assert p_mask.sum(-1).tolist() == [3.0] * 27
    per_sample = exact_token_kl(p_tok.double(), q_tok.double(), p_mask.double())
    assert per_sample.shape == (27,)
    assert (per_sample >= -1e-7).all()
    expectation = float((lp.exp() * per_sample).sum())
    assert expectation == pytest.approx(_exact_kl(lp, lq), abs=1e-5)


def test_exact_token_kl_ignores_masked_positions():
    g = torch.Generator().manual_seed(3)
    p = torch.log_softmax(torch.randn(2, 4, 5, generator=g), -1)
    q = torch.log_softmax(torch.randn(2, 4, 5, generator=g), -1)
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    per_position = (p.exp() * (p - q)).sum(-1)
    out = exact_token_kl(p, q, mask)
    torch.testing.assert_close(out[0], per_position[0, 1] + per_position[0, 2])
    torch.testing.assert_close(out[1], per_position[1].sum())


def test_identical_models_give_zero(models):
    policy, _ = models
    with torch.no_grad():
        lp = sequence_logps(policy, PROMPTS, RESPONSES, PAD).double()
        tok, _, mask = response_token_logprobs(policy, PROMPTS, RESPONSES, PAD)
    assert torch.equal(k3_kl(lp, lp), torch.zeros(27, dtype=torch.float64))
    assert torch.equal(exact_token_kl(tok, tok, mask), torch.zeros(27))


def test_mean_and_se_matches_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 3.0, size=37)
    mean, se = mean_and_se(torch.tensor(values, dtype=torch.float32))
    assert mean == pytest.approx(float(np.mean(values)), rel=1e-6)
    assert se == pytest.approx(float(np.std(values, ddof=1) / np.sqrt(len(values))), rel=1e-6)
    assert isinstance(mean, float) and isinstance(se, float)


def test_mean_and_se_hand_values():
    # values 1, 2, 3: mean 2, sample std 1, se 1/sqrt(3) = 0.5773502692
    mean, se = mean_and_se(torch.tensor([1.0, 2.0, 3.0]))
    assert mean == 2.0
    assert se == pytest.approx(0.5773502691896258, abs=1e-12)


def test_mean_and_se_single_value():
    assert mean_and_se(torch.tensor([4.5])) == (4.5, 0.0)


# ---- mixed lengths: right padding (scoring) and left padding (sampling) ---------------

EOS = 0  # also the pad id, as in the pipeline's own tokenizers
MIXED_PROMPTS = [[1], [2, 1, 2]]  # different lengths, in one batch


def _terminal_responses(max_len: int = 3) -> list[list[int]]:
    """Every response a sampler with ``max_new_tokens=max_len`` can return: it stops
    at the first EOS or after ``max_len`` tokens. Their probabilities sum to 1."""
    out = []
    for n in range(1, max_len + 1):
        for body in itertools.product((1, 2), repeat=n - 1):
            out.append([*body, EOS])
    out += [list(body) for body in itertools.product((1, 2), repeat=max_len)]
    return out


def test_kl_to_reference_on_mixed_length_batches_matches_enumeration(models):
    from pipeline.stages.evaluate import kl_to_reference

    policy, reference = models
    responses = _terminal_responses()
    assert len(responses) == 15 and len({len(r) for r in responses}) == 3
    # All (prompt, response) pairs, shuffled so that every batch mixes lengths.
    items = [(p, r) for p in MIXED_PROMPTS for r in responses]
    order = np.random.default_rng(0).permutation(len(items))
    prompts = [items[i][0] for i in order]
    resps = [items[i][1] for i in order]
    kls = kl_to_reference(policy, reference, prompts, resps, EOS, batch_size=7)
    k3, exact, with_prompt = kls["kl"], kls["kl_exact"], kls["kl_with_prompt"]
    for prompt in MIXED_PROMPTS:
        with torch.no_grad():
            lp = sequence_logps(policy, [prompt] * 15, responses, EOS).double()
            lq = sequence_logps(reference, [prompt] * 15, responses, EOS).double()
            for resp, a, b in zip(responses, lp, lq, strict=True):  # one at a time, no padding
                alone = sequence_logps(policy, [prompt], [resp], EOS).double()[0]
                assert float(a) == pytest.approx(float(alone), abs=1e-6)
                assert float(b) == pytest.approx(
                    float(sequence_logps(reference, [prompt], [resp], EOS)[0]), abs=1e-6
                )
        assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-6)  # float32 logits
        truth = _exact_kl(lp, lq)
        mine = [i for i, j in enumerate(order) if items[j][0] == prompt]
        by_response = {tuple(resps[i]): i for i in mine}
        weights = np.array([float(lp[n].exp()) for n in range(15)])
        k3_values = np.array([k3[by_response[tuple(r)]] for r in responses])
        exact_values = np.array([exact[by_response[tuple(r)]] for r in responses])
        # Both estimators are unbiased: their expectation under the policy is the KL.
        assert float(weights @ k3_values) == pytest.approx(truth, abs=1e-6)
        assert float(weights @ exact_values) == pytest.approx(truth, abs=1e-6)
        assert truth > 0.05
        # The authors' sum over prompt tokens too: with c = log q(x) - log p(x) (the
        # prompt's tokens after the first, which nothing predicts), its expectation is
        # KL + exp(c) - 1 - c, computed here from the prompt alone.
        with torch.no_grad():
            c = (
                float(
                    sequence_logps(reference, [prompt[:1]], [prompt[1:]], EOS).double()[0]
                    - sequence_logps(policy, [prompt[:1]], [prompt[1:]], EOS).double()[0]
                )
                if len(prompt) > 1
                else 0.0
            )
        with_prompt_values = np.array([with_prompt[by_response[tuple(r)]] for r in responses])
        bias = float(weights @ with_prompt_values) - truth
        assert bias == pytest.approx(np.expm1(c) - c, rel=1e-5, abs=1e-5)  # float32 logits
        assert (with_prompt_values >= 0).all()
        if len(prompt) > 1:
            assert abs(c) > 0.3 and bias > 0.03  # the models differ on this prompt: a real bias
        else:
            assert bias == pytest.approx(0.0, abs=1e-6)  # nothing to predict in a 1-token prompt


def test_left_padded_sampling_batch_equals_one_prompt_at_a_time(models):
    from pipeline.modeling.models import sample

    policy, _ = models
    prompts = [[1], [2, 1, 2], [1, 2], [2]]
    together = sample(policy, prompts, 1, 4, EOS, EOS, temperature=0.0, batch_size=4)
    alone = [sample(policy, [p], 1, 4, EOS, EOS, temperature=0.0)[0] for p in prompts]
    assert together == alone
    assert len({len(r[0]) for r in together}) > 1 or any(EOS in r[0] for r in together)
