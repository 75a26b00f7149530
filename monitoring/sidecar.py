"""The drift sidecar's entry point: a shell over ``vigie.monitoring.web``.

``vigie monitor serve`` runs the same thing from the installed package; this file keeps
``python monitoring/sidecar.py`` working from a checkout.
"""

from vigie.monitoring.web import main

if __name__ == "__main__":
    main()
