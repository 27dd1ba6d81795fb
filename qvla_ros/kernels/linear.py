# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``MixedBitLinear``: an nn.Module holding one packed mixed-bit layer.

It takes exactly (weight, bits per row, quantizer spec) from the quant side, stores only the
packed tensors of :mod:`qvla_ros.kernels.format` as buffers (no dense copy), and dispatches
``forward`` to the Triton kernel on CUDA, the CPU path on CPU, or the float32 reference.
"""

import json
from pathlib import Path
from typing import Optional

from safetensors.torch import load_file, save_file
import torch
from torch import nn

from qvla_ros.core.spec import QuantSpec
from qvla_ros.kernels import cpu_ext
from qvla_ros.kernels.cpu import cpu_linear
from qvla_ros.kernels.dispatch import Backend, choose_backend
from qvla_ros.kernels.format import PackedLayout, reference_linear, STATE_KEYS
from qvla_ros.storage.atomic import write_file

FORMAT = 'qvla-mixedbit-linear'
VERSION = 1


class MixedBitLinear(nn.Module):
    """A linear layer whose rows are stored at 16, 8, 4, 3 or 2 bits, or pruned (0)."""

    def __init__(self, layout: PackedLayout, spec: QuantSpec = QuantSpec(),
                 backend: Backend = Backend.AUTO):
        super().__init__()
        layout.validate()
        self.in_features = layout.in_features
        self.out_features = layout.out_features
        self.group_size = layout.group_size
        self.spec = spec
        self.backend = Backend(backend)
        self._host_counts = layout.host_counts
        for key, value in layout.tensors().items():
            self.register_buffer(key, value)
        if layout.bias is None:
            self.bias = None

    @classmethod
    def from_float(cls, linear: nn.Linear, bits_per_row, spec: QuantSpec = QuantSpec(),
                   dense_dtype: torch.dtype = torch.float16,
                   backend: Backend = Backend.AUTO) -> 'MixedBitLinear':
        """Quantize and pack ``linear`` with ``bits_per_row`` (out_features,)."""
        layout = PackedLayout.from_float(linear.weight, bits_per_row, spec, linear.bias,
                                         dense_dtype)
        return cls(layout, spec, backend)

    def _apply(self, fn, *args, **kwargs):
        self._layout = None  # buffers move or change dtype: rebuild the view on next use
        return super()._apply(fn, *args, **kwargs)

    @property
    def layout(self) -> PackedLayout:
        """The packed tensors of this layer (views of its buffers, cached)."""
        if getattr(self, '_layout', None) is None:
            self._layout = self._make_layout()
        return self._layout

    def _make_layout(self) -> PackedLayout:
        return PackedLayout(self.in_features, self.out_features, self.group_size,
                            bias=self.bias, host_counts=self._host_counts,
                            **{k: getattr(self, k) for k in STATE_KEYS})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x (..., in_features) -> (..., out_features)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f'MixedBitLinear expects inputs with {self.in_features} features, '
                             f'got shape {tuple(x.shape)}')
        backend = choose_backend(x.device.type, self.backend)
        if backend is Backend.TRITON:
            from qvla_ros.kernels.triton_auto import auto_linear
            return auto_linear(x, self.layout)
        if backend is Backend.CPU:
            return cpu_linear(x, self.layout)
        return reference_linear(x, self.layout)

    def forward_codes(self, codes: torch.Tensor, scale: torch.Tensor,
                      out_dtype: torch.dtype) -> torch.Tensor:
        """Return the layer's output for per-token codes (..., K) with scales (...,).

        The input is codes x scale (``token_codes``); on CUDA the int8 codes go straight into
        int8 tensor-core MMAs (W4A8) where the layer's scale groups allow, elsewhere they are
        dequantized to ``out_dtype`` first.
        """
        if choose_backend(codes.device.type, self.backend) is Backend.TRITON:
            from qvla_ros.kernels.triton_mixed import int8_supported, mixed_linear
            if int8_supported(self.group_size, self.in_features):
                return mixed_linear(codes.to(torch.int8), self.layout, x_scale=scale,
                                    out_dtype=out_dtype)
        return self.forward((codes.float() * scale.float()[..., None]).to(out_dtype))

    def dequantize(self) -> torch.Tensor:
        """Return the float32 (out, in) weight this layer computes with (the reference)."""
        return self.layout.dequantize()

    def packed_bytes(self) -> int:
        """Return every byte held: packed weights, scales, zeros, indices and bias."""
        return self.layout.packed_bytes()

    def bits_per_row(self) -> torch.Tensor:
        """Return uint8 (out_features,) bits of each row, 0 for pruned rows."""
        return self.layout.bits_per_row()

    def extra_repr(self) -> str:
        """Summarise sizes and rows per bit-width for print(module)."""
        counts = dict(zip((16, 8, 4, 3, 2), self._host_counts))
        return (f'in_features={self.in_features}, out_features={self.out_features}, '
                f'rows_per_bits={counts}, bias={self.bias is not None}')

    def metadata(self) -> dict:
        """Return the JSON-ready description saved beside the tensors."""
        return {'format': FORMAT, 'version': VERSION, 'in_features': self.in_features,
                'out_features': self.out_features, 'group_size': self.group_size,
                'spec': self.spec.to_dict()}

    def save(self, path: Path) -> None:
        """Write the layer to a safetensors file, atomically (temp file, then rename)."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.layout.tensors().items()}
        meta = {'qvla': json.dumps(self.metadata())}
        write_file(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: Path, device: Optional[str] = None,
             backend: Backend = Backend.AUTO) -> 'MixedBitLinear':
        """Read a layer written by :meth:`save`, validating its format and every tensor."""
        from safetensors import safe_open
        with safe_open(str(path), framework='pt') as handle:
            raw = (handle.metadata() or {}).get('qvla')
        if raw is None:
            raise ValueError(f'{path} has no qvla metadata; expected a file written by '
                             'MixedBitLinear.save')
        meta = json.loads(raw)
        if meta.get('format') != FORMAT or meta.get('version') != VERSION:
            raise ValueError(f'{path}: expected format {FORMAT!r} version {VERSION}, got '
                             f'{meta.get("format")!r} version {meta.get("version")}')
        tensors = load_file(str(path), device=device or 'cpu')
        layout = PackedLayout.from_tensors(tensors, meta['in_features'],
                                           meta['out_features'], meta['group_size'])
        return cls(layout, QuantSpec.from_dict(meta['spec']), backend)


def warm_up(module: nn.Module) -> str:
    """Build what the packed layers of ``module`` need before their first call; return status.

    The CPU extension compiles on first use (about a minute); a node calls this while it is
    being configured so that its first control tick does not stall on the compiler.
    """
    for layer in module.modules():
        if (isinstance(layer, MixedBitLinear)
                and choose_backend(layer.perm.device.type, layer.backend) is Backend.CPU):
            cpu_ext.load()
            return f'cpu extension: {cpu_ext.status()}'
    return 'nothing to build'
