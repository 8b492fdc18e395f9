"""Checks for notebook 05 · Autoencoders, VAEs, a GAN — and drawing from a caption."""

from __future__ import annotations

import numpy as np

from mmcourse.exercises import close, exercise, hint

SIGMA, SIGMA_KEPT = 0.2, 0.1  # exercise 1: which β with σ = 0.1 behaves like σ = 0.2 with β = 1?


@exercise("05.sigma_as_beta", f"Which β, with σ = {SIGMA_KEPT}, gives the same optimum as σ = {SIGMA} with β = 1?",
          right="−ELBO = ‖x − x̂‖² / (2σ²) + β·KL: multiplying σ by c is the same as multiplying β by c² (up to a constant factor on the loss).")
def sigma_as_beta(answer):
    # −ELBO(σ, β) = ‖x − x̂‖²/(2σ²) + β KL + const. For σ = 0.2, β = 1, multiply by (0.2/0.1)²:
    # ‖x − x̂‖²/(2·0.1²) + (0.2/0.1)² KL, the loss of σ = 0.1 with β = (0.2/0.1)²; same minimiser.
    expected = (SIGMA / SIGMA_KEPT) ** 2
    if not np.isscalar(answer):
        return "answer with one number: the β."
    value = float(answer)
    return (hint(not close(value, SIGMA / SIGMA_KEPT), "the reconstruction term is weighted by 1/(2σ²): the ratio of σ counts squared.")
            or hint(not close(value, 1 / expected), "the wrong way round: a larger σ weighs each squared error *less*, so the KL "
                    "counts relatively *more*: β > 1.")
            or hint(close(value, expected), "write −ELBO = ‖x − x̂‖²/(2σ²) + β·KL for σ = 0.2, β = 1, and multiply it by a number "
                    "that turns 1/(2·0.2²) into 1/(2·0.1²): the KL's factor is then the β you want."))


def _kl(mu, log_var):
    """KL(N(mu, diag exp(log_var)) ‖ N(0, I)) per row, one dimension at a time (the textbook formula
    ½(σ² + μ² − 1 − ln σ²) for each, added up)."""
    total = np.zeros(len(mu))
    for k in range(mu.shape[1]):
        variance = np.exp(log_var[:, k])
        total += 0.5 * (variance + mu[:, k] ** 2 - 1.0 - np.log(variance))
    return total


@exercise("05.kl_divergence", "Write kl_divergence(mu, log_var): the KL from N(μ, diag σ²) to N(0, I), one number per row.",
          right="KL = ½ Σ_k (μ_k² + σ_k² − 1 − log σ_k²), zero exactly when μ = 0 and σ = 1.")
def kl_divergence(answer):
    rng = np.random.default_rng(5)
    cases = [(np.zeros((2, 3)), np.zeros((2, 3)))]  # the prior itself: KL 0
    cases += [(rng.normal(size=(n, k)), rng.normal(scale=0.7, size=(n, k))) for n, k in ((3, 8), (1, 2), (4, 1), (5, 16))]
    for mu, log_var in cases:
        expected = _kl(mu, log_var)
        got = np.asarray(answer(mu.copy(), log_var.copy()), dtype=float)
        if got.shape != expected.shape:
            if got.size == 1:
                return f"for mu of shape {mu.shape} return {len(mu)} numbers, one KL per row (sum over the latent dimensions only)."
            return f"for mu of shape {mu.shape} the result should have shape {expected.shape}: sum over the latent dimensions, axis=1."
        if close(got, expected, rtol=1e-5, atol=1e-8):
            continue
        if close(got, 2 * expected, rtol=1e-5, atol=1e-8):
            return "twice the KL: the formula has a ½ in front."
        if close(got, expected / mu.shape[1], rtol=1e-5, atol=1e-8):
            return "that is the mean over the latent dimensions: the KL of independent dimensions is their sum."
        if not np.isfinite(got).all():
            return "your KL is not finite (a log of a negative number?): log_var is already log σ², and σ² = np.exp(log_var)."
        return (f"for mu {np.round(mu[0], 2).tolist()}… the KL of row 0 is {expected[0]:.4f}, yours {got[0]:.4f}. "
                "KL = ½ Σ_k (μ_k² + exp(log_var_k) − 1 − log_var_k).")
    return None


def _gaussian_log_likelihood(x, x_hat, sigma):
    """log N(x; x̂, σ² I) per image, from scipy's normal density (not the formula the exercise asks for)."""
    from scipy.stats import norm

    return norm.logpdf(x, loc=x_hat, scale=sigma).reshape(len(x), -1).sum(axis=1)


@exercise("05.log_likelihood", "Write log_likelihood(x, x_hat, sigma): log p(x | z) = log N(x; x̂, σ² I), one number per image.",
          right="Σ_i [−(x_i − x̂_i)²/(2σ²) − ½ log(2πσ²)], summed over all the pixel values of each image.")
def log_likelihood(answer):
    rng = np.random.default_rng(6)
    cases = [((2, 4, 4, 3), 0.1), ((3, 10), 0.2), ((1, 8, 8, 3), 0.05), ((4, 5), 1.0)]
    for shape, sigma in cases:
        x = rng.random(shape)
        x_hat = np.clip(x + rng.normal(scale=sigma, size=shape), 0, 1)
        expected = _gaussian_log_likelihood(x, x_hat, sigma)
        got = np.asarray(answer(x.copy(), x_hat.copy(), sigma), dtype=float)
        D = int(np.prod(shape[1:]))
        if got.shape != expected.shape:
            return f"for a batch of shape {shape} return {shape[0]} numbers, one per image: sum over every axis but the first."
        if close(got, expected, rtol=1e-6, atol=1e-6):
            continue
        squared = ((x - x_hat) ** 2).reshape(len(x), -1).sum(axis=1)
        constant = -0.5 * D * np.log(2 * np.pi * sigma**2)
        if close(got, -squared / (2 * sigma**2), rtol=1e-5) and sigma != 1.0:
            return "the normalising constant is missing: each pixel value adds −½ log(2πσ²) (it is what makes the ELBO positive here)."
        if close(got, expected / D, rtol=1e-5):
            return "that is the mean over the pixel values: a log-likelihood of independent values is their sum."
        if close(got, -squared / (2 * sigma) + constant, rtol=1e-5) or close(got, -squared / sigma**2 + constant, rtol=1e-5):
            return "the squared error is divided by 2σ² (σ squared, times two)."
        if close(got, -squared / (2 * sigma**2) - 0.5 * D * np.log(2 * np.pi * sigma), rtol=1e-5):
            return "the constant is −½ log(2πσ²) per value: σ squared inside the log."
        return (f"for a batch of shape {shape} and σ = {sigma}, image 0 should give {expected[0]:.4f}, yours {got[0]:.4f}: "
                "Σ_i [−(x_i − x̂_i)²/(2σ²) − ½ log(2πσ²)].")
    return None
