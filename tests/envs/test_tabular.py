"""Tabular suite: exact known answers, MDP validity, sampling matches P."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from rlax_inf import envs
from rlax_inf.envs import tabular


def _np_policy_evaluation(mdp, policy):
  r = np.asarray(mdp.rewards, np.float64)
  p = np.asarray(mdp.transitions, np.float64)
  r_pi = np.sum(policy * r, axis=1)
  p_pi = np.einsum('sa,sat->st', policy, p)
  return np.linalg.solve(np.eye(len(r_pi)) - mdp.discount * p_pi, r_pi)


def _np_value_iteration(mdp, iterations=2000):
  r = np.asarray(mdp.rewards, np.float64)
  p = np.asarray(mdp.transitions, np.float64)
  v = np.zeros(r.shape[0])
  for _ in range(iterations):
    v = np.max(r + mdp.discount * p @ v, axis=1)
  return v


def _messages():
  """rlax_inf's exact solvers, when that module exports them."""
  import rlax_inf  # pylint: disable=g-import-not-at-top
  if not all(hasattr(rlax_inf, n) for n in ('policy_evaluation',
                                            'value_iteration')):
    pytest.skip('rlax_inf.messages not exported yet')
  return rlax_inf


def _RESET(env):  # pylint: disable=invalid-name
  return jax.jit(jax.vmap(env.reset))


def _all_mdps():
  return {
      'gridworld': tabular.gridworld(),
      'four_rooms': tabular.four_rooms(),
      'chain': tabular.chain(7, slip=0.1, small_reward=0.05),
      'garnet': tabular.garnet(jax.random.PRNGKey(3), 15, 3, 4),
  }


@pytest.mark.parametrize('name', ['gridworld', 'four_rooms', 'chain', 'garnet'])
def test_mdp_is_valid(name):
  mdp = _all_mdps()[name]
  s, a = mdp.rewards.shape
  assert mdp.transitions.shape == (s, a, s)
  np.testing.assert_allclose(np.sum(mdp.transitions, -1), 1.0, atol=1e-5)
  assert np.all(np.asarray(mdp.transitions) >= 0)
  np.testing.assert_allclose(np.sum(mdp.initial), 1.0, atol=1e-5)
  assert 0.0 <= mdp.discount < 1.0
  term = np.asarray(mdp.terminal)
  if term.any():  # terminal states are absorbing with zero reward
    p = np.asarray(mdp.transitions)[term]
    idx = np.flatnonzero(term)
    np.testing.assert_allclose(p[:, :, idx].sum(-1), 1.0)
    np.testing.assert_allclose(np.asarray(mdp.rewards)[term], 0.0)
    assert np.all(np.asarray(mdp.initial)[term] == 0)


def test_gridworld_known_values():
  """Sutton & Barto Example 3.5 / 3.8: v*(A) = 24.4, v_random(A) = 8.8."""
  mdp = tabular.gridworld()
  a_idx = tabular.GRIDWORLD_A
  random_policy = np.full((25, 4), 0.25)
  v_rand = _np_policy_evaluation(mdp, random_policy)
  v_star = _np_value_iteration(mdp)
  assert round(v_rand[a_idx], 1) == 8.8
  assert round(v_rand[tabular.GRIDWORLD_B], 1) == 5.3
  assert round(v_star[a_idx], 1) == 24.4
  assert round(v_star[tabular.GRIDWORLD_B], 1) == 19.4
  # Bottom-left corner (4, 0) in S&B's tables.
  assert round(v_rand[20], 1) == -1.9
  assert round(v_star[20], 1) == 14.4


def test_gridworld_against_rlax_inf_messages():
  m = _messages()
  mdp = tabular.gridworld()
  policy = jnp.full((25, 4), 0.25)
  v_rand = m.policy_evaluation(mdp.rewards, mdp.transitions, policy,
                               mdp.discount)
  _, v_star = m.value_iteration(mdp.rewards, mdp.transitions, mdp.discount)
  np.testing.assert_allclose(v_rand[tabular.GRIDWORLD_A], 8.8, atol=0.05)
  np.testing.assert_allclose(v_star[tabular.GRIDWORLD_A], 24.4, atol=0.05)


def test_chain_closed_form():
  n, gamma = 6, 0.9
  mdp = tabular.chain(n, discount=gamma, small_reward=0.1)
  v_star = _np_value_iteration(mdp)
  expected = gamma**(n - 1 - np.arange(n)) / (1 - gamma)
  np.testing.assert_allclose(v_star, expected, rtol=1e-6)


def test_four_rooms_layout_and_values():
  mdp = tabular.four_rooms()
  assert mdp.num_states == 104 and mdp.num_actions == 4
  v_star = _np_value_iteration(mdp)
  goal = int(np.flatnonzero(np.asarray(mdp.terminal))[0])
  assert v_star[goal] == 0.0
  # Values fall with distance: every non-goal value is in (0, 1).
  others = np.delete(v_star, goal)
  assert np.all(others > 0) and np.all(others < 1)


def test_garnet_seeded_and_branching():
  key = jax.random.PRNGKey(7)
  m1 = tabular.garnet(key, 12, 3, 2)
  m2 = tabular.garnet(jnp.array(key), 12, 3, 2)
  np.testing.assert_array_equal(m1.transitions, m2.transitions)
  np.testing.assert_array_equal(np.count_nonzero(m1.transitions, -1), 2)
  m3 = tabular.garnet(jax.random.PRNGKey(8), 12, 3, 2)
  assert not np.allclose(m1.transitions, m3.transitions)
  # vmappable over seeds
  batch = jax.vmap(lambda k: tabular.garnet(k, 12, 3, 2))(
      jax.random.split(key, 5))
  assert batch.transitions.shape == (5, 12, 3, 12)
  with pytest.raises(ValueError, match='branching'):
    tabular.garnet(key, 4, 2, 5)


def test_stepping_distribution_matches_transitions():
  """Chi-square test: sampled next states ~ transitions[s, a]."""
  env = envs.make('garnet', num_states=10, num_actions=3, branching=5,
                  key=jax.random.PRNGKey(1))
  s0, a0, n = 4, 2, 20000
  states = _RESET(env)(jax.random.split(jax.random.PRNGKey(0), n))
  states = states.replace(inner=jnp.full((n,), s0, jnp.int32))
  nxt = jax.jit(jax.vmap(env.step))(states, jnp.full((n,), a0, jnp.int32))
  next_index = np.argmax(np.asarray(nxt.final_obs), -1)
  np.testing.assert_array_equal(next_index, np.asarray(nxt.inner))
  p = np.asarray(env.mdp.transitions[s0, a0], np.float64)
  support = p > 0
  counts = np.bincount(next_index, minlength=10)
  assert counts[~support].sum() == 0
  chi2, pval = stats.chisquare(counts[support], n * p[support] / p[support].sum())
  assert pval > 1e-3, (chi2, counts, n * p)
  np.testing.assert_allclose(nxt.reward, env.mdp.rewards[s0, a0])
  # Initial states ~ initial (uniform over 10).
  init_counts = np.bincount(
      np.asarray(_RESET(env)(
          jax.random.split(jax.random.PRNGKey(5), n)).inner), minlength=10)
  assert stats.chisquare(init_counts).pvalue > 1e-3


def test_four_rooms_terminates_at_goal():
  env = envs.make('four_rooms', episode_length=50)
  goal = int(np.flatnonzero(np.asarray(env.mdp.terminal))[0])
  # Put every env in the cell above the goal and move down (action 1).
  t = np.asarray(env.mdp.transitions)
  above = int(np.argmax(t[:, 1, goal] * (np.arange(len(t)) != goal)))
  n = 2000
  states = _RESET(env)(jax.random.split(jax.random.PRNGKey(0), n))
  states = states.replace(inner=jnp.full((n,), above, jnp.int32))
  out = jax.jit(jax.vmap(env.step))(states, jnp.ones((n,), jnp.int32))
  reached = np.argmax(np.asarray(out.final_obs), -1) == goal
  np.testing.assert_array_equal(np.asarray(out.terminated) == 1, reached)
  np.testing.assert_array_equal(np.asarray(out.truncated), 0)
  # Terminated envs were reset to a non-goal state; reward 1 on arrival only.
  assert not np.any(np.asarray(out.inner)[reached] == goal)
  np.testing.assert_allclose(np.asarray(out.reward), t[above, 1, goal],
                             rtol=1e-6)
  assert 0.6 < reached.mean() < 0.74  # success_prob 2/3


def test_one_hot_observations():
  env = envs.make('chain', num_states=5)
  state = env.reset(jax.random.PRNGKey(0))
  assert state.obs.dtype == jnp.float32 and state.obs.shape == (5,)
  np.testing.assert_array_equal(state.obs, np.eye(5)[0])  # starts left
  state = env.step(state, jnp.int32(1))
  np.testing.assert_array_equal(state.obs, np.eye(5)[1])
