"""Options agent benchmark: what each option does on four rooms; a continuous Brax task beside SAC.

  python -m benchmarks.options [--seeds 4] [--tasks four_rooms inverted_pendulum]
      four_rooms (tabular): the `options` agent, S seeds vmapped in one program, with
      the reverse model (the agent's bound) and, as a control, without it (the
      + H(π(o|s, o_prev)) variant): return vs env steps, and for the final policy of
      every seed where each option is active (P(o | cell), a heat map per option),
      its share of the steps, its mean duration, its action distribution, and two
      summary figures of how distinct the options are: I(o; room) / H(room) and
      I(o; a) / H(a) (empirical, from stochastic rollouts of the final policy).
      inverted_pendulum (Brax, 'positional'): `options` (tanh-Gaussian intra-option
      policies) and `sac` on the same env-step budget, both timed on this machine.
      Writes benchmarks/results/options.json, options.md and options.png.
  python -m benchmarks.options --explore TAG --steps 204800 --seeds 2 --set info_weight=4 ...
      one four-rooms run of the agent settings given (over FOUR_ROOMS_AGENT), cached under
      runs/bench_options_short; prints the curves' end and the option statistics; writes nothing.
  python -m benchmarks.options --quick
      CI size: four_rooms only, 2 seeds, a few intervals; checks everything runs and
      prints the table; writes nothing.

Runs are cached under runs/bench_options (git-ignored): a finished run with the same
settings is read back, an unfinished one resumes from its last evaluation interval.
Evaluation (the shared `acting.evaluate`): mean first-episode return of
`num_eval_envs` fresh envs, deterministic policy (greedy option and action).
"""

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import pickle
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common
from rlax_inf import envs
from rlax_inf.agents import acting
from rlax_inf.agents import registry
from rlax_inf.agents import training
from rlax_inf.agents.config import TrainConfig
from rlax_inf.envs import tabular

RESULTS = _common.RESULTS_DIR
CACHE = "runs/bench_options"
MOVES = ("up", "down", "right", "left")  # envs.tabular's action order

FOUR_ROOMS_TRAIN = dict(env="four_rooms", total_steps=1_024_000, num_envs=32,
                        num_minibatches=4, num_epochs=4, eval_every=20_480,
                        episode_length=100, num_eval_envs=16)
FOUR_ROOMS_AGENT = dict(num_options=4, hidden=(64,), temperature=0.02,
                        normalize_observations=False)
#: name -> (agent settings, cache tag).
VARIANTS = {
    "reverse model q(o_t | o_prev, s_t, a_t)": (dict(reverse_model=True), "rev"),
    "mean-field reverse model q(o_t | s_t, a_t)": (
        dict(reverse_model=True, reverse_previous_option=False), "mf"),
    "mean-field reverse model, uniform option selection q(o|s) = 1/O": (
        dict(reverse_model=True, reverse_previous_option=False, learn_selection=False), "mfu"),
    "mean-field, uniform selection, fixed c = sigmoid(3) = 0.95, tau 0.05": (
        dict(reverse_model=True, reverse_previous_option=False, learn_selection=False,
             learn_continuation=False, continue_bias=3.0, temperature=0.05), "mfuc"),    "information term beta = 4, q(o|s) from it alone (eta = 0.03), fixed c = 0.5": (
        dict(info_weight=4.0, info_selection=0.03, learn_continuation=False,
             continue_bias=0.0), "info"),
}
#: Variants whose P(option | cell) maps are drawn.
MAP_TAGS = ("rev", "info")
#: Brax inverted_pendulum: both agents get 30,720 env steps per seed and evaluate every
#: 5,120 (6 evaluations), a budget that a loaded 2-core VM runs in under an hour. options: 32 envs x T = 32 per rollout, 4 epochs x 4 minibatches
#: (klpg's layout); sac: benchmarks.sac's learning settings (16 envs, 16 updates per vector
#: step, batch 256, 2,048 prefill steps).
PENDULUM_TRAIN = dict(env="inverted_pendulum", backend="positional", total_steps=30_720,
                      eval_every=5_120, episode_length=1000, num_eval_envs=8)
PENDULUM_AGENTS = {
    "options": (dict(num_envs=32, num_minibatches=4, num_epochs=4),
                dict(num_options=2, hidden=(64, 64), temperature=0.05, reward_scale=0.1,
                     policy_lr=3e-4)),
    "sac": (dict(num_envs=16, grad_updates_per_step=16, batch_size=256, prefill_steps=2048),
            dict(hidden=(64, 64))),
}
ROLLOUT_ENVS, ROLLOUT_STEPS = 64, 400  # per seed, for the option statistics


def _key(settings):
  return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def _normalized(settings):
  """Settings without the fields added after runs were cached while they are off (0 / False),
  so that those runs are read back."""
  agent = dict(settings["agent_config"])
  for key in ("info_weight", "info_selection"):
    if key in agent and not agent[key]:
      del agent[key]
  return dict(settings, agent_config=agent)


def _settings_path(name, train_kw, agent_kw, seeds, cache_dir, tag):
  cfg = TrainConfig(num_seeds=seeds, **train_kw)
  agent_cfg = dataclasses.replace(registry.get(name).config, **agent_kw)
  settings = _normalized(json.loads(json.dumps(dict(
      agent=name, train=dataclasses.asdict(cfg), agent_config=dataclasses.asdict(agent_cfg)))))
  path = os.path.join(cache_dir, f"{name}_{train_kw['env']}{tag}_{_key(settings)}")
  return cfg, agent_cfg, settings, path


def cached(name, train_kw, agent_kw, seeds, cache_dir=CACHE, tag=""):
  """`run`'s result read from the cache without training; an unfinished run's evaluations
  so far (with 'unfinished': the number of intervals planned); None if nothing is cached."""
  cfg, agent_cfg, settings, path = _settings_path(name, train_kw, agent_kw, seeds, cache_dir, tag)
  # Also runs cached under an older key of the same settings.
  stems = [path] + sorted({p.rsplit("_", 1)[0] + "_" + p.rsplit("_", 1)[1].split(".")[0]
                           for p in glob.glob(path.rsplit("_", 1)[0] + "_*")} - {path})
  for stem in stems:
    if os.path.exists(stem + ".json"):
      with open(stem + ".json") as f:
        res = json.load(f)
      if _normalized({k: res[k] for k in settings}) == settings:
        return res
  for stem in stems:
    if os.path.exists(stem + ".partial.pkl"):
      with open(stem + ".partial.pkl", "rb") as f:
        partial = pickle.load(f)
      if _normalized(partial["settings"]) == settings:
        break
  else:
    return None
  trainer = training.Trainer(cfg, agent_cfg, name)
  rows, walls = partial["rows"], partial["walls"]
  return dict(settings, steps=[trainer.env_steps_after(i + 1) for i in range(len(rows))],
              wall_s=walls[-1], first_interval_s=walls[0],
              curves={k: [r[k] for r in rows] for k in rows[0]}, path=path,
              unfinished=trainer.schedule.num_intervals)


def run(name, train_kw, agent_kw, seeds, cache_dir=CACHE, tag=""):
  """Train `seeds` seeds (vmapped); per evaluation the metrics; the final agent state kept.

  Returns:
    dict(settings, steps, wall_s, first_interval_s, curves {key: [I][S]}, path) where
    path + '.state.pkl' holds the final train state (numpy).
  """
  cfg, agent_cfg, settings, path = _settings_path(name, train_kw, agent_kw, seeds, cache_dir, tag)
  os.makedirs(cache_dir, exist_ok=True)
  if os.path.exists(path + ".json") and os.path.exists(path + ".state.pkl"):
    with open(path + ".json") as f:
      cached = json.load(f)
    if {k: cached[k] for k in settings} == settings:
      print(f"  reusing {path}.json", flush=True)
      return cached
  trainer = training.Trainer(cfg, agent_cfg, name)
  rows, walls, t_spent = [], [], 0.0
  t0 = time.time()
  if os.path.exists(path + ".partial.pkl"):
    with open(path + ".partial.pkl", "rb") as f:
      partial = pickle.load(f)
    assert partial["settings"] == settings
    rows, walls = partial["rows"], partial["walls"]
    t_spent = walls[-1]
    ts = jax.tree.map(lambda x: jax.device_put(x, trainer.sharding), partial["state"])
    print(f"  resuming {path} after {len(rows)} intervals", flush=True)
  else:
    ts = trainer.init(trainer.seed_keys())
  for i in range(len(rows), trainer.schedule.num_intervals):
    ts, metrics = trainer.run_interval(ts)
    metrics = training.to_host(metrics)
    walls.append(t_spent + time.time() - t0)
    rows.append({k: np.asarray(v, np.float64).tolist() for k, v in metrics.items()})
    step = trainer.env_steps_after(i + 1)
    extra = "  ".join(f"{k} {np.mean(metrics[k]):.3g}" for k in
                      ("switch_rate", "reverse_log_prob", "info_reward", "option_entropy", "kl", "alpha")
                      if k in metrics)
    print(f"  {name}{tag} step {step:>9,}  eval {np.round(metrics['eval_return'], 2)}  "
          f"[{extra}]  {walls[-1]:.0f} s", flush=True)
    tmp = path + ".partial.tmp"
    with open(tmp, "wb") as f:
      pickle.dump(dict(settings=settings, rows=rows, walls=walls, state=jax.device_get(ts)), f)
    os.replace(tmp, path + ".partial.pkl")
  steps = [trainer.env_steps_after(i + 1) for i in range(len(rows))]
  curves = {k: [r[k] for r in rows] for k in rows[0]}
  result = dict(settings, steps=steps, wall_s=walls[-1], first_interval_s=walls[0],
                curves=curves, path=path)
  with open(path + ".state.pkl", "wb") as f:
    pickle.dump(jax.device_get(ts), f)
  with open(path + ".json", "w") as f:
    json.dump(result, f)
  if os.path.exists(path + ".partial.pkl"):
    os.remove(path + ".partial.pkl")
  return result


# --- what each option does (four rooms) ------------------------------------------


def four_rooms_cells():
  """(row, col) of every state index of `envs.tabular.four_rooms()`, the grid shape, the goal."""
  layout = tabular._FOUR_ROOMS  # pylint: disable=protected-access
  cells = [(r, c) for r, row in enumerate(layout) for c, ch in enumerate(row) if ch != "#"]
  goal = [i for i, (r, c) in enumerate(cells) if layout[r][c] == "G"][0]
  return np.array(cells), (len(layout), len(layout[0])), goal


def rooms_of(cells):
  """Room 0–3 (top-left, top-right, bottom-left, bottom-right) of every cell.

  By the wall lines of the layout: column 6 splits left from right (its two doorways
  count as left), row 6 splits the left half and row 7 the right half (their doorways
  count as top).
  """
  r, c = cells[:, 0], cells[:, 1]
  right = c > 6
  # The horizontal wall is at row 6 on the left half and row 7 on the right half.
  bottom = np.where(right, r > 7, r > 6)
  return (2 * bottom + right).astype(int)


def option_rollouts(result, num_envs=ROLLOUT_ENVS, num_steps=ROLLOUT_STEPS, seed=123):
  """Stochastic rollouts of every seed's final policy: states, options, actions, dones [S, T, N]."""
  cfg = TrainConfig(**{k: v for k, v in result["train"].items()})
  agent_cfg = registry.get(result["agent"]).config_class(
      **{k: tuple(v) if isinstance(v, list) else v
         for k, v in result["agent_config"].items()})
  env = training.make_env(cfg)
  agent = registry.get(result["agent"]).make(agent_cfg, env.spec)
  with open(result["path"] + ".state.pkl", "rb") as f:
    ts = pickle.load(f)

  def one_seed(params, key):
    k_reset, k_steps = jax.random.split(key)
    states = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

    def step(carry, k):
      states, agent_carry = carry
      nxt, t = acting.env_step(env, agent, params, states, k, carry=agent_carry)
      return (nxt, acting.next_carry(agent, t.extras, t.done)), (
          jnp.argmax(t.obs, -1), t.extras["option"], t.action, t.done)

    _, out = jax.lax.scan(step, (states, agent.initial_carry(num_envs)),
                          jax.random.split(k_steps, num_steps))
    return out

  params = agent.policy_params(ts.agent)  # (the states cached before `info` have none)
  seeds = jax.tree.leaves(params)[0].shape[0]
  keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
  return [np.asarray(x) for x in jax.jit(jax.vmap(one_seed))(params, keys)]


def _mi(x, y, nx, ny):
  """Empirical mutual information I(x; y) and entropy H(y), in bits."""
  joint = np.zeros((nx, ny))
  np.add.at(joint, (x, y), 1.0)
  joint /= joint.sum()
  px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
  nz = joint > 0
  mi = float(np.sum(joint[nz] * np.log2(joint[nz] / (px @ py)[nz])))
  h = float(-np.sum(py[py > 0] * np.log2(py[py > 0])))
  return mi, h


def option_statistics(result, num_options):
  """Per seed: P(o | cell), usage, mean duration, P(a | o), room shares, MI figures."""
  s, o, a, done = option_rollouts(result)
  cells, _, _ = four_rooms_cells()
  room = rooms_of(cells)
  out = []
  for i in range(s.shape[0]):
    si, oi, ai, di = s[i], o[i], a[i], done[i]  # [T, N]
    n_states = len(cells)
    counts = np.zeros((n_states, num_options))
    np.add.at(counts, (si.ravel(), oi.ravel()), 1.0)
    visits = counts.sum(1, keepdims=True)
    p_o_given_s = np.where(visits > 0, counts / np.maximum(visits, 1), np.nan)
    # Durations: runs of one option, ended by a switch or by the episode's end.
    lengths = [[] for _ in range(num_options)]
    for n in range(si.shape[1]):
      cur, run = oi[0, n], 1
      for t in range(1, si.shape[0]):
        if di[t - 1, n] or oi[t, n] != cur:
          lengths[cur].append(run)
          cur, run = oi[t, n], 1
        else:
          run += 1
      lengths[cur].append(run)
    act = np.zeros((num_options, 4))
    np.add.at(act, (oi.ravel(), ai.ravel()), 1.0)
    rooms = np.zeros((num_options, 4))
    np.add.at(rooms, (oi.ravel(), room[si.ravel()]), 1.0)
    mi_room, h_room = _mi(oi.ravel(), room[si.ravel()], num_options, 4)
    mi_act, h_act = _mi(oi.ravel(), ai.ravel(), num_options, 4)
    out.append(dict(
        p_option_given_cell=p_o_given_s.tolist(),
        usage=(counts.sum(0) / counts.sum()).tolist(),
        mean_duration=[float(np.mean(l)) if l else 0.0 for l in lengths],
        action_given_option=(act / np.maximum(act.sum(1, keepdims=True), 1)).tolist(),
        room_given_option=(rooms / np.maximum(rooms.sum(1, keepdims=True), 1)).tolist(),
        mi_room_bits=mi_room, h_room_bits=h_room, mi_action_bits=mi_act, h_action_bits=h_act))
  return out


# --- report ----------------------------------------------------------------------


def plot(four_rooms, pendulum, out_png):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  shown = [(name, VARIANTS[name][1]) for name in four_rooms if VARIANTS[name][1] in MAP_TAGS]
  shown = shown or [(name, VARIANTS[name][1]) for name in four_rooms]
  seeds = len(four_rooms[shown[0][0]]["option_stats"])
  num_options = len(four_rooms[shown[0][0]]["option_stats"][0]["usage"])
  cells, shape, goal = four_rooms_cells()
  cols = max(num_options, 3)
  rows = 1 + len(shown) * seeds
  fig = plt.figure(figsize=(3.0 * cols, 2.9 * rows + 0.5), layout="constrained")
  gs = fig.add_gridspec(rows, cols)
  ax = fig.add_subplot(gs[0, 0])
  for name, res in four_rooms.items():
    ret = np.array(res["curves"]["eval_return"])
    line, = ax.plot(res["steps"], ret.mean(1), label=VARIANTS[name][1])
    ax.fill_between(res["steps"], ret.min(1), ret.max(1), alpha=0.2, color=line.get_color())
  ax.set(title="eval return (mean, min-max of seeds)", xlabel="env steps / seed")
  ax.title.set_fontsize(8)
  ax.legend(fontsize=7)
  ax = fig.add_subplot(gs[0, 1])
  for name, res in four_rooms.items():
    length = np.array(res["curves"]["eval_length"])
    ax.plot(res["steps"], length.mean(1), label=VARIANTS[name][1])
  ax.set(title="eval episode length (mean of seeds)", xlabel="env steps / seed")
  ax.title.set_fontsize(8)
  if pendulum:
    ax = fig.add_subplot(gs[0, 2])
    for name, res in pendulum.items():
      ret = np.array(res["curves"]["eval_return"])
      line, = ax.plot(res["steps"], ret.mean(1), label=f"{name} ({res['wall_s']:.0f} s)")
      ax.fill_between(res["steps"], ret.min(1), ret.max(1), alpha=0.2, color=line.get_color())
    ax.set(title="Brax inverted_pendulum: eval return", xlabel="env steps / seed")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
  arrows = {0: "↑", 1: "↓", 2: "→", 3: "←"}
  im = None
  for v, (name, tag) in enumerate(shown):
    for i, st in enumerate(four_rooms[name]["option_stats"]):
      p = np.array(st["p_option_given_cell"], dtype=float)
      for k in range(num_options):
        grid = np.full(shape, np.nan)
        grid[cells[:, 0], cells[:, 1]] = p[:, k]
        ax = fig.add_subplot(gs[1 + v * seeds + i, k])
        ax.imshow(np.ones(shape), cmap="Greys", vmin=0, vmax=3)  # walls: grey
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1)
        gr, gc = cells[goal]
        ax.text(gc, gr, "G", ha="center", va="center", color="red", fontsize=8)
        act = np.array(st["action_given_option"][k])
        top = int(np.argmax(act))
        ax.set_title(f"{tag} seed {i} option {k}: {100 * st['usage'][k]:.0f}% of steps,\n"
                     f"mean duration {st['mean_duration'][k]:.1f}, "
                     f"{arrows[top]} {100 * act[top]:.0f}%", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
  fig.colorbar(im, ax=fig.axes[-num_options:], shrink=0.6, label="P(option | cell)")
  fig.suptitle("options agent on four rooms: P(option | cell) of the final stochastic policy "
               f"({', '.join(t for _, t in shown)})", fontsize=10)
  fig.savefig(out_png, dpi=70)


def _fmt(xs, f="{:.2f}"):
  return ", ".join(f.format(x) for x in xs)


def markdown(payload):
  m = payload["machine"]
  lines = ["# Options agent benchmark", "",
           f"Command: `{payload['command']}`", "",
           f"Machine: 2-core Intel Xeon @ 2.00GHz VM, CPU only ({m['cpu']}, {m['cores']} "
           f"cores, jax {m['jax']}); the machine was shared with other jobs (load average "
           "above 10), so wall times are not idle figures.", "",
           "## Four rooms (tabular)", ""]
  for name, res in payload["four_rooms"].items():
    ret = np.array(res["curves"]["eval_return"])
    length = np.array(res["curves"]["eval_length"])
    lines += [f"### {name}", "",
              f"Loop: {res['train']}", "", f"Agent: {res['agent_config']}", "",
              f"Wall {res['wall_s']:.0f} s (first interval, with compilation, "
              f"{res['first_interval_s']:.0f} s). Final eval return per seed "
              f"{_fmt(ret[-1])}, mean of the last 5 evals {_fmt(ret[-5:].mean(0))}; "
              f"final eval episode length {_fmt(length[-1], '{:.1f}')} (100 = the time limit).",
              "",
              "| seed | usage per option | mean duration per option | top action of each option "
              "(P) | main room of each option (share) | I(o; room)/H(room) | I(o; a)/H(a) |",
              "|---|---|---|---|---|---|---|"]
    for i, st in enumerate(res["option_stats"]):
      acts = np.array(st["action_given_option"])
      rooms = np.array(st["room_given_option"])
      top_a = ", ".join(f"{MOVES[int(np.argmax(r))]} ({r.max():.2f})" for r in acts)
      top_r = ", ".join(f"{['TL', 'TR', 'BL', 'BR'][int(np.argmax(r))]} ({r.max():.2f})"
                        for r in rooms)
      lines.append(f"| {i} | {_fmt(st['usage'])} | {_fmt(st['mean_duration'], '{:.1f}')} | "
                   f"{top_a} | {top_r} | {st['mi_room_bits'] / st['h_room_bits']:.2f} | "
                   f"{st['mi_action_bits'] / st['h_action_bits']:.2f} |")
    lines.append("")
  if payload.get("pendulum"):
    lines += ["## Brax inverted_pendulum (backend 'positional'), options vs SAC", "",
              "| agent | seeds | env steps/seed | final eval return per seed | best eval per seed "
              "| wall s (first interval s) |", "|---|---|---|---|---|---|"]
    for name, res in payload["pendulum"].items():
      ret = np.array(res["curves"]["eval_return"])
      done = (f" (unfinished: {len(res['steps'])} of {res['unfinished']} evaluations)"
              if res.get("unfinished") else "")
      lines.append(f"| {name}{done} | {ret.shape[1]} | {res['steps'][-1]:,} | "
                   f"{_fmt(ret[-1], '{:.0f}')} | {_fmt(ret.max(0), '{:.0f}')} | "
                   f"{res['wall_s']:.0f} ({res['first_interval_s']:.0f}) |")
    for name, res in payload["pendulum"].items():
      lines += ["", f"* {name}: loop {res['train']}; agent {res['agent_config']}"]
    lines.append("")
  lines += ["Plot: options.png (top: learning curves of every variant; below: P(option | cell) "
            f"per seed and option for the variants {', '.join(MAP_TAGS)}, with each option's "
            "share of the steps, mean duration and most likely action).", ""]
  return "\n".join(lines)


def explore(tag, steps, seeds, settings, parser):
  """One four-rooms run of FOUR_ROOMS_AGENT updated by `settings` ('KEY=VALUE', JSON values)."""
  kw = {}
  for item in settings:
    key, sep, value = item.partition("=")
    if not sep:
      parser.error(f"argument --set: expected KEY=VALUE, got {item!r}")
    try:
      kw[key] = json.loads(value)
    except json.JSONDecodeError:
      parser.error(f"argument --set: {key}: not a JSON value: {value!r}")
  defaults = registry.get("options").config
  for key, value in kw.items():  # 4 -> 4.0 where the field is a float (one cache key)
    if isinstance(getattr(defaults, key, None), float) and type(value) is int:  # pylint: disable=unidiomatic-typecheck
      kw[key] = float(value)
  train = dict(FOUR_ROOMS_TRAIN, total_steps=steps)
  try:
    res = run("options", train, dict(FOUR_ROOMS_AGENT, **kw), seeds,
              "runs/bench_options_short", tag="_" + tag)
  except (TypeError, ValueError) as e:
    parser.error(f"argument --set: {e}")
  stats = option_statistics(res, FOUR_ROOMS_AGENT["num_options"])
  length, ret = np.array(res["curves"]["eval_length"]), np.array(res["curves"]["eval_return"])
  print(f"{tag} {kw}: {res['steps'][-1]:,} steps/seed, final eval length "
        f"{_fmt(length[-1], '{:.1f}')}, return {_fmt(ret[-1])}, wall {res['wall_s']:.0f} s")
  for i, st in enumerate(stats):
    print(f"  seed {i}: usage {_fmt(st['usage'])}, durations "
          f"{_fmt(st['mean_duration'], '{:.1f}')}, I(o;room)/H "
          f"{st['mi_room_bits'] / st['h_room_bits']:.2f}, I(o;a)/H "
          f"{st['mi_action_bits'] / st['h_action_bits']:.2f}", flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--tasks", nargs="+", default=["four_rooms", "inverted_pendulum"])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--variants", nargs="+", default=None, metavar="TAG",
                      help="four-rooms variants by tag (default: all): "
                           + " ".join(tag for _, tag in VARIANTS.values()))
  parser.add_argument("--explore", metavar="TAG", default=None,
                      help="one four-rooms run of --set settings (a short study); writes nothing")
  parser.add_argument("--steps", type=int, default=None, help="env steps per seed (--explore)")
  parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                      help="agent settings of --explore (JSON values)")
  parser.add_argument("--cached-pendulum", action="store_true",
                      help="report the inverted_pendulum runs from the cache as they are "
                           "(unfinished ones up to their last evaluation); train nothing there")
  parser.add_argument("--train-only", action="store_true",
                      help="train (or resume) and cache the runs of --tasks; write nothing")
  args = parser.parse_args(argv)
  tags = [tag for _, tag in VARIANTS.values()]
  bad = [t for t in args.variants or () if t not in tags]
  if bad:
    parser.error(f"argument --variants: unknown tag {bad[0]!r} (choose from {', '.join(tags)})")
  seeds = 2 if args.quick else args.seeds
  if args.explore:
    explore(args.explore, args.steps or FOUR_ROOMS_TRAIN["total_steps"], seeds, args.set,
            parser)
    return
  train = dict(FOUR_ROOMS_TRAIN)
  if args.quick:
    train.update(total_steps=4096, num_envs=8, eval_every=1024, num_eval_envs=4)
  cache = "runs/bench_options_quick" if args.quick else CACHE
  four_rooms, pendulum = {}, {}
  if "four_rooms" in args.tasks:
    for name, (kw, tag) in VARIANTS.items():
      if args.variants and tag not in args.variants:
        continue
      print(f"four_rooms, {name}", flush=True)
      res = run("options", train, dict(FOUR_ROOMS_AGENT, **kw), seeds, cache, tag="_" + tag)
      if args.train_only:
        continue
      res["option_stats"] = option_statistics(res, FOUR_ROOMS_AGENT["num_options"])
      four_rooms[name] = res
      for i, st in enumerate(res["option_stats"]):
        print(f"  seed {i}: usage {_fmt(st['usage'])}, durations "
              f"{_fmt(st['mean_duration'], '{:.1f}')}, I(o;room)/H {st['mi_room_bits'] / st['h_room_bits']:.2f}, "
              f"I(o;a)/H {st['mi_action_bits'] / st['h_action_bits']:.2f}", flush=True)
  if "inverted_pendulum" in args.tasks and not args.quick:
    for name, (loop_kw, agent_kw) in PENDULUM_AGENTS.items():
      print(f"inverted_pendulum, {name}", flush=True)
      if args.cached_pendulum:
        res = cached(name, dict(PENDULUM_TRAIN, **loop_kw), agent_kw, seeds, cache)
        if res is not None:
          pendulum[name] = res
      else:
        pendulum[name] = run(name, dict(PENDULUM_TRAIN, **loop_kw), agent_kw, seeds, cache)
  if args.train_only:
    return
  payload = dict(command=_common.command(), machine=_common.machine(),
                 four_rooms=four_rooms, pendulum=pendulum)
  text = markdown(payload)
  print(text)
  if args.quick:
    return
  _common.write_results("options", payload, text, keep_reading=True)
  plot(four_rooms, pendulum, os.path.join(RESULTS, "options.png"))


if __name__ == "__main__":
  main()
