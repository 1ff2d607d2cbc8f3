"""Energies learned inside probabilistic programs.

Three routes, one model convention (an energy registered with
:func:`energy_module`, a site drawn with :func:`ebm_sample`):

* **SVI** (:mod:`ebmppl.models.sites`): NumPyro's own ``SVI`` learns the
  energy's θ with the model's other parameters; :func:`ebm_sample` supplies
  the gradient of the missing ``-log Z_θ`` from persistent negative chains.
* **Monte-Carlo EM** (:mod:`ebmppl.models.mcem`): posterior chains over the
  latents as the positive phase of ebmppl's one trainer, prior chains as the
  negative phase, driven by :func:`ebmppl.fit`.
* **Bayesian θ** (:mod:`ebmppl.models.exchange`): the exchange algorithm, a
  NumPyro MCMC kernel for ``θ ~ prior; x ~ EBM(θ)``.

Latent discrete energy sites too large to enumerate are moved inside NumPyro's
``HMCGibbs`` by ebmppl's discrete kernels (:func:`discrete_gibbs_fn`).

See the guide page "Learning energies inside models".
"""

from __future__ import annotations

from ebmppl.models.discrete_gibbs import discrete_gibbs_fn
from ebmppl.models.exchange import ApproximateExchangeWarning, Exchange, ExchangeState
from ebmppl.models.mcem import ModelDataCheck, PosteriorChains, PosteriorState, mcem, posterior_inference_data
from ebmppl.models.sites import chain_report, ebm_sample, energy_module, prior_chains, site_energy

__all__ = ["energy_module", "ebm_sample", "prior_chains", "chain_report", "site_energy", "Exchange", "ExchangeState",
           "ApproximateExchangeWarning", "mcem", "PosteriorChains", "PosteriorState", "ModelDataCheck",
           "posterior_inference_data", "discrete_gibbs_fn"]

