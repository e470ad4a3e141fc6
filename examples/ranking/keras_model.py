"""The ranking model as Keras: the twin of `model.model_fn`, for leaving it.

Not public API. Same math as the Estimator's model_fn, layer for layer, with
the Keras layers named as the TF1 layers were, so every weight's name
`<layer>/<weight>` is its TF1 variable name, except the embedding tables:
a Keras `Embedding`'s table is `<layer>/embeddings`, a TF1 table just its
name, which `RENAME` maps (the same spec `warm_start_settings` takes).

`estimator_ckpt.load_weights(build(), model_dir, rename=RENAME,
optimizer=optimizer(params))` loads a model dir of `model.model_fn` into it,
Adam state included; `optimizer` sets Adam as TF1's `AdamOptimizer` was
(epsilon 1e-8), so Keras continues the Estimator's training step for step.
"""

from typing import Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from examples.ranking import data as ranking_data
from examples.ranking import model as ranking_model

USER_ID = ranking_model.USER_ID
ITEM_ID = ranking_model.ITEM_ID

# Keras name -> TF1 name, for `load_weights(..., rename=RENAME)`.
RENAME: Mapping[str, str] = {
  "user_embedding/embeddings": "user_embedding",
  "item_embedding/embeddings": "item_embedding",
}


def build(
  params: Optional[ranking_model.RankingParams] = None,
) -> tf.keras.Model:
  """The Keras twin of `model.model_fn`: logits of (user, item) pairs.

  Args:
    params: The Estimator's `RankingParams` (default: its defaults).

  Returns:
    A built functional model taking `{"user_id": [batch], "item_id":
    [batch]}` int64 ids and returning logits of shape [batch]; the click
    probability is their sigmoid, as in the model_fn.
  """
  params = params or ranking_model.RankingParams()
  user_id = tf.keras.Input([], dtype=tf.int64, name=USER_ID)
  item_id = tf.keras.Input([], dtype=tf.int64, name=ITEM_ID)
  # `Embedding` gathers row i of the whole table: what the model_fn's
  # partitioned lookup with partition_strategy="div" does.
  user = tf.keras.layers.Embedding(
    params.num_users, params.embedding_dim, name="user_embedding"
  )(user_id)
  item = tf.keras.layers.Embedding(
    params.num_items, params.embedding_dim, name="item_embedding"
  )(item_id)
  product = tf.keras.layers.Multiply(name="user_item")([user, item])
  net = tf.keras.layers.Concatenate(axis=1, name="concat")(
    [user, item, product]
  )
  net = tf.keras.layers.Dense(
    params.hidden_units, activation="relu", name="hidden"
  )(net)
  # tf1.layers.batch_normalization's defaults: momentum 0.99, epsilon 1e-3.
  net = tf.keras.layers.BatchNormalization(name="batch_norm")(net)
  logits = tf.keras.layers.Dense(1, name="logits")(net)
  logits = tf.keras.layers.Reshape((), name="logit")(logits)
  return tf.keras.Model(
    inputs={USER_ID: user_id, ITEM_ID: item_id},
    outputs=logits,
    name="ranking",
  )


def optimizer(
  params: Optional[ranking_model.RankingParams] = None,
) -> tf.keras.optimizers.Optimizer:
  """Adam as the model_fn's `tf1.train.AdamOptimizer(learning_rate)`.

  TF1's epsilon is 1e-8 (Keras defaults to 1e-7); beta_1 and beta_2 are the
  same defaults.
  """
  params = params or ranking_model.RankingParams()
  return tf.keras.optimizers.Adam(params.learning_rate, epsilon=1e-8)


def loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """The model_fn's loss: mean sigmoid cross-entropy."""
  return tf.reduce_mean(
    tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.cast(labels, logits.dtype), logits=logits
    )
  )


def compile_model(
  model: tf.keras.Model, keras_optimizer: tf.keras.optimizers.Optimizer
) -> None:
  """Compiles for `fit` with the model_fn's loss."""
  model.compile(
    optimizer=keras_optimizer,
    loss=loss,
    metrics=[
      tf.keras.metrics.AUC(from_logits=True, name="auc"),
      tf.keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy"),
    ],
  )


def features(examples: ranking_data.Examples) -> Dict[str, np.ndarray]:
  """The Keras model's inputs for examples."""
  return {USER_ID: examples.user_id, ITEM_ID: examples.item_id}
