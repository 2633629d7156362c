"""Pure-JAX tabular MDPs: one `TabularMDP` type for exact answers and sampling.

A `TabularMDP` holds the arrays `rlax_inf.messages` takes (rewards[S, A],
transitions[S, A, S'], initial[S], discount), so the same object gives exact
values (`rlax_inf.policy_evaluation(mdp.rewards, mdp.transitions, pi,
mdp.discount)`) and, through `TabularEnv`, a stepping environment with one-hot
observations.

Terminal states are absorbing with zero reward in `transitions` / `rewards`,
so exact infinite-horizon values need no special case; `terminal[S]` marks
them for the stepping environment, which then reports `terminated` on
entering one (and the agent's `discount = 1 - terminated` gives the same
values).
"""

import functools
from typing import Optional

import chex
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from rlax_inf.envs import core


@struct.dataclass
class TabularMDP:
  """A finite MDP (a pytree; vmappable, e.g. over Garnet seeds).

  Attributes:
    rewards: [S, A] expected reward r(s, a).
    transitions: [S, A, S'] P(s' | s, a); rows sum to 1.
    initial: [S] initial state distribution.
    discount: γ in [0, 1).
    terminal: [S] bool, absorbing zero-reward states that end an episode in
      the stepping environment (all False for continuing tasks).
  """

  rewards: jax.Array
  transitions: jax.Array
  initial: jax.Array
  discount: float
  terminal: jax.Array

  @property
  def num_states(self) -> int:
    return self.rewards.shape[0]

  @property
  def num_actions(self) -> int:
    return self.rewards.shape[1]


def make_mdp(rewards, transitions, initial, discount,
             terminal=None) -> TabularMDP:
  """Builds a checked `TabularMDP` (float32 arrays).

  Args:
    rewards: [S, A].
    transitions: [S, A, S'], rows summing to 1.
    initial: [S], summing to 1.
    discount: γ.
    terminal: optional [S] bool (default: no terminal states).

  Returns:
    The `TabularMDP`.
  """
  rewards = jnp.asarray(rewards, jnp.float32)
  transitions = jnp.asarray(transitions, jnp.float32)
  initial = jnp.asarray(initial, jnp.float32)
  chex.assert_rank(rewards, 2)
  s, a = rewards.shape
  chex.assert_shape(transitions, (s, a, s))
  chex.assert_shape(initial, (s,))
  if terminal is None:
    terminal = jnp.zeros((s,), bool)
  terminal = jnp.asarray(terminal, bool)
  chex.assert_shape(terminal, (s,))
  return TabularMDP(rewards, transitions, initial, discount, terminal)


# ---------------------------------------------------------------- gridworld
# Actions of the grid worlds: 0 up, 1 down, 2 right, 3 left.
_MOVES = np.array([[-1, 0], [1, 0], [0, 1], [0, -1]])


def gridworld(discount: float = 0.9) -> TabularMDP:
  """The 5×5 grid world of Sutton & Barto (2018), Example 3.5.

  State s = 5·row + col. From A = (0, 1) every action moves to (4, 1) with
  reward +10; from B = (0, 3) to (2, 3) with +5; moves off the grid give −1
  and stay; all else 0. Continuing task, uniform initial state. Known:
  v*(A) = 24.4 and the random policy's v(A) = 8.8 (γ = 0.9).

  Args:
    discount: γ.

  Returns:
    The `TabularMDP` (25 states, 4 actions).
  """
  n = 5
  special = {(0, 1): ((4, 1), 10.0), (0, 3): ((2, 3), 5.0)}
  rewards = np.zeros((n * n, 4), np.float32)
  transitions = np.zeros((n * n, 4, n * n), np.float32)
  for r in range(n):
    for c in range(n):
      s = r * n + c
      for a, (dr, dc) in enumerate(_MOVES):
        if (r, c) in special:
          (nr, nc), rew = special[(r, c)]
        elif 0 <= r + dr < n and 0 <= c + dc < n:
          (nr, nc), rew = (r + dr, c + dc), 0.0
        else:
          (nr, nc), rew = (r, c), -1.0
        rewards[s, a] = rew
        transitions[s, a, nr * n + nc] = 1.0
  return make_mdp(rewards, transitions, np.full(n * n, 1.0 / (n * n)),
                  discount)


#: Index of state A = (0, 1) in `gridworld()`.
GRIDWORLD_A = 1
#: Index of state B = (0, 3) in `gridworld()`.
GRIDWORLD_B = 3

# Sutton, Precup & Singh (1999) four-rooms layout; '#' wall, 'G' goal.
_FOUR_ROOMS = (
    '#############',
    '#     #     #',
    '#     #     #',
    '#           #',
    '#     #     #',
    '#     #     #',
    '## ####     #',
    '#     ### ###',
    '#     #     #',
    '#     #     #',
    '#           #',
    '#     #    G#',
    '#############',
)


def four_rooms(discount: float = 0.9, success_prob: float = 2.0 / 3.0,
               layout=_FOUR_ROOMS) -> TabularMDP:
  """Four rooms (Sutton, Precup & Singh 1999), 104 cells.

  The chosen move succeeds with probability `success_prob`, otherwise one of
  the three other moves is taken uniformly; moves into walls stay. Reward
  +1 (in expectation) for a transition into the goal G, which is terminal
  (absorbing, zero reward). Initial state uniform over the non-goal cells.

  Args:
    discount: γ.
    success_prob: probability that the intended move happens.
    layout: rows of '#' (wall), ' ' (cell) and one 'G' (goal cell).

  Returns:
    The `TabularMDP` (one state per free cell, row-major; 4 actions).
  """
  cells = [(r, c) for r, row in enumerate(layout) for c, ch in enumerate(row)
           if ch != '#']
  index = {rc: i for i, rc in enumerate(cells)}
  goal = [index[(r, c)] for r, row in enumerate(layout)
          for c, ch in enumerate(row) if ch == 'G']
  if len(goal) != 1:
    raise ValueError('`layout` must contain exactly one goal G.')
  goal = goal[0]
  s_count = len(cells)
  slip = (1.0 - success_prob) / 3.0
  transitions = np.zeros((s_count, 4, s_count), np.float32)
  for (r, c), s in index.items():
    for a in range(4):
      if s == goal:
        transitions[s, a, s] = 1.0
        continue
      for b, (dr, dc) in enumerate(_MOVES):
        nxt = index.get((r + dr, c + dc), s)
        transitions[s, a, nxt] += success_prob if a == b else slip
  terminal = np.zeros(s_count, bool)
  terminal[goal] = True
  rewards = transitions[:, :, goal] * (~terminal)[:, None]
  initial = (~terminal).astype(np.float32) / (s_count - 1)
  return make_mdp(rewards, transitions, initial, discount, terminal)


def chain(num_states: int = 10, discount: float = 0.9, slip: float = 0.0,
          small_reward: float = 0.0) -> TabularMDP:
  """A chain: action 1 moves right, action 0 moves left (both clamp).

  Taking action 1 at the right end gives reward 1 (and stays); taking action
  0 at the left end gives `small_reward` (a distractor). With probability
  `slip` the opposite move happens. Starts at the left end. With slip = 0 and
  small_reward < γ^(n−1): v*(s) = γ^(n−1−s) / (1 − γ).

  Args:
    num_states: n ≥ 2.
    discount: γ.
    slip: probability of the opposite move.
    small_reward: reward of action 0 at state 0.

  Returns:
    The `TabularMDP` (n states, 2 actions).
  """
  n = num_states
  if n < 2:
    raise ValueError(f'num_states must be >= 2, got {n}')
  transitions = np.zeros((n, 2, n), np.float32)
  for s in range(n):
    left, right = max(s - 1, 0), min(s + 1, n - 1)
    transitions[s, 0, left] += 1 - slip
    transitions[s, 0, right] += slip
    transitions[s, 1, right] += 1 - slip
    transitions[s, 1, left] += slip
  rewards = np.zeros((n, 2), np.float32)
  # Expected reward: "stayed at the end" events.
  rewards[n - 1, 1] = 1.0 - slip
  rewards[n - 1, 0] = slip
  rewards[0, 0] = (1 - slip) * small_reward
  rewards[0, 1] = slip * small_reward
  initial = np.zeros(n, np.float32)
  initial[0] = 1.0
  return make_mdp(rewards, transitions, initial, discount)


def garnet(key: jax.Array, num_states: int = 20, num_actions: int = 4,
           branching: int = 3, discount: float = 0.9) -> TabularMDP:
  """A random Garnet MDP (Archibald, McKinnon & Thomas 1995).

  Each (s, a) reaches `branching` distinct next states chosen uniformly, with
  probabilities uniform on the simplex; rewards r(s, a) ~ U[0, 1); uniform
  initial state. Jittable and vmappable over `key` (sizes are static).

  Args:
    key: PRNG key (same key, same MDP).
    num_states: S.
    num_actions: A.
    branching: number of reachable next states per (s, a), 1 ≤ b ≤ S.
    discount: γ.

  Returns:
    The `TabularMDP`.
  """
  if not 1 <= branching <= num_states:
    raise ValueError(f'branching must be in [1, {num_states}], got {branching}')
  return _garnet(key, num_states, num_actions, branching, discount)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _garnet(key, s, a, b, discount):
  """`garnet` for static sizes (one compile per size, not per op)."""
  k_next, k_prob, k_rew = jax.random.split(key, 3)
  # b distinct next states per (s, a): the first b of a random permutation.
  scores = jax.random.uniform(k_next, (s, a, s))
  _, next_states = jax.lax.top_k(scores, b)
  # Uniform on the simplex: gaps between sorted uniforms.
  cuts = jnp.sort(jax.random.uniform(k_prob, (s, a, b - 1)), axis=-1)
  cuts = jnp.concatenate([jnp.zeros((s, a, 1)), cuts, jnp.ones((s, a, 1))],
                         axis=-1)
  probs = jnp.diff(cuts, axis=-1)
  transitions = jnp.sum(
      jax.nn.one_hot(next_states, s) * probs[..., None], axis=-2)
  rewards = jax.random.uniform(k_rew, (s, a))
  initial = jnp.full((s,), 1.0 / s)
  return TabularMDP(rewards, transitions, initial, discount,
                    jnp.zeros((s,), bool))


# ---------------------------------------------------------------- stepping
class TabularEnv(core.Environment):
  """Samples a `TabularMDP`: s0 ~ initial, s' ~ transitions[s, a].

  obs = one_hot(s) (float32 [S]); reward = rewards[s, a]; terminated when s'
  is terminal. Discrete actions (int32 []). `state.inner` is the int32 state
  index.

  Args:
    mdp: the `TabularMDP`.
    name: name reported in the spec.
    episode_length: time limit in agent steps.
    action_repeat: MDP steps per agent step.
  """

  def __init__(self, mdp: TabularMDP, name: str = 'tabular',
               episode_length: int = 1000, action_repeat: int = 1):
    self.mdp = mdp
    super().__init__(core.EnvSpec(
        name=name, suite='tabular', backend='jax',
        observation_size=mdp.num_states, action_size=mdp.num_actions,
        discrete=True, action_low=0.0, action_high=float(mdp.num_actions - 1),
        episode_length=episode_length, action_repeat=action_repeat,
        differentiable=False))

  def _obs(self, s):
    return jax.nn.one_hot(s, self.mdp.num_states, dtype=jnp.float32)

  def core_reset(self, key):
    s = _sample(key, self.mdp.initial)
    return s, self._obs(s)

  def core_step(self, inner, action, key):
    nxt = _sample(key, self.mdp.transitions[inner, action])
    return (nxt, self._obs(nxt), self.mdp.rewards[inner, action],
            self.mdp.terminal[nxt])


def _sample(key, p):
  """One draw from the categorical `p` by inverse CDF (one uniform number).

  Cheaper than `jax.random.categorical` (one Gumbel per state), which matters
  because the reset is sampled on every step.
  """
  cdf = jnp.cumsum(p)
  u = jax.random.uniform(key) * cdf[-1]
  s = jnp.sum(cdf <= u).astype(jnp.int32)
  # Guard against rounding past the last state with positive mass.
  return jnp.minimum(s, p.shape[0] - 1 - jnp.argmax(p[::-1] > 0))


def make_tabular(name: str, episode_length: int = 1000,
                 action_repeat: int = 1, key: Optional[jax.Array] = None,
                 **kwargs) -> TabularEnv:
  """Builds the stepping environment of a named tabular MDP.

  Args:
    name: 'gridworld', 'four_rooms', 'chain' or 'garnet'.
    episode_length: time limit in agent steps.
    action_repeat: MDP steps per agent step.
    key: for 'garnet' only (default PRNGKey(0)).
    **kwargs: passed to the MDP constructor.

  Returns:
    A `TabularEnv`.
  """
  if name == 'garnet':
    mdp = garnet(jax.random.PRNGKey(0) if key is None else key, **kwargs)
  else:
    if key is not None:
      raise ValueError(f'`key` is only used by garnet, not {name!r}.')
    mdp = TABULAR_MDPS[name](**kwargs)
  return TabularEnv(mdp, name, episode_length, action_repeat)


TABULAR_MDPS = {
    'gridworld': gridworld,
    'four_rooms': four_rooms,
    'chain': chain,
    'garnet': garnet,
}
