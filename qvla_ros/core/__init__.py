# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The bottom of the package: the types every layer shares and the vocabulary of quantization.

Observation, ActionChunk and the Policy protocol (``types``), the per-row quantizer spec and
bit-widths (``spec``), the quantizer arithmetic (``primitives``) and the LayerQuant result
every method produces (``layer_quant``). It imports nothing else of qvla_ros.
"""
