"""Demonstrations: the format, its loader, tabular counts and the soft-optimal generator."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlax_inf
from rlax_inf.envs import demonstrations as demos_lib
from rlax_inf.envs import tabular

# Static: num_episodes, horizon, causal.
generate = jax.jit(demos_lib.soft_optimal_demonstrations, static_argnums=(2, 3, 6))


def small_mdp(seed=0, num_states=4, num_actions=3):
  rng = np.random.default_rng(seed)
  transitions = rng.dirichlet(np.full(num_states, 0.5), size=(num_states, num_actions))
  transitions[0, 0] = np.eye(num_states)[1]  # a zero-probability entry
  return tabular.make_mdp(rng.normal(size=(num_states, num_actions)), transitions,
                          rng.dirichlet(np.ones(num_states)), 0.9)


@pytest.mark.parametrize("causal", [True, False])
def test_generated_counts_converge_to_the_expected_counts(causal):
  # causal: the soft-optimal policy under the true dynamics; maximum entropy:
  # samples of the trajectory posterior p(τ | O), whose marginals are the
  # forward-backward ones. Stochastic dynamics, where the two differ.
  mdp = small_mdp()
  horizon, tau, episodes = 4, 0.7, 20_000
  log_prior = jnp.log(jnp.array([[0.5, 0.3, 0.2]] * 4))
  demos = generate(jax.random.PRNGKey(0), mdp, episodes, horizon, tau, log_prior, causal)
  counts = demos_lib.tabular_counts(demos, 4, 3, horizon)
  want = rlax_inf.state_action_marginals(mdp.rewards, mdp.transitions, mdp.initial, horizon, tau,
                                         log_prior, optimistic=not causal)
  other = rlax_inf.state_action_marginals(mdp.rewards, mdp.transitions, mdp.initial, horizon, tau,
                                          log_prior, optimistic=causal)
  std = np.sqrt(np.asarray(want) * (1 - np.asarray(want)) / episodes)
  np.testing.assert_array_less(np.abs(counts - want), 5 * std + 1e-6)
  assert np.abs(counts - other).max() > 10 * std.max()  # the other likelihood is told apart
  np.testing.assert_allclose(counts.sum((1, 2)), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(demos.episode_starts.reshape(episodes, horizon)[:, 0], True)
  np.testing.assert_array_equal(demos.episode_starts.reshape(episodes, horizon)[:, 1:], False)
  np.testing.assert_allclose(demos.rewards, mdp.rewards[demos.observations, demos.actions])
  s, a = (np.asarray(x).reshape(episodes, horizon) for x in (demos.observations, demos.actions))
  # Every step is possible under the dynamics (never the zero-probability entry).
  assert np.all(np.asarray(mdp.transitions)[s[:, :-1], a[:, :-1], s[:, 1:]] > 0)


def test_zero_temperature_demonstrations_are_greedy():
  mdp = tabular.chain(num_states=4)
  demos = generate(jax.random.PRNGKey(1), mdp, 3, 5, 0.0, None, True)
  # From the left end, always right: the reward is at the right end.
  np.testing.assert_array_equal(np.asarray(demos.actions).reshape(3, 5), 1)
  np.testing.assert_array_equal(np.asarray(demos.observations).reshape(3, 5)[0], [0, 1, 2, 3, 3])


def test_save_load_round_trip(tmp_path):
  demos = generate(jax.random.PRNGKey(2), small_mdp(), 5, 3, 1.0, None, True)
  path = str(tmp_path / "demos.npz")
  demos_lib.save_demonstrations(path, demos)
  loaded = demos_lib.load_demonstrations(path)
  for field in ("observations", "actions", "episode_starts", "rewards"):
    np.testing.assert_array_equal(getattr(loaded, field), getattr(demos, field))
  np.testing.assert_array_equal(demos_lib.episode_lengths(loaded), [3] * 5)
  assert loaded.num_steps == 15


def test_loads_d4rl_style_boundaries(tmp_path):
  obs = np.arange(7)[:, None] * np.ones((1, 2), np.float32)
  actions = np.zeros((7, 1), np.float32)
  terminals = np.array([0, 0, 1, 0, 0, 0, 0], bool)
  timeouts = np.array([0, 0, 0, 0, 1, 0, 0], bool)
  np.savez(tmp_path / "d4rl.npz", observations=obs, actions=actions, rewards=np.ones(7),
           terminals=terminals, timeouts=timeouts)
  demos = demos_lib.load_demonstrations(str(tmp_path / "d4rl.npz"))
  np.testing.assert_array_equal(demos.episode_starts, [1, 0, 0, 1, 0, 1, 0])
  np.testing.assert_array_equal(demos_lib.episode_lengths(demos), [3, 2, 2])
  np.savez(tmp_path / "dones.npz", observations=obs, actions=actions, dones=terminals)
  np.testing.assert_array_equal(
      demos_lib.load_demonstrations(str(tmp_path / "dones.npz")).episode_starts,
      [1, 0, 0, 1, 0, 0, 0])


def test_loader_and_builder_name_the_bad_field(tmp_path):
  np.savez(tmp_path / "no_actions.npz", observations=np.zeros(3))
  with pytest.raises(ValueError, match="'actions'"):
    demos_lib.load_demonstrations(str(tmp_path / "no_actions.npz"))
  np.savez(tmp_path / "no_bounds.npz", observations=np.zeros(3), actions=np.zeros(3, int))
  with pytest.raises(ValueError, match="episode boundaries"):
    demos_lib.load_demonstrations(str(tmp_path / "no_bounds.npz"))
  np.savez(tmp_path / "short.npz", observations=np.zeros(3), actions=np.zeros(3, int),
           dones=np.zeros(2, bool))
  with pytest.raises(ValueError, match="dones"):
    demos_lib.load_demonstrations(str(tmp_path / "short.npz"))
  with pytest.raises(FileNotFoundError):
    demos_lib.load_demonstrations(str(tmp_path / "missing.npz"))
  with pytest.raises(ValueError, match="observations"):
    demos_lib.make_demonstrations(np.zeros(2), np.zeros(3, int), np.array([1, 0, 0], bool))
  with pytest.raises(ValueError, match=r"episode_starts\[0\]"):
    demos_lib.make_demonstrations(np.zeros(3), np.zeros(3, int), np.array([0, 1, 0], bool))
  with pytest.raises(ValueError, match="episode_starts must be bool"):
    demos_lib.make_demonstrations(np.zeros(3), np.zeros(3, int), np.array([1, 0, 0]))


def test_tabular_counts():
  # Two episodes: one-hot and index observations give the same counts; a
  # longer episode contributes its first `horizon` steps; a shorter one raises.
  s = np.array([[0, 1, 2], [2, 2, 1]])
  a = np.array([[1, 0, 1], [0, 0, 1]])
  demos = demos_lib.from_episodes(s, a)
  counts = demos_lib.tabular_counts(demos, 3, 2, 3)
  want = np.zeros((3, 3, 2))
  for e in range(2):
    for t in range(3):
      want[t, s[e, t], a[e, t]] += 0.5
  np.testing.assert_allclose(counts, want)
  one_hot = demos_lib.from_episodes(np.eye(3, dtype=np.float32)[s], a)
  np.testing.assert_allclose(demos_lib.tabular_counts(one_hot, 3, 2, 3), want)
  np.testing.assert_allclose(demos_lib.tabular_counts(demos, 3, 2, 2), want[:2])
  with pytest.raises(ValueError, match="horizon=4"):
    demos_lib.tabular_counts(demos, 3, 2, 4)
  with pytest.raises(ValueError, match="observations"):
    demos_lib.tabular_counts(demos, 2, 2, 3)
  with pytest.raises(ValueError, match="actions"):
    demos_lib.tabular_counts(demos_lib.from_episodes(s, a + 1), 3, 2, 3)
  with pytest.raises(ValueError, match="tabular observations"):
    demos_lib.tabular_counts(demos_lib.from_episodes(s.astype(np.float32), a), 3, 2, 3)
