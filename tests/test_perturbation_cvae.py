"""The CVAE-NB predictor learns perturbation effects from cells: on an additive screen its predicted profiles of
the perturbations it trained on are closer to the observed ones than no change is, on average and for every
perturbation whose effect stands well above the noise of a pseudobulk.

(For held-out doubles of seen singles it does not beat no change on average on this simulator: chapter 18
measures that, beside the additive baseline.)"""
import numpy as np

import genailab_core as gl
from genailab_core.data import InteractionMix, simulate_perturbations
from genailab_core.data.labels import TargetVocabulary
from genailab_core.data.perturbation_data import pseudobulk
from genailab_core.models.perturbation_baselines import NoChange
from genailab_core.models.perturbation_cvae import CVAEPredictor

ADDITIVE_ONLY = InteractionMix(additive=1.0, synergy=0.0, suppression=0.0, epistasis=0.0, neomorphic=0.0)


def test_cvae_nb_recovers_the_effects_it_trained_on_better_than_no_change(one_thread):
    screen = simulate_perturbations(n_genes=200, n_single=8, n_double=6, interactions=ADDITIVE_ONLY,
                                    cells_per_condition=100, n_control=400, effect_fraction=0.1, seed=3)
    bulk = pseudobulk(screen)
    vocabulary = TargetVocabulary.from_labels(screen.obs["condition"].astype(str))
    model = CVAEPredictor(vocabulary, n_latent=8, n_hidden=64, n_embed=16, epochs=30, seed=0, n_draws=1000)
    perturbations = [p for p in bulk.index if p != "control"]
    predicted = model.fit(bulk, screen).predict(perturbations)
    none = NoChange().fit(bulk).predict(perturbations)
    l2 = {name: np.array([gl.metrics.l2_distance(pred.loc[p], bulk.loc[p]) for p in perturbations])
          for name, pred in (("cvae", predicted), ("no change", none))}
    strong = l2["no change"] > 1.5 * np.median(l2["no change"])        # effects well above the pseudobulk noise
    assert strong.sum() >= 2 and (l2["cvae"][strong] < 0.7 * l2["no change"][strong]).all(), l2
    assert l2["cvae"].mean() < 0.85 * l2["no change"].mean(), l2
