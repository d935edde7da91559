"""Independent numpy statements of OLTR's formulas, shared by the numerical tests.

No TensorFlow or Keras here: the backend tests import this module under JAX too.
"""

import numpy as np


def np_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def np_squash(v):
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (norm / (1.0 + norm)) * v / norm


def np_cosine_logits(v, w, scale):
    w_hat = w / np.linalg.norm(w, axis=-1, keepdims=True)
    return scale * np_squash(v) @ w_hat.T


def np_distances(v, c):
    return np.sqrt(((v[:, None, :] - c[None, :, :]) ** 2).sum(-1))


def np_meta_embedding(v, c, hal_w, hal_b, sel_w, sel_b, s):
    gamma = np_distances(v, c).min(axis=1)
    reach = s / gamma
    o = np_softmax(v @ hal_w + hal_b)
    v_mem = o @ c
    e = np.tanh(v @ sel_w + sel_b)
    return {
        "meta_embedding": reach[:, None] * (v + e * v_mem),
        "reachability": reach,
        "memory_feature": v_mem,
        "selector": e,
        "hallucination": o,
    }


def np_modulated_attention(f, weights):
    """Modulated attention on f [B, H, W, C]; 1x1 convs are per-position matmuls."""
    b, h, w, c = f.shape
    x = f.reshape(b, h * w, c)
    theta = x @ weights["theta_k"] + weights["theta_b"]
    phi = x @ weights["phi_k"] + weights["phi_b"]
    g = x @ weights["g_k"] + weights["g_b"]
    a = np_softmax(theta @ phi.transpose(0, 2, 1), axis=-1)  # [B, HW, HW]
    sa = (a @ g) @ weights["out_k"]  # [B, HW, C], no bias
    ma = np_softmax(f.reshape(b, -1) @ weights["fc_k"] + weights["fc_b"], axis=-1)  # [B, HW]
    return (x + ma[:, :, None] * sa).reshape(b, h, w, c)


def np_centre_update(v, labels, c):
    """delta_j / B with delta_j = sum_{y_n=j} (c_j - v_n) / (1 + n_j)."""
    k = c.shape[0]
    out = np.zeros_like(c, dtype=np.float64)
    for j in range(k):
        members = v[labels == j]
        if len(members):
            out[j] = (c[j] - members).sum(0) / (1.0 + len(members))
    return out / len(labels)


def np_reference_centroid_gradient(v, labels, c, lam, margin=10.0, repel_weight=0.01):
    """The reference's centroid gradient for CE + lam * L_LM, in float64.

    delta_j / B (centre-loss step, not scaled by lam) + lam * repel_weight * d repel/dc_j,
    with repel = max(0, margin - sum_{n valid, j != y_n} |v_n - c_j|^2 / (B K)); B counts
    every sample, open-set (-1) ones take no other part. Returns (gradient, repel mean).
    """
    v, c = v.astype(np.float64), c.astype(np.float64)
    b, k = len(labels), len(c)
    valid = labels >= 0
    sq = ((v[:, None] - c[None]) ** 2).sum(-1)
    others = valid[:, None] & (labels[:, None] != np.arange(k)[None])
    repel_mean = sq[others].sum() / (b * k)
    repel_grad = np.zeros_like(c)
    if repel_mean < margin:
        for j in range(k):
            repel_grad[j] = -2.0 * (c[j] - v[others[:, j]]).sum(0) / (b * k)
    return np_centre_update(v, labels, c) + lam * repel_weight * repel_grad, repel_mean


def np_large_margin_feature_gradient(v, labels, c, lam, margin=10.0, repel_weight=0.01):
    """d (lam * L_LM) / d v_n, the ordinary derivative (float64)."""
    v, c = v.astype(np.float64), c.astype(np.float64)
    b, k = len(labels), len(c)
    valid = labels >= 0
    own = np.zeros((b, k), bool)
    own[valid, labels[valid]] = True
    grad = np.where(valid[:, None], v - (own.astype(np.float64) @ c), 0.0) / b
    others = valid[:, None] & ~own
    sq = ((v[:, None] - c[None]) ** 2).sum(-1)
    if sq[others].sum() / (b * k) < margin:
        diff = v[:, None] - c[None]  # [B, K, D]
        grad += -repel_weight * 2.0 * (diff * others[:, :, None]).sum(1) / (b * k)
    return lam * grad


def np_batch_norm_train(x, gamma, beta, moving_mean, moving_variance, momentum, eps):
    """Training-mode batch norm over all axes but the last, and the moving-stat update.

    Returns (y, new_moving_mean, new_moving_variance, dy/dx for the loss sum(y * w)
    given as a function of w). The normalisation and the moving variance use the
    biased batch variance (Keras' rule).
    """
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)
    xhat = (x - mean) / np.sqrt(var + eps)
    y = xhat * gamma + beta
    new_mean = moving_mean * momentum + mean * (1 - momentum)
    new_var = moving_variance * momentum + var * (1 - momentum)

    def input_gradient(w):
        # d/dx of sum(w * y): the standard batch-norm backward pass.
        n = np.prod([x.shape[a] for a in axes])
        g = w * gamma
        return (g - g.sum(axis=axes) / n - xhat * (g * xhat).sum(axis=axes) / n) / np.sqrt(
            var + eps
        )

    return y, new_mean, new_var, input_gradient


def np_colour_jitter(image, factors, order):
    """torchvision's ColorJitter ops in `order` (0 brightness, 1 contrast, 2 saturation),
    each a blend with its reference, clipped: brightness with 0, contrast with the
    mean gray level, saturation with the per-pixel gray level (ITU-R 601-2 luma)."""
    x = image.astype(np.float64)
    for op in order:
        gray = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
        reference = {0: 0.0, 1: gray.mean(), 2: gray}[op]
        x = np.clip((x - reference) * factors[op] + reference, 0, 255)
    return x
