"""rlax_inf: reinforcement learning as inference in JAX.

Pure, jittable functions for soft Bellman backups, exact control-as-inference
message passing on tabular MDPs, importance-weighted bounds and policy
objectives as divergences. Every public name is re-exported here flat.
"""

from rlax_inf.bellman import regularized_expected_sarsa
from rlax_inf.bellman import soft_lambda_returns
from rlax_inf.bellman import soft_n_step_returns
from rlax_inf.bellman import soft_q_learning
from rlax_inf.bellman import soft_retrace
from rlax_inf.bellman import soft_retrace_targets
from rlax_inf.bellman import soft_td_target
from rlax_inf.distributions import decoupled_gaussian_kl
from rlax_inf.distributions import decoupled_gaussian_log_prob
from rlax_inf.distributions import kl_divergence
from rlax_inf.distributions import tanh_log_det_jacobian
from rlax_inf.distributions import TanhGaussian
from rlax_inf.divergences import categorical_forward_kl_loss
from rlax_inf.divergences import categorical_reverse_kl_loss
from rlax_inf.divergences import entropy_temperature_loss
from rlax_inf.divergences import forward_kl_loss
from rlax_inf.divergences import kl_temperature_loss
from rlax_inf.divergences import marginal_forward_kl_loss
from rlax_inf.divergences import reverse_kl_loss
from rlax_inf.divergences import reverse_kl_score_loss
from rlax_inf.divergences import trajectory_forward_kl_loss
from rlax_inf.estimators import effective_sample_size
from rlax_inf.estimators import elbo
from rlax_inf.estimators import gradient_variance
from rlax_inf.estimators import iwae_bound
from rlax_inf.estimators import leave_one_out_baseline
from rlax_inf.estimators import pathwise_gradient
from rlax_inf.estimators import score_function_gradient
from rlax_inf.estimators import score_function_surrogate
from rlax_inf.estimators import snis_weights
from rlax_inf.estimators import trajectory_log_weights
from rlax_inf.irl import IRLFit
from rlax_inf.irl import linear_rewards
from rlax_inf.irl import maxent_irl_fit
from rlax_inf.irl import maxent_irl_gradient
from rlax_inf.irl import maxent_irl_loss
from rlax_inf.irl import soft_optimal_log_policy
from rlax_inf.kl_regularized import kl_regularized_pg_loss
from rlax_inf.kl_regularized import stable_em_loss
from rlax_inf.kl_regularized import swap_prior
from rlax_inf.messages import backward_messages
from rlax_inf.messages import forward_messages
from rlax_inf.messages import log_partition
from rlax_inf.messages import policy_evaluation
from rlax_inf.messages import soft_value_iteration
from rlax_inf.messages import state_action_marginals
from rlax_inf.messages import validate_mdp
from rlax_inf.messages import value_iteration
from rlax_inf.mpo_ops import lagrange_penalty
from rlax_inf.mpo_ops import mpo_e_step
from rlax_inf.mpo_ops import mpo_loss
from rlax_inf.mpo_ops import mpo_m_step_loss
from rlax_inf.mpo_ops import MPOExtra
from rlax_inf.mpo_ops import project_multiplier
from rlax_inf.options import option_chain_log_probs
from rlax_inf.options import option_posterior
from rlax_inf.options import option_posterior_chain
from rlax_inf.options import option_transition_log_probs
from rlax_inf.options import OptionStep
from rlax_inf.options import options_augmented_rewards
from rlax_inf.options import options_bound_surrogate
from rlax_inf.options import options_elbo
from rlax_inf.options import options_iwae_surrogate
from rlax_inf.options import options_joint_log_prob
from rlax_inf.options import options_log_likelihood
from rlax_inf.options import sample_option
from rlax_inf.options import sample_option_and_action
from rlax_inf.options import sample_option_chain
from rlax_inf.options import sample_options
from rlax_inf.rollout_gradients import alpha_order_gradient
from rlax_inf.rollout_gradients import first_order_gradient
from rlax_inf.rollout_gradients import mix_alpha
from rlax_inf.rollout_gradients import MixedGradient
from rlax_inf.rollout_gradients import rollout_return
from rlax_inf.rollout_gradients import RolloutGradient
from rlax_inf.rollout_gradients import zeroth_order_gradient
from rlax_inf.values import boltzmann_log_policy
from rlax_inf.values import entropy
from rlax_inf.values import kl
from rlax_inf.values import regularized_value
from rlax_inf.values import soft_value
from rlax_inf.virel_ops import virel_actor_loss
from rlax_inf.virel_ops import virel_critic_loss
from rlax_inf.virel_ops import virel_temperature

__version__ = "0.1.0"
