"""A cheaper random draw for Keras' Dropout layer, the same drop probability.

Keras' Dropout draws one 32-bit Philox word per unit (``stateless_dropout``). On the 2-core CPU of BENCHMARKS.md,
the four masks of the MNIST dropout network (forward and backward) took 1.3 ms of a 9 ms bf16 step of 32 images,
and ``perf`` put Philox at the top of the profile. A keep/drop decision needs far fewer bits: this draw splits each word
into 4 bytes when the rate is a multiple of 1/256 (the tutorials' 0.25 and 0.5: exact, a quarter of the draws) and
into 2 16-bit halves otherwise (the rate rounded to 1/65536; Keras' own bf16 dropout compares bfloat16 uniforms, so
its rate is rounded to 1/128). Kept units are scaled by 1/(1-rate), as Keras does.

The layer stays ``keras.layers.Dropout``: only this instance's training-time ``call`` changes, so a saved model
holds plain Dropout layers and loads anywhere without cnnlab, and inference is untouched.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from keras import layers

from cnnlab import compat


def with_cheap_mask(layer: layers.Dropout) -> layers.Dropout:
    """``layer``, drawing its training mask with 8 or 16 random bits per unit instead of 32."""
    return compat.replace_call(layer, _call_with_cheap_mask)


def mask_bits(rate: float) -> int:
    """Random bits per keep/drop decision: 8 when ``rate`` is a multiple of 1/256 (exact), else 16."""
    return 8 if float(rate * 256).is_integer() else 16


def _call_with_cheap_mask(layer: layers.Dropout, inputs: Any, training: bool = False) -> Any:
    if not training or not 0 < layer.rate < 1 or layer.noise_shape is not None:
        return layers.Dropout.call(layer, inputs, training=training)
    bits = mask_bits(layer.rate)
    per_word = 32 // bits
    count = tf.size(inputs)
    # Keras' own conversion of a SeedGenerator state into a stateless seed (backend/tensorflow/random.py).
    seed = tf.cast(tf.math.floormod(layer.seed_generator.next(), tf.int32.max - 1), tf.int32)
    words = tf.random.stateless_uniform(
        [(count + per_word - 1) // per_word], seed=seed, minval=None, maxval=None, dtype=tf.uint32
    )
    draws = tf.reshape(tf.bitcast(words, tf.uint8 if bits == 8 else tf.uint16), [-1])[:count]
    keep = tf.reshape(draws >= round(layer.rate * 2**bits), tf.shape(inputs))
    # One scaled mask: the backward pass multiplies by it once (bfloat16 arithmetic outside oneDNN is slow here).
    scaled_mask = tf.where(keep, tf.constant(1 / (1 - layer.rate), inputs.dtype), tf.constant(0, inputs.dtype))
    return inputs * scaled_mask
