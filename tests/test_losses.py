"""Tests of the OLTR losses against the large-margin loss and centroid step written out in numpy."""

import numpy as np
import pytest
import tensorflow as tf

from keras_oltr.losses import cross_entropy, large_margin_loss, log_class_prior

RTOL = 1e-5


# ----------------------------------------------------------------------------- numpy formulas


def np_large_margin(v, y, c, margin=10.0, repel_weight=0.01):
    """Returns (loss, attract, repel, active) of the large-margin loss, in float64."""
    v, c = v.astype(np.float64), c.astype(np.float64)
    b, k = len(y), len(c)
    sq = ((v[:, None, :] - c[None, :, :]) ** 2).sum(-1)  # [B, K]
    own = np.zeros_like(sq, dtype=bool)
    own[np.arange(b), y] = True
    attract = sq[own].sum() / (2 * b)
    repel_mean = sq[~own].sum() / (b * k)
    repel = max(0.0, margin - repel_mean)
    return attract + repel_weight * repel, attract, repel, repel_mean < margin


def np_large_margin_grads(v, y, c, margin=10.0, repel_weight=0.01):
    """Gradients of the large-margin loss, the centroid attract part replaced by delta_j / B."""
    v, c = v.astype(np.float64), c.astype(np.float64)
    b, k = len(y), len(c)
    _, _, _, active = np_large_margin(v, y, c, margin, repel_weight)
    d_v = (v - c[y]) / b  # attract, ordinary derivative
    d_c = np.zeros_like(c)
    for j in range(k):
        members = v[y == j]
        d_c[j] = (c[j] - members).sum(0) / (1.0 + len(members)) / b  # delta_j / B
    if active:
        for n in range(b):
            for j in range(k):
                if j != y[n]:
                    # d/dv of -(||v_n - c_j||^2) / (BK), and the opposite for c_j.
                    d_v[n] += repel_weight * -2.0 * (v[n] - c[j]) / (b * k)
                    d_c[j] += repel_weight * -2.0 * (c[j] - v[n]) / (b * k)
    return d_v, d_c


def np_cross_entropy(labels, logits, log_prior=None, tau=1.0):
    z = logits.astype(np.float64)
    if log_prior is not None:
        z = z + tau * log_prior
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def _data(seed, b=6, k=4, d=5, scale=0.3):
    rng = np.random.default_rng(seed)
    v = rng.normal(scale=scale, size=(b, d)).astype("float32")
    c = rng.normal(scale=scale, size=(k, d)).astype("float32")
    y = rng.integers(0, k, size=b)
    return v, y, c


def _loss_and_grads(v, y, c, **kwargs):
    v_t, c_t = tf.constant(v), tf.Variable(c)
    with tf.GradientTape() as tape:
        tape.watch(v_t)
        loss, parts = large_margin_loss(v_t, y, c_t, **kwargs)
    d_v, d_c = tape.gradient(loss, [v_t, c_t])
    return float(loss), parts, d_v.numpy(), d_c.numpy()


# ----------------------------------------------------------------------------- large margin


@pytest.mark.parametrize(
    "margin, scale, active",
    [(10.0, 0.3, True), (0.1, 1.0, False)],
    ids=["hinge-active", "hinge-inactive"],
)
def test_large_margin_value(margin, scale, active):
    v, y, c = _data(0, scale=scale)
    expected, attract, repel, is_active = np_large_margin(v, y, c, margin=margin)
    assert is_active == active  # the case really exercises what its name says
    loss, parts, _, _ = _loss_and_grads(v, y, c, margin=margin)
    np.testing.assert_allclose(loss, expected, rtol=RTOL)
    np.testing.assert_allclose(float(parts["attract"]), attract, rtol=RTOL)
    np.testing.assert_allclose(float(parts["repel"]), repel, rtol=RTOL, atol=1e-6)
    if not active:
        assert float(parts["repel"]) == 0.0
    else:
        assert repel > 1.0  # the repel term contributes to the value


def test_large_margin_repel_weight_and_margin_are_used():
    v, y, c = _data(1)
    for margin, weight in [(10.0, 0.01), (5.0, 0.5), (10.0, 0.0)]:
        expected = np_large_margin(v, y, c, margin=margin, repel_weight=weight)[0]
        loss = _loss_and_grads(v, y, c, margin=margin, repel_weight=weight)[0]
        np.testing.assert_allclose(loss, expected, rtol=RTOL)


@pytest.mark.parametrize("margin, scale", [(10.0, 0.3), (0.1, 1.0)], ids=["active", "inactive"])
def test_large_margin_gradients(margin, scale):
    v, y, c = _data(2, scale=scale)
    _, _, d_v, d_c = _loss_and_grads(v, y, c, margin=margin)
    exp_v, exp_c = np_large_margin_grads(v, y, c, margin=margin)
    np.testing.assert_allclose(d_v, exp_v, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(d_c, exp_c, rtol=1e-4, atol=1e-7)


def test_large_margin_feature_gradient_matches_finite_differences():
    """The features get the plain derivative of the loss (checked on the numpy loss)."""
    v, y, c = _data(3)
    _, _, d_v, _ = _loss_and_grads(v, y, c)
    v64, eps = v.astype(np.float64), 1e-6
    numeric = np.zeros_like(v64)
    for idx in np.ndindex(v64.shape):
        plus, minus = v64.copy(), v64.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (np_large_margin(plus, y, c)[0] - np_large_margin(minus, y, c)[0]) / (
            2 * eps
        )
    np.testing.assert_allclose(d_v, numeric, rtol=1e-4, atol=1e-7)


def test_large_margin_centroid_gradient_is_not_the_plain_derivative():
    """With 3 samples in one class the centre-loss step differs from the plain gradient."""
    rng = np.random.default_rng(4)
    v = rng.normal(scale=0.3, size=(4, 3)).astype("float32")
    c = rng.normal(scale=0.3, size=(2, 3)).astype("float32")
    y = np.array([0, 0, 0, 1])
    _, _, _, d_c = _loss_and_grads(v, y, c, repel_weight=0.0)
    # Plain derivative of attract: sum_{y_n=0} (c_0 - v_n) / B; centre step divides by 1+n_0.
    plain = (c[0] - v[:3]).sum(0) / 4
    np.testing.assert_allclose(d_c[0], plain / 4.0, rtol=1e-4)
    np.testing.assert_allclose(d_c[1], (c[1] - v[3]) / 2.0 / 4, rtol=1e-4)


def test_large_margin_absent_class_and_feature_on_centroid():
    v, _, c = _data(5, k=4)
    y = np.array([0, 0, 1, 1, 1, 0])  # classes 2 and 3 absent
    v[0] = c[0]  # distance exactly zero
    loss, parts, d_v, d_c = _loss_and_grads(v, y, c)
    assert np.isfinite(loss) and np.isfinite(d_v).all() and np.isfinite(d_c).all()
    exp_v, exp_c = np_large_margin_grads(v, y, c)
    np.testing.assert_allclose(d_c, exp_c, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(d_v, exp_v, rtol=1e-4, atol=1e-7)
    # Absent classes get only the repel part: no attract/centre contribution.
    _, _, _, d_c_no_repel = _loss_and_grads(v, y, c, repel_weight=0.0)
    np.testing.assert_array_equal(d_c_no_repel[2:], 0.0)


def test_large_margin_global_counts_override():
    """Caller-provided (already all-reduced) counts set n_j in the centre step."""
    v, y, c = _data(6, k=3)
    counts = np.bincount(y, minlength=3).astype("float32")
    doubled = 2 * counts
    v_t, c_t = tf.constant(v), tf.Variable(c)
    with tf.GradientTape() as tape:
        loss, _ = large_margin_loss(v_t, y, c_t, repel_weight=0.0, global_counts=doubled)
    d_c = tape.gradient(loss, c_t).numpy()
    expected = np.stack([(c[j] - v[y == j]).sum(0) / (1 + doubled[j]) / len(y) for j in range(3)])
    np.testing.assert_allclose(d_c, expected, rtol=1e-4, atol=1e-7)


# ----------------------------------------------------------------------------- class prior CE


def test_log_class_prior():
    counts = [100, 10, 0, 1]
    expected = np.log(np.array([100, 10, 1 / (111 + 4) * 111, 1]) / 111)
    np.testing.assert_allclose(log_class_prior(counts), expected, rtol=RTOL)
    assert log_class_prior(counts).dtype == np.float32


@pytest.mark.parametrize("counts", [[], [[1, 2]], [3, -1], [0, 0]])
def test_log_class_prior_rejects_bad_counts(counts):
    with pytest.raises(ValueError, match="class_counts"):
        log_class_prior(counts)


@pytest.mark.parametrize("tau", [0.0, 1.0, 2.0])
def test_cross_entropy_matches_numpy(tau):
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=3.0, size=(8, 4)).astype("float32")
    labels = rng.integers(0, 4, size=8)
    log_prior = log_class_prior([500, 50, 5, 1])
    got = np.asarray(cross_entropy(labels, logits, log_prior, tau=tau))
    np.testing.assert_allclose(
        got, np_cross_entropy(labels, logits, log_prior, tau), rtol=RTOL, atol=1e-6
    )
    plain = np_cross_entropy(labels, logits)
    if tau == 0.0:
        np.testing.assert_allclose(got, plain, rtol=RTOL)
    else:
        # The prior shift raises the loss of tail labels relative to plain CE.
        assert not np.allclose(got, plain, rtol=1e-3)


def test_cross_entropy_without_prior_and_label_shapes():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], "float32")
    expected = np_cross_entropy(np.array([0, 2]), logits)
    np.testing.assert_allclose(cross_entropy(np.array([0, 2]), logits), expected, rtol=RTOL)
    np.testing.assert_allclose(cross_entropy(np.array([[0], [2]]), logits), expected, rtol=RTOL)
    np.testing.assert_allclose(expected[1], np.log(3.0), rtol=RTOL)


def test_large_margin_ignores_open_set_labels():
    """A -1 label (open-set image) adds nothing to attract or repel; B still counts it."""
    rng = np.random.default_rng(7)
    v = rng.normal(size=(5, 3)).astype(np.float32)
    c = rng.normal(size=(4, 3)).astype(np.float32)
    y = np.array([0, 2, -1, 1, 3])
    keep = y >= 0
    b, k = len(y), c.shape[0]
    diff = v[keep] - c[y[keep]]
    attract = np.sum(diff**2) / (2 * b)
    d2 = np.sum((v[keep, None, :] - c[None]) ** 2, axis=-1)
    others = d2.sum() - np.sum(diff**2)
    repel = max(0.0, 10.0 - others / (b * k))
    loss, _ = large_margin_loss(tf.constant(v), tf.constant(y), tf.constant(c))
    np.testing.assert_allclose(float(loss), attract + 0.01 * repel, rtol=1e-5)
