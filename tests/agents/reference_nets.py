"""Hand-written forward passes of the agents' networks, the oracle of the agent tests."""


def mlp(params, x):
  """A flax `networks.MLP` written out: Dense layers, ReLU between them, linear output.

  NumPy arrays in give NumPy out; jax arrays in give jax out (`x * (x > 0)` is ReLU
  in both).
  """
  layers = params["params"]
  n = len(layers)
  for i in range(n):
    x = x @ layers[f"Dense_{i}"]["kernel"] + layers[f"Dense_{i}"]["bias"]
    if i < n - 1:
      x = x * (x > 0)
  return x
