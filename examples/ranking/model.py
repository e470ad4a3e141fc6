"""A small ranking-style Estimator model: the shape of production models.

Not public API. It has what makes checkpoint migration hard in real ranking
and recommendation models: partitioned embedding tables (user and item ids),
a DNN with batch normalization (moving statistics are non-trainable
variables updated through UPDATE_OPS), and Adam, whose slots (`m`, `v` per
variable, partitioned like their variables) and `beta1_power`/`beta2_power`
are saved in every checkpoint.
"""

import dataclasses
from typing import Mapping, Optional

import tensorflow as tf

tf1 = tf.compat.v1

USER_ID = "user_id"
ITEM_ID = "item_id"
LABEL = "label"


@dataclasses.dataclass(frozen=True)
class RankingParams:
  """Hyper-parameters of the ranking model.

  Attributes:
    num_users: User ids are in `[0, num_users)`.
    num_items: Item ids are in `[0, num_items)`.
    embedding_dim: Width of each embedding table.
    num_partitions: Partitions of each embedding table.
    hidden_units: Width of the hidden layer.
    learning_rate: Adam's learning rate.
  """

  num_users: int = 200
  num_items: int = 300
  embedding_dim: int = 8
  num_partitions: int = 4
  hidden_units: int = 16
  learning_rate: float = 0.01

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if getattr(self, field.name) <= 0:
        raise ValueError(
          f"RankingParams.{field.name} must be positive, got "
          f"{getattr(self, field.name)!r}."
        )

  def as_dict(self) -> Mapping[str, float]:
    return dataclasses.asdict(self)


def _embed(name: str, ids: tf.Tensor, vocab_size: int, params: RankingParams):
  table = tf1.get_variable(
    name,
    shape=[vocab_size, params.embedding_dim],
    dtype=tf.float32,
    initializer=tf1.truncated_normal_initializer(stddev=0.1),
    partitioner=tf1.fixed_size_partitioner(params.num_partitions),
  )
  # "div" keeps id i at row i of the logical table whatever the partition
  # count, so the model can be resumed or warm-started with another count
  # (the default "mod" strategy maps ids to rows by the count).
  return tf1.nn.embedding_lookup(table, ids, partition_strategy="div")


def model_fn(features, labels, mode, params):
  """An Estimator model_fn: click probability of (user, item) pairs.

  Args:
    features: Dict with int64 `user_id` and `item_id` tensors of shape [batch].
    labels: Float tensor of shape [batch] with 0/1 clicks (None in PREDICT).
    mode: A `tf.estimator.ModeKeys`.
    params: A dict of `RankingParams` fields (Estimator passes dicts).

  Returns:
    A `tf.estimator.EstimatorSpec` with a TF1 (name-based) Saver scaffold:
    wrap this model_fn with `estimator_ckpt.tf2_checkpoints` for TF2.
  """
  hparams = RankingParams(**params)
  training = mode == tf.estimator.ModeKeys.TRAIN
  user = _embed("user_embedding", features[USER_ID], hparams.num_users, hparams)
  item = _embed("item_embedding", features[ITEM_ID], hparams.num_items, hparams)
  net = tf.concat([user, item, user * item], axis=1)
  net = tf1.layers.dense(
    net, hparams.hidden_units, activation=tf.nn.relu, name="hidden"
  )
  net = tf1.layers.batch_normalization(
    net, training=training, name="batch_norm"
  )
  logits = tf.squeeze(tf1.layers.dense(net, 1, name="logits"), axis=1)
  probabilities = tf.sigmoid(logits)

  if mode == tf.estimator.ModeKeys.PREDICT:
    predictions = {"probability": probabilities, "logit": logits}
    return tf.estimator.EstimatorSpec(
      mode,
      predictions=predictions,
      export_outputs={
        "serving_default": tf.estimator.export.PredictOutput(predictions)
      },
    )

  labels = tf.cast(labels, tf.float32)
  loss = tf1.losses.sigmoid_cross_entropy(labels, logits)
  eval_metric_ops = {
    "auc": tf1.metrics.auc(labels, probabilities),
    "accuracy": tf1.metrics.accuracy(
      labels, tf.cast(probabilities > 0.5, tf.float32)
    ),
  }
  train_op = None
  if training:
    optimizer = tf1.train.AdamOptimizer(hparams.learning_rate)
    # Batch norm updates its moving statistics through UPDATE_OPS.
    with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
      train_op = optimizer.minimize(
        loss, global_step=tf1.train.get_or_create_global_step()
      )
  return tf.estimator.EstimatorSpec(
    mode, loss=loss, train_op=train_op, eval_metric_ops=eval_metric_ops
  )


def build_training_graph(params: RankingParams) -> tf.estimator.EstimatorSpec:
  """The model's training graph in the default graph, on one example.

  For code that needs the model's variables (and optimizer slots) without an
  Estimator: restoring, warm-starting, inspecting.
  """
  features = {
    USER_ID: tf.constant([0], tf.int64),
    ITEM_ID: tf.constant([0], tf.int64),
  }
  return model_fn(
    features, tf.constant([1.0]), tf.estimator.ModeKeys.TRAIN, params.as_dict()
  )


def serving_input_receiver_fn() -> tf.estimator.export.ServingInputReceiver:
  """Serving inputs: int64 `user_id` and `item_id` of shape [batch]."""
  receivers = {
    USER_ID: tf1.placeholder(tf.int64, [None], name=USER_ID),
    ITEM_ID: tf1.placeholder(tf.int64, [None], name=ITEM_ID),
  }
  return tf.estimator.export.ServingInputReceiver(receivers, receivers)


def estimator(
  model_dir: str,
  params: Optional[RankingParams] = None,
  config: Optional[tf.estimator.RunConfig] = None,
  warm_start_from=None,
) -> tf.estimator.Estimator:
  """The ranking model as a TF1-checkpoint Estimator."""
  return tf.estimator.Estimator(
    model_fn,
    model_dir=model_dir,
    config=config,
    params=(params or RankingParams()).as_dict(),
    warm_start_from=warm_start_from,
  )
