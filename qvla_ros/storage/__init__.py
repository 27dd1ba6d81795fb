# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Files on disk that nothing may lose: atomic writes, folder swaps, locks, checked reads.

The bottom of the package: it imports nothing else of qvla_ros, and every layer that writes an
artifact (quant, models, data, sim, cli, ros) writes it through here.
"""
