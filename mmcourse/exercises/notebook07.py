"""Checks for notebook 07 · Alignment and retrieval."""

from __future__ import annotations

import numpy as np

from mmcourse.exercises import close, exercise, not_one_number

TEMPERATURES = (0.07, 0.5, 1.0)


def _log_softmax(a):
    a = a - a.max(axis=-1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=-1, keepdims=True))


def _unit(rng, n, d):
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _similarity_cases():
    """Cosine matrices (images × captions) of a few batches, captions near their images."""
    rng = np.random.default_rng(7)
    cases = []
    for batch in (2, 5, 8):
        x = _unit(rng, batch, 6)
        y = x + 0.7 * rng.normal(size=x.shape)
        cases.append(x @ (y / np.linalg.norm(y, axis=1, keepdims=True)).T)
    return cases


def _soft_loss(S, P, tau):
    """½ [ −mean_i Σ_j q_ij log softmax_j(z_i·) − mean_j Σ_i q'_ji log softmax_i(z_·j) ], z = S/τ."""
    z = np.asarray(S, float) / tau
    P = np.asarray(P, float)
    rows = P / P.sum(axis=1, keepdims=True)
    cols = P.T / P.T.sum(axis=1, keepdims=True)
    return 0.5 * (-(rows * _log_softmax(z)).sum(1).mean() - (cols * _log_softmax(z.T)).sum(1).mean())


def _one_direction(S, tau):
    return -np.mean(np.diag(_log_softmax(np.asarray(S) / tau)))


@exercise("07.contrastive_loss", "Write contrastive_loss(S, tau): the symmetric InfoNCE loss of a batch from its (images × captions) "
          "cosine matrix S and temperature τ.",
          right="it equals the symmetric InfoNCE loss on every batch and temperature tried.")
def contrastive_loss(answer):
    for S in _similarity_cases():
        for tau in TEMPERATURES:
            expected = _soft_loss(S, np.eye(len(S)), tau)
            got = answer(S.copy(), tau)
            if problem := not_one_number(got, "the loss of the batch"):
                return problem
            if close(got, expected, rtol=1e-6):
                continue
            where = f"for a batch of {len(S)} at τ = {tau}: got {float(got):.5f}, expected {expected:.5f}"
            if close(got, _one_direction(S, tau), rtol=1e-6) or close(got, _one_direction(S.T, tau), rtol=1e-6):
                return f"{where}. That is one direction only: average the image → caption term (rows) and the caption → image term (columns)."
            if close(got, _soft_loss(S, np.eye(len(S)), 1.0), rtol=1e-6) or close(got, _soft_loss(S * tau, np.eye(len(S)), 1.0), rtol=1e-6):
                return f"{where}. The logits are z = S / τ: divide the cosines by the temperature."
            if close(got, 2 * expected, rtol=1e-6):
                return f"{where}. The loss is the mean of the two directions, ½ (L_rows + L_columns), not their sum."
            return f"{where}. z = S / τ; each row's loss is −log softmax(z_i·)[i], each column's −log softmax(z_·j)[j]; average each over the batch, then the two."
    return None


def _positive_cases():
    """Similarity matrices with a truth matrix P (P[i, j]: caption j true of image i), some
    captions true of several images, the diagonal always true."""
    rng = np.random.default_rng(11)
    cases = []
    for S in _similarity_cases()[1:]:
        batch = len(S)
        P = np.eye(batch, dtype=bool)
        P[0, 1] = P[2, 1] = P[3, 0] = True  # caption 1 true of images 0 and 2; caption 0 of image 3
        P |= rng.random((batch, batch)) < 0.15
        cases.append((S, P))
    return cases


@exercise("07.contrastive_loss_positives", "Write contrastive_loss_positives(S, P, tau): section 2's loss, each row's and each column's "
          "target spread evenly over its positives.",
          right="it equals section 2's loss on every batch tried, with its targets spread over rows and columns separately.")
def contrastive_loss_positives(answer):
    for S, P in _positive_cases():
        for tau in TEMPERATURES:
            expected = _soft_loss(S, P, tau)
            got = answer(S.copy(), P.copy(), tau)
            if problem := not_one_number(got, "the loss of the batch"):
                return problem
            if close(got, expected, rtol=1e-6):
                continue
            where = f"for a batch of {len(S)} at τ = {tau}: got {float(got):.5f}, expected {expected:.5f}"
            if close(got, _soft_loss(S, np.eye(len(S)), tau), rtol=1e-6):
                return f"{where}. That is CLIP's loss (only the diagonal positive): use P for the targets."
            z = S / tau
            unnormalised = 0.5 * (-(P * _log_softmax(z)).sum(1).mean() - (P.T * _log_softmax(z.T)).sum(1).mean())
            if close(got, unnormalised, rtol=1e-6):
                return f"{where}. Divide each row of P by its number of positives, so that each target q_i· sums to 1."
            rows = P / P.sum(axis=1, keepdims=True)
            same_q = 0.5 * (-(rows * _log_softmax(z)).sum(1).mean() - (rows.T * _log_softmax(z.T)).sum(1).mean())
            if close(got, same_q, rtol=1e-6):
                return (f"{where}. The caption → image term needs its own targets: spread each COLUMN of P over its positives "
                        "(q' = Pᵀ / its row sums), not the transposed row targets.")
            return f"{where}. q = P / (row sums of P), q' = Pᵀ / (row sums of Pᵀ); L = ½ [−mean_i Σ_j q_ij log softmax(z_i·)_j − mean_j Σ_i q'_ji log softmax(z_·j)_i]."
    return None


@exercise("07.recall_at_k", "Write my_recall_at_k(S, relevant, k): the share of queries (rows) with a relevant item among their k "
          "most similar.",
          right="it agrees with mmcourse.metrics.recall_at_k on every case tried.")
def recall_at_k(answer):
    from mmcourse.metrics import recall_at_k as package

    rng = np.random.default_rng(3)
    for queries, items in ((6, 10), (30, 40), (50, 12)):
        S = rng.normal(size=(queries, items))  # no ties
        for share in (0.05, 0.3):
            relevant = rng.random((queries, items)) < share
            relevant[np.arange(queries), rng.integers(items, size=queries)] = True  # every query has a right answer
            for k in (1, 3, 5):
                expected = package(S, relevant, (k,))[k]
                got = answer(S.copy(), relevant.copy(), k)
                if problem := not_one_number(got, "the share of queries"):
                    return problem
                if close(got, expected, atol=1e-9):
                    continue
                where = f"on {queries} queries × {items} items, k = {k}: got {float(got):.3f}, expected {expected:.3f}"
                if close(got, package(-S, relevant, (k,))[k], atol=1e-9):
                    return f"{where}. Rank the most similar first: sort by −S (np.argsort(-S, axis=1))."
                if relevant.any(axis=0).all() and close(got, package(S.T, relevant.T, (k,))[k], atol=1e-9):
                    return f"{where}. The queries are the rows of S and the items its columns."
                top = np.argsort(-S, axis=1)[:, :k]
                if close(got, np.take_along_axis(relevant, top, 1).mean(), atol=1e-9):
                    return f"{where}. That is the share of relevant items in the top k (precision); Recall@K asks whether ANY of the top k is relevant."
                return f"{where}. For each row, take the k columns with the largest S and ask whether any is relevant; average over rows."
    return None
