"""Demonstrations: a flat, episode-delimited format, its loader, and a soft-optimal generator.

A `Demonstrations` holds N steps of one or more episodes laid end to end
(the layout of D4RL and RLDS, and of a replay buffer read in order):

  observations [N, ...]   what the demonstrator saw at each step;
  actions      [N, ...]   what it did;
  episode_starts [N] bool True where an episode begins (episode_starts[0] is True);
  rewards      [N] or None, when known.

Tabular observations are state indices (int [N]) or one-hot rows (float
[N, S], as `TabularEnv` emits). Inverse RL on a tabular MDP takes the counts
`tabular_counts(demos, S, A, T)` -> D[T, S, A], the argument `demo_counts` of
`rlax_inf.maxent_irl_loss`.

`soft_optimal_demonstrations` samples episodes of a known reward from either
likelihood of `rlax_inf.irl` (the soft-optimal policy under the true dynamics,
or the trajectory posterior p(τ | O)); their expected counts are
`rlax_inf.state_action_marginals(..., optimistic=not causal)`, which tests and
benchmarks use as infinite data.
"""

import os
from typing import Optional

import chex
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

import rlax_inf
from rlax_inf.envs import tabular


@struct.dataclass
class Demonstrations:
  """N demonstrated steps, episodes laid end to end (a pytree).

  Attributes:
    observations: [N, ...].
    actions: [N, ...].
    episode_starts: bool [N], True at the first step of each episode.
    rewards: float [N] or None.
  """

  observations: jax.Array
  actions: jax.Array
  episode_starts: jax.Array
  rewards: Optional[jax.Array] = None

  @property
  def num_steps(self) -> int:
    return self.actions.shape[0]


def _validate(observations, actions, episode_starts, rewards):
  """Host-side checks with ValueErrors that name the field."""
  n = actions.shape[0] if actions.ndim else 0
  if n == 0:
    raise ValueError("actions must hold at least one step, got shape "
                     f"{actions.shape}.")
  for name, x in (("observations", observations), ("episode_starts", episode_starts),
                  ("rewards", rewards)):
    if x is not None and (x.ndim == 0 or x.shape[0] != n):
      raise ValueError(f"{name} must have {n} steps (as actions); got shape {x.shape}.")
  if episode_starts.ndim != 1 or episode_starts.dtype != np.bool_:
    raise ValueError(f"episode_starts must be bool [N]; got {episode_starts.dtype} "
                     f"{episode_starts.shape}.")
  if not episode_starts[0]:
    raise ValueError("episode_starts[0] must be True (the data must begin an episode).")
  if rewards is not None and rewards.ndim != 1:
    raise ValueError(f"rewards must be [N]; got shape {rewards.shape}.")


def make_demonstrations(observations, actions, episode_starts, rewards=None) -> Demonstrations:
  """Builds a checked `Demonstrations` from host or device arrays.

  Args:
    observations: [N, ...].
    actions: [N, ...].
    episode_starts: bool [N] with episode_starts[0] True.
    rewards: optional float [N].

  Returns:
    The `Demonstrations` (numpy arrays; raises ValueError naming a bad field).
  """
  observations = np.asarray(observations)
  actions = np.asarray(actions)
  episode_starts = np.asarray(episode_starts)
  rewards = None if rewards is None else np.asarray(rewards)
  _validate(observations, actions, episode_starts, rewards)
  return Demonstrations(observations, actions, episode_starts, rewards)


def from_episodes(observations, actions, rewards=None) -> Demonstrations:
  """Lays E equal-length episodes end to end.

  Args:
    observations: [E, T, ...].
    actions: [E, T, ...].
    rewards: optional [E, T].

  Returns:
    `Demonstrations` of N = E·T steps, an episode starting every T steps.
  """
  observations = np.asarray(observations)
  actions = np.asarray(actions)
  if actions.ndim < 2 or observations.shape[:2] != actions.shape[:2]:
    raise ValueError("observations and actions must be [E, T, ...] with equal E, T; got "
                     f"{observations.shape} and {actions.shape}.")
  e, t = actions.shape[:2]
  starts = np.zeros((e, t), bool)
  starts[:, 0] = True
  flat = lambda x: None if x is None else np.asarray(x).reshape((e * t,) + np.shape(x)[2:])
  return make_demonstrations(flat(observations), flat(actions), starts.reshape(-1),
                             flat(rewards))


def episode_lengths(demos: Demonstrations) -> np.ndarray:
  """Length of each episode, in order (host-side), int [E]."""
  starts = np.flatnonzero(np.asarray(demos.episode_starts))
  return np.diff(np.append(starts, np.asarray(demos.episode_starts).shape[0]))


def save_demonstrations(path: str, demos: Demonstrations) -> None:
  """Writes `demos` to a .npz file that `load_demonstrations` reads back."""
  arrays = {"observations": np.asarray(demos.observations),
            "actions": np.asarray(demos.actions),
            "episode_starts": np.asarray(demos.episode_starts)}
  if demos.rewards is not None:
    arrays["rewards"] = np.asarray(demos.rewards)
  np.savez_compressed(path, **arrays)


def load_demonstrations(path: str) -> Demonstrations:
  """Reads demonstrations from a .npz file (ours, or D4RL-style flat arrays).

  Keys: `observations` and `actions`, optional `rewards`, and the episode
  boundaries as one of
    * `episode_starts` (bool [N]; ours),
    * `terminals` and/or `timeouts` (D4RL: True at an episode's last step),
    * `dones` (True at an episode's last step).
  Episode ends are turned into starts: a step starts an episode if it is the
  first or the previous step ended one.

  Args:
    path: the .npz file.

  Returns:
    The `Demonstrations`; raises ValueError naming a missing or bad field.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(path)
  with np.load(path, allow_pickle=False) as data:
    keys = set(data.files)
    for key in ("observations", "actions"):
      if key not in keys:
        raise ValueError(f"{path}: no '{key}' array (found {sorted(keys)}).")
    observations, actions = data["observations"], data["actions"]
    rewards = data["rewards"].reshape(-1) if "rewards" in keys else None
    if "episode_starts" in keys:
      starts = data["episode_starts"].astype(bool).reshape(-1)
    else:
      end_keys = [k for k in ("terminals", "timeouts", "dones") if k in keys]
      if not end_keys:
        raise ValueError(f"{path}: no episode boundaries: expected 'episode_starts', "
                         f"'terminals'/'timeouts' or 'dones' (found {sorted(keys)}).")
      ends = np.zeros(actions.shape[0], bool)
      for k in end_keys:
        e = data[k].astype(bool).reshape(-1)
        if e.shape[0] != actions.shape[0]:
          raise ValueError(f"{k} must have {actions.shape[0]} steps (as actions); "
                           f"got {e.shape[0]}.")
        ends |= e
      starts = np.concatenate([[True], ends[:-1]])
  return make_demonstrations(observations, actions, starts, rewards)


def _state_indices(observations, num_states):
  obs = np.asarray(observations)
  if obs.ndim == 1 and np.issubdtype(obs.dtype, np.integer):
    states = obs
  elif obs.ndim == 2 and obs.shape[1] == num_states:
    states = np.argmax(obs, axis=1)
  else:
    raise ValueError("tabular observations must be state indices (int [N]) or one-hot rows "
                     f"[N, {num_states}]; got {obs.dtype} {obs.shape}.")
  if np.any(states < 0) or np.any(states >= num_states):
    raise ValueError(f"observations hold states outside [0, {num_states}).")
  return states


def tabular_counts(demos: Demonstrations, num_states: int, num_actions: int,
                   horizon: int, dtype=np.float32) -> np.ndarray:
  """Empirical counts D[t, s, a] = (1/E) Σ_episodes 1[s_t = s, a_t = a] (host-side).

  Each episode contributes its first `horizon` steps, so every D[t] sums to one
  (the `demo_counts` of `rlax_inf.maxent_irl_loss`); an episode shorter than
  `horizon` raises.

  Args:
    demos: tabular `Demonstrations` (state-index or one-hot observations,
      integer actions).
    num_states: S.
    num_actions: A.
    horizon: T.
    dtype: of the result.

  Returns:
    D [T, S, A].
  """
  states = _state_indices(demos.observations, num_states)
  actions = np.asarray(demos.actions)
  if actions.ndim != 1 or not np.issubdtype(actions.dtype, np.integer):
    raise ValueError(f"tabular actions must be int [N]; got {actions.dtype} {actions.shape}.")
  if np.any(actions < 0) or np.any(actions >= num_actions):
    raise ValueError(f"actions outside [0, {num_actions}).")
  lengths = episode_lengths(demos)
  if np.any(lengths < horizon):
    raise ValueError(f"every episode must have at least horizon={horizon} steps; the shortest "
                     f"has {lengths.min()}.")
  starts = np.flatnonzero(np.asarray(demos.episode_starts))
  time = np.arange(states.shape[0]) - np.repeat(starts, lengths)
  keep = time < horizon
  counts = np.zeros((horizon, num_states, num_actions), np.float64)
  np.add.at(counts, (time[keep], states[keep], actions[keep]), 1.0)
  return (counts / len(starts)).astype(dtype)


def soft_optimal_demonstrations(
    key: jax.Array,
    mdp: tabular.TabularMDP,
    num_episodes: int,
    horizon: int,
    temperature: float = 1.0,
    log_prior: Optional[jax.Array] = None,
    causal: bool = True,
) -> Demonstrations:
  """Samples episodes of length T that are soft-optimal for `mdp.rewards` (undiscounted).

  causal=True: the maximum-causal-entropy expert, a_t ~ π_t(·|s_t) ∝
  π0 exp(Q_t/τ) of the variational messages, s_{t+1} ~ P(·|s_t, a_t),
  s_1 ~ initial. causal=False: exact samples of the trajectory posterior
  p(τ | O) (maximum entropy): s_1 ∝ p(s_1) exp(V_1/τ), a_t ∝ π0 exp(Q_t/τ) of
  the optimistic messages, s_{t+1} ∝ P(s'|s_t, a_t) exp(V_{t+1}(s')/τ).
  Expected counts: `rlax_inf.state_action_marginals(..., optimistic=not causal)`.
  At τ = 0 every choice is greedy with ties split evenly. `mdp.discount` and
  `mdp.terminal` are not used (terminal states are absorbing in `transitions`).
  Jittable with the sizes and `causal` static.

  Args:
    key: PRNG key.
    mdp: the `TabularMDP` (its rewards are the expert's).
    num_episodes: E.
    horizon: T.
    temperature: τ ≥ 0.
    log_prior: log π0(a|s) [S, A] or None (counting measure).
    causal: which likelihood's expert.

  Returns:
    `Demonstrations` of E·T steps: int32 state-index observations, int32
    actions, the expected rewards mdp.rewards[s, a].
  """
  chex.assert_rank(mdp.rewards, 2, custom_message="`mdp.rewards` must be [S, A]")
  rewards, transitions = mdp.rewards, mdp.transitions
  tau = jnp.asarray(temperature, rewards.dtype)
  q, v = rlax_inf.backward_messages(rewards, transitions, horizon, tau, log_prior,
                                    optimistic=not causal)
  if log_prior is None:
    policy = lambda q_s, lp: rlax_inf.boltzmann_log_policy(q_s, tau)
    log_prior_rows = jnp.zeros_like(rewards)
  else:
    policy = lambda q_s, lp: rlax_inf.boltzmann_log_policy(q_s, tau, lp)
    log_prior_rows = log_prior
  log_pi = jax.vmap(lambda q_t: jax.vmap(policy)(q_t, log_prior_rows))(q)
  log_p = jnp.where(transitions > 0, jnp.log(jnp.where(transitions > 0, transitions, 1.0)),
                    -jnp.inf)
  log_init = jnp.where(mdp.initial > 0, jnp.log(jnp.where(mdp.initial > 0, mdp.initial, 1.0)),
                       -jnp.inf)
  if causal:
    log_s1 = log_init
    # Row t of log_next is used after step t < T − 1: the true dynamics.
    log_next = jnp.broadcast_to(log_p, (horizon,) + log_p.shape)
  else:
    tilt = lambda v_t, lp: rlax_inf.boltzmann_log_policy(v_t, tau, lp)
    log_s1 = tilt(v[0], log_init)
    v_next = jnp.concatenate([v[1:], jnp.zeros_like(v[:1])], axis=0)
    log_next = jax.vmap(lambda vt: jax.vmap(jax.vmap(lambda lp: tilt(vt, lp)))(log_p))(v_next)

  def episode(k):
    k0, k = jax.random.split(k)
    s1 = jax.random.categorical(k0, log_s1)

    def step(s, xs):
      kt, lpi_t, lnext_t = xs
      ka, ks = jax.random.split(kt)
      a = jax.random.categorical(ka, lpi_t[s])
      s_next = jax.random.categorical(ks, lnext_t[s, a])
      return s_next, (s, a)

    _, (s, a) = jax.lax.scan(step, s1, (jax.random.split(k, horizon), log_pi, log_next))
    return s, a

  states, actions = jax.vmap(episode)(jax.random.split(key, num_episodes))
  starts = jnp.zeros((num_episodes, horizon), bool).at[:, 0].set(True)
  flat = lambda x: x.reshape(-1)
  return Demonstrations(flat(states).astype(jnp.int32), flat(actions).astype(jnp.int32),
                        flat(starts), flat(rewards[states, actions]))
