"""`python -m tap_copernica`."""

from tap_copernica.tap import TapCopernica

TapCopernica.cli()
