"""Edge losses. Edge pixels are ~1-2% of the image, so plain BCE is minimised by predicting "no edge".

`balanced_bce_dice` (the default): HED-style class-balanced cross-entropy (each pixel weighted by the
frequency of the other class in its image and channel) plus soft Dice per channel. The balanced term
keeps a gradient on the rare edge pixels from the first step; Dice rewards thin, complete ridges and
counters the thick, low-precision edges the balanced term alone produces.
"""

from __future__ import annotations

import tensorflow as tf

EPS = 1e-6


def _per_channel_sum(x: tf.Tensor) -> tf.Tensor:
    """(N, H, W, C) -> (N, C) sums over the image."""
    return tf.reduce_sum(x, axis=[1, 2])


def plain_bce(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Unweighted binary cross-entropy: the naive setup, kept to reproduce its failure."""
    y_pred = tf.clip_by_value(y_pred, EPS, 1 - EPS)
    bce = -(y_true * tf.math.log(y_pred) + (1 - y_true) * tf.math.log(1 - y_pred))
    return tf.reduce_mean(bce)


def balanced_bce(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """HED class-balanced BCE: positives weighted by the negative fraction and vice versa, per image and channel."""
    y_pred = tf.clip_by_value(y_pred, EPS, 1 - EPS)
    n_pixels = tf.cast(tf.shape(y_true)[1] * tf.shape(y_true)[2], y_true.dtype)
    pos_fraction = _per_channel_sum(y_true) / n_pixels  # (N, C)
    beta = (1 - pos_fraction)[:, None, None, :]
    loss = -(beta * y_true * tf.math.log(y_pred) + (1 - beta) * (1 - y_true) * tf.math.log(1 - y_pred))
    # Normalise so the loss scale does not depend on the edge fraction (keeps one learning rate for all sets).
    return tf.reduce_mean(tf.reduce_sum(loss, axis=[1, 2]) / (2 * n_pixels * pos_fraction * (1 - pos_fraction) + 1))


def dice(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """1 - soft Dice, averaged over images and channels; an empty channel (blink) scores by its false positives."""
    inter = _per_channel_sum(y_true * y_pred)
    denom = _per_channel_sum(y_true * y_true) + _per_channel_sum(y_pred * y_pred)
    return tf.reduce_mean(1 - (2 * inter + 1) / (denom + 1))


def balanced_bce_dice(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """The project's loss: balanced BCE + Dice (see the module docstring for why both)."""
    return balanced_bce(y_true, y_pred) + dice(y_true, y_pred)


LOSSES = {"balanced": balanced_bce_dice, "bce": plain_bce, "hed": balanced_bce, "dice": dice}
