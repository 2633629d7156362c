"""The policy losses under their former module name, kept for existing imports.

The losses live one family per module: `divergences` (reverse and forward KL,
temperature losses), `kl_regularized` (KL-regularised policy gradient, stable
EM), `mpo_ops` (MPO) and `virel_ops` (VIREL). New code calls them through the
flat API (`rlax_inf.mpo_loss`) or those modules; `from rlax_inf import
policy_losses` keeps working and gives the same objects.
"""

from rlax_inf.divergences import categorical_forward_kl_loss
from rlax_inf.divergences import categorical_reverse_kl_loss
from rlax_inf.divergences import entropy_temperature_loss
from rlax_inf.divergences import forward_kl_loss
from rlax_inf.divergences import kl_temperature_loss
from rlax_inf.divergences import marginal_forward_kl_loss
from rlax_inf.divergences import reverse_kl_loss
from rlax_inf.divergences import reverse_kl_score_loss
from rlax_inf.divergences import trajectory_forward_kl_loss
from rlax_inf.kl_regularized import kl_regularized_pg_loss
from rlax_inf.kl_regularized import stable_em_loss
from rlax_inf.kl_regularized import swap_prior
from rlax_inf.mpo_ops import lagrange_penalty
from rlax_inf.mpo_ops import mpo_e_step
from rlax_inf.mpo_ops import mpo_loss
from rlax_inf.mpo_ops import mpo_m_step_loss
from rlax_inf.mpo_ops import MPOExtra
from rlax_inf.mpo_ops import project_multiplier
from rlax_inf.virel_ops import virel_actor_loss
from rlax_inf.virel_ops import virel_critic_loss
from rlax_inf.virel_ops import virel_temperature
