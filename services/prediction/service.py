"""The prediction service's BentoML entry point: a shell over ``vigie.serving.service``.

The definition lives in the installed package, so ``vigie serve`` runs it anywhere vigie
is installed; this file keeps ``bentoml build -f services/prediction/bentofile.yaml`` and
``bentoml serve services.prediction.service:VigiePrediction`` working from a checkout.
"""

from vigie.serving.service import VigiePrediction

__all__ = ["VigiePrediction"]
