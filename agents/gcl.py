"""Guided cost learning: a reward learned from demonstrations, alternating with SAC.

Guided cost learning (Finn, Levine & Abbeel, 2016) is maximum-entropy inverse RL
(Ziebart et al., 2008) with the partition function estimated by importance
sampling from the policy that is being trained on the current reward. The model
of a trajectory τ = (s_1, a_1, ..., s_T, a_T) is

  p_ψ(τ) ∝ p(s_1) Π_t P(s_{t+1}|s_t, a_t) exp(R_ψ(τ)/α),   R_ψ(τ) = Σ_t r_ψ(s_t, a_t),

α the policy's temperature (SAC's; the trajectory distribution SAC's soft-optimal
policy approximates). Per update, on B sequences of T steps from the replay and
B windows of T steps drawn from the demonstrations:

  reward:  L_ψ = −mean_i R_ψ(τ_i^demo) + Σ_j sg(w̄_j) R_ψ(τ_j) + λ ½ (mean r_ψ² demo + sampled)
           w̄ = snis(log w),  log w_j = R_ψ(τ_j)/α − Σ_t log q(a_t|s_t)
                                    [rlax_inf.trajectory_log_weights, snis_weights]
           ∇L_ψ = −(E_demo ∇R_ψ − Σ_j w̄_j ∇R_ψ(τ_j)) + λ ∇(L2 term),
           i.e. α times the gradient of the negative log-likelihood of the
           demonstrations with log Z_ψ estimated by self-normalised importance
           sampling (the dynamics cancel in w). q is the behaviour policy,
           recorded at acting time (`extras['log_prob']`; prefill steps, whose
           extras are zeros, get the uniform density of the env's action box).
           The ESS 1/Σ w̄² [rlax_inf.effective_sample_size] is a metric.
  policy:  SAC (`sac.make`, unchanged) on the B·T transitions of the same batch
           with every reward replaced by sg(r_ψ'(s, a)), ψ' the reward after
           the step above.

Approximations, besides the sample-based log Z:
  * Trajectories are T-step windows (`window`): demonstrated episodes are cut into
    non-overlapping windows of T steps (a tail shorter than T is dropped), and the
    policy's windows are replay sequences that start anywhere in an episode. So the
    model is over T-step segments from the states the two data sets visit, not over
    whole episodes from p(s_1): the start-state distributions of demonstrated and
    sampled windows differ, and that difference is not corrected.
  * A sampled window that ends an episode is cut after its first `done`: after a
    real terminal the remaining steps are the absorbing state (reward 0, no action),
    which matches SAC's zero bootstrap at terminals; after a time-limit truncation
    the window is simply shorter (rare when T ≪ the episode length).
  * The windows are undiscounted in the reward model; SAC discounts (γ).
  * Termination (`absorbing_reward`, default on; Kostrikov et al. 2019's
    absorbing state): after a true terminal the trajectory stays in an absorbing
    state whose per-step reward r_abs is a learned scalar of ψ. In the window
    model the steps after the first `done` of a window, when that `done` is a
    termination, carry r_abs (no action, so no log q); SAC's terminal
    transitions get r_ψ(s, a) + γ r_abs / (1 − γ), the discounted value of
    staying there. Without it a reward pushed below zero on the policy's states
    makes ending the episode the policy's best move (eval returns of ~7 on
    inverted_pendulum from expert demonstrations that never end,
    benchmarks/results/gcl.md), since SAC bootstraps zero after a terminal.
  * The replay holds windows of many past policies, each weighted by its own
    behaviour density (a valid proposal, but stale ones get small weights). Finn et
    al.'s background set also mixes in the demonstrations with an estimate of their
    density; here it holds policy samples only, and the L2 term bounds the reward
    where the samples do not reach.

Demonstrations are read at `make` time from `config.demonstrations`
(`envs.demonstrations.load_demonstrations`: observations [N, O], actions [N, A],
episode starts). There is no default: `make` refuses `demonstrations=""`, naming the
field (`rlax-inf train --agent gcl` exits 2 asking for `--set demonstrations=PATH`).
"""

import dataclasses
import math
from typing import Any, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

import rlax_inf
from rlax_inf.agents import _tanh_normal as tanh_normal
from rlax_inf.agents import base
from rlax_inf.agents import gradients
from rlax_inf.agents import networks
from rlax_inf.agents import normalizer as normalizer_lib
from rlax_inf.agents import sac
from rlax_inf.envs import demonstrations as demos_lib


@dataclasses.dataclass(frozen=True)
class GCLConfig(sac.SACConfig):
  """SAC's hyper-parameters (inherited, for the policy step) plus the reward's.

  Attributes:
    demonstrations: path of a demonstrations .npz file (required: "" is refused
      when the agent is made).
    window: T, the length of the trajectory windows (replay sequences and demo
      windows).
    reward_hidden: hidden layer widths of r_ψ(s, a).
    reward_lr: Adam step size of ψ.
    reward_l2: λ of the output penalty λ · ½ (mean r_ψ² over the demo steps + mean
      r_ψ² over the sampled steps inside their windows, absorbing steps included).
      Where the policy's samples do not reach the demonstrations (separable data)
      the likelihood alone raises the demonstrated rewards without bound, and the
      penalty sets their scale: a demo step settles at r = T/λ. At λ = 1e-3 (the
      default before) inverted_pendulum's demo steps reached ~7,000 per step.
    absorbing_reward: learn the reward r_abs of the absorbing state after a
      termination (see the module doc); False: a terminal ends the window and
      SAC bootstraps zero, as before.
  """

  demonstrations: str = ""
  window: int = 16
  reward_hidden: Tuple[int, ...] = (64, 64)
  reward_lr: float = 3e-4
  reward_l2: float = 1.0
  absorbing_reward: bool = True

  def __post_init__(self):
    super().__post_init__()
    if not isinstance(self.demonstrations, str):
      raise ValueError(f"demonstrations must be a path (str), got {self.demonstrations!r}")
    if self.window < 1:
      raise ValueError(f"window must be >= 1, got {self.window}")
    if self.reward_lr <= 0:
      raise ValueError(f"reward_lr must be > 0, got {self.reward_lr}")
    if self.reward_l2 < 0:
      raise ValueError(f"reward_l2 must be >= 0, got {self.reward_l2}")


@flax.struct.dataclass
class GCLState:
  """SAC's state and the reward's parameters and optimiser state (arrays only)."""

  sac: sac.SACState
  reward: Any
  reward_opt: Any


def sac_config(config: GCLConfig) -> sac.SACConfig:
  """The SAC config of the policy step: `config`'s SAC fields."""
  return sac.SACConfig(**{f.name: getattr(config, f.name)
                          for f in dataclasses.fields(sac.SACConfig)})


def demo_windows(demos: demos_lib.Demonstrations, window: int) -> Tuple[np.ndarray, np.ndarray]:
  """Non-overlapping T-step windows inside each episode: (obs [W, T, O], actions [W, T, A]).

  An episode of length L gives ⌊L/T⌋ windows from its start; the tail is dropped.
  """
  obs, act = np.asarray(demos.observations), np.asarray(demos.actions)
  starts = np.flatnonzero(np.asarray(demos.episode_starts))
  lengths = demos_lib.episode_lengths(demos)
  first = np.array([s + k * window for s, n in zip(starts, lengths)
                    for k in range(n // window)], np.int64)
  if first.size == 0:
    raise ValueError(f"demonstrations: no episode has window={window} steps (the longest "
                     f"has {lengths.max()})")
  idx = first[:, None] + np.arange(window)[None]
  return obs[idx].astype(np.float32), act[idx].astype(np.float32)


def load_windows(config: GCLConfig, env_spec: Any) -> Tuple[np.ndarray, np.ndarray]:
  """The demonstration windows of `config` for `env_spec`, shapes checked."""
  obs_size, action_size = int(env_spec.observation_size), int(env_spec.action_size)
  if not config.demonstrations:
    raise ValueError("gcl needs demonstrations: set demonstrations=PATH (a file written by "
                     "rlax_inf.envs.demonstrations.save_demonstrations)")
  demos = demos_lib.load_demonstrations(config.demonstrations)
  for name, x, size in (("observations", demos.observations, obs_size),
                        ("actions", demos.actions, action_size)):
    if np.ndim(x) != 2 or np.shape(x)[1] != size:
      raise ValueError(f"demonstrations {config.demonstrations}: {name} must be "
                       f"[N, {size}] for {getattr(env_spec, 'name', 'this env')}, "
                       f"got {np.shape(x)}")
  return demo_windows(demos, config.window)


def window_mask(done: jax.Array) -> jax.Array:
  """m[t] = 1 up to and including the first `done` of a window [T], 0 after."""
  alive = jnp.cumprod(1.0 - done, axis=-1)
  return jnp.concatenate([jnp.ones_like(done[..., :1]), alive[..., :-1]], axis=-1)


def absorbing_mask(done: jax.Array, terminated: jax.Array) -> jax.Array:
  """a[t] = 1 after the first `done` of a window [T] when that `done` is a termination.

  Those steps are the absorbing state; after a time-limit truncation the window
  simply ends (a = 0).
  """
  mask = window_mask(done)
  first_done_terminal = jnp.sum(mask * done * terminated, axis=-1, keepdims=True)
  return (1.0 - mask) * first_done_terminal


def behaviour_log_prob(extras: dict, log_uniform: float) -> jax.Array:
  """log q(a|s) of the stored actions: `extras['log_prob']` where acted by the policy, else
  `log_uniform` (the loop's prefill draws actions uniformly and stores zero extras)."""
  return jnp.where(extras["from_policy"] > 0, extras["log_prob"], log_uniform)


def make_reward_loss(reward_fn, reward_l2: float, absorbing_fn=None):
  """The reward step's loss as a pure function (see the module doc).

    reward_loss(ψ, demo_obs [D, T, O], demo_action [D, T, A], obs [B, T, O],
                action [B, T, A], log_q [B, T], mask [B, T], alpha, absorbing=None)
      -> (L_ψ, dict(ess, log_w [B], reward_demo, reward_policy))

  `reward_fn(ψ, obs, action) -> r` over any leading axes; observations already
  normalised; `log_q` the behaviour log-density of each action, `mask` from
  `window_mask`; `alpha` the temperature (no gradient). With `absorbing_fn(ψ) ->
  r_abs` (a scalar), the steps marked by `absorbing` [B, T] (`absorbing_mask`)
  carry r_abs and no action density.
  """

  def reward_loss(params, demo_obs, demo_action, obs, action, log_q, mask, alpha,
                  absorbing=None):
    alpha = jax.lax.stop_gradient(alpha)
    r_demo = reward_fn(params, demo_obs, demo_action)  # [D, T]
    r = reward_fn(params, obs, action) * mask  # [B, T]
    counted = mask
    if absorbing_fn is not None:
      r = r + absorbing_fn(params) * absorbing
      counted = mask + absorbing
    log_w = jax.vmap(rlax_inf.trajectory_log_weights, (0, 0, 0, None))(
        r, log_q * mask, jnp.zeros_like(r), alpha)
    w = jax.lax.stop_gradient(rlax_inf.snis_weights(log_w))
    demo_return, sample_return = jnp.sum(r_demo, -1), jnp.sum(r, -1)
    l2 = 0.5 * (jnp.mean(jnp.square(r_demo))
                + jnp.sum(jnp.square(r)) / jnp.maximum(jnp.sum(counted), 1.0))
    loss = -jnp.mean(demo_return) + jnp.sum(w * sample_return) + reward_l2 * l2
    aux = dict(ess=rlax_inf.effective_sample_size(jax.lax.stop_gradient(log_w)),
               log_w=jax.lax.stop_gradient(log_w),
               reward_demo=jnp.mean(demo_return), reward_policy=jnp.mean(sample_return))
    return loss, aux

  return reward_loss


def relabel(batch: base.Transition, rewards: jax.Array) -> base.Transition:
  """`batch` [B, T] flattened to [B·T] transitions with rewards sg(`rewards`), no extras."""
  flat = lambda x: jnp.reshape(x, (-1,) + x.shape[2:])
  return base.Transition(obs=flat(batch.obs), action=flat(batch.action),
                         reward=flat(jax.lax.stop_gradient(rewards)),
                         terminated=flat(batch.terminated), done=flat(batch.done),
                         next_obs=flat(batch.next_obs))


def make(config: GCLConfig, env_spec: Any) -> base.Agent:
  """Guided cost learning for `env_spec` (continuous actions only).

  Raises:
    base.UnsupportedEnv: the env has discrete actions.
    ValueError: demonstrations that do not fit the env or hold no full window.
  """
  base.check_action_space("gcl", env_spec, (base.CONTINUOUS,))
  obs_size, action_size = int(env_spec.observation_size), int(env_spec.action_size)
  policy = sac.make(sac_config(config), env_spec)
  actor_net = networks.Actor(config.hidden, action_size)  # sac.make's actor
  reward_net = networks.MLP(tuple(config.reward_hidden), 1)
  reward_tx = optax.adam(config.reward_lr)
  demo_obs, demo_action = (jnp.asarray(x) for x in load_windows(config, env_spec))
  num_windows = demo_obs.shape[0]
  # log-density of a uniform action on the env's box: the prefill's behaviour.
  log_uniform = -action_size * math.log(float(env_spec.action_high) -
                                        float(env_spec.action_low))

  def reward_fn(params, obs, action):
    return reward_net.apply(params["net"], jnp.concatenate([obs, action], axis=-1))[..., 0]

  absorbing_fn = (lambda params: params["absorbing"]) if config.absorbing_reward else None
  reward_step = gradients.make_step(
      make_reward_loss(reward_fn, config.reward_l2, absorbing_fn), reward_tx, has_aux=True)
  # SAC's terminal transitions: + γ r_abs / (1 − γ), the value of the absorbing state.
  absorbing_value = config.discount / (1.0 - config.discount)

  def init(key):
    k_policy, k_reward = jax.random.split(key)
    reward = dict(net=reward_net.init(k_reward, jnp.zeros((1, obs_size + action_size))))
    if config.absorbing_reward:
      reward["absorbing"] = jnp.zeros(())
    return GCLState(sac=policy.init(k_policy), reward=reward, reward_opt=reward_tx.init(reward))

  def policy_params(state):
    return policy.policy_params(state.sac)

  def act(params, obs, key, deterministic=False):
    """SAC's action (the same for the same key) and its log π(a|s) as `extras['log_prob']`."""
    mean, std = actor_net.apply(params.actor, normalizer_lib.normalize(params.normalizer, obs))
    u = base.select(deterministic, mean, tanh_normal.sample_pre_tanh(key, mean, std))
    return jnp.tanh(u), dict(log_prob=tanh_normal.log_prob_pre_tanh(u, mean, std),
                             from_policy=jnp.ones(obs.shape[:1], jnp.float32))

  def observe(state, obs):
    return state.replace(sac=policy.observe(state.sac, obs))

  def update(state, batch, key):
    """One reward step on [B, T] windows, then SAC on the relabelled B·T transitions."""
    if batch.reward.ndim == 1:  # window = 1: the loop gives one-step transitions [B]
      batch = jax.tree.map(lambda x: x[:, None], batch)
    k_demo, k_policy = jax.random.split(key)
    norm = state.sac.normalizer
    pick = jax.random.randint(k_demo, (batch.reward.shape[0],), 0, num_windows)
    d_obs = normalizer_lib.normalize(norm, demo_obs[pick])
    obs = normalizer_lib.normalize(norm, batch.obs)
    log_q = behaviour_log_prob(batch.extras, log_uniform)
    (r_loss, aux), reward, reward_opt = reward_step(
        state.reward, state.reward_opt, d_obs, demo_action[pick], obs, batch.action, log_q,
        window_mask(batch.done), jnp.exp(state.sac.log_alpha),
        absorbing_mask(batch.done, batch.terminated) if config.absorbing_reward else None)
    rewards = reward_fn(reward, obs, batch.action)
    if config.absorbing_reward:
      rewards = rewards + batch.terminated * absorbing_value * reward["absorbing"]
    sac_state, metrics = policy.update(state.sac, relabel(batch, rewards), k_policy)
    metrics = dict(metrics, reward_loss=r_loss, ess=aux["ess"], reward_demo=aux["reward_demo"],
                   reward_policy=aux["reward_policy"], learned_reward=jnp.mean(rewards))
    if config.absorbing_reward:
      metrics["absorbing_reward"] = reward["absorbing"]
    return GCLState(sac=sac_state, reward=reward, reward_opt=reward_opt), metrics

  return base.Agent(init=init, act=act, policy_params=policy_params, observe=observe,
                    update=update,
                    needs=base.Needs(base.OFF_POLICY, config.window, base.CONTINUOUS),
                    progress_keys=("ess", "temperature"))
