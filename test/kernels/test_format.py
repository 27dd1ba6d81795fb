# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Packed layout: bit packing, real byte counts, pruning, validation and the module."""

import pytest
import torch

from qvla_ros.core.primitives import fake_quant_rows
from qvla_ros.core.spec import QuantSpec
from qvla_ros.kernels import cpu_ext
from qvla_ros.kernels.cpu import cpu_linear
from qvla_ros.kernels.dispatch import Backend, choose_backend
from qvla_ros.kernels.format import KERNEL_SIZES, PackedLayout, reference_linear
from qvla_ros.kernels.linear import MixedBitLinear
from qvla_ros.kernels.packing import pack_rows, unpack_rows, words_per_row


@pytest.mark.parametrize('bits', [2, 3, 4, 8])
@pytest.mark.parametrize('k', [1, 9, 31, 32, 33, 100])
def test_pack_roundtrip(bits, k):
    codes = torch.randint(0, 2 ** bits, (7, k), dtype=torch.uint8)
    words = pack_rows(codes, bits)
    assert words.dtype == torch.int32 and words.shape == (7, words_per_row(k, bits))
    assert torch.equal(unpack_rows(words, bits, k), codes)


def test_words_per_row_densities():
    assert [words_per_row(320, b) for b in (2, 3, 4, 8)] == [20, 32, 40, 80]


def _mix(n, seed=0):
    p = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    return torch.where(p < 0.1, 8, torch.where(p < 0.6, 4, torch.where(
        p < 0.75, 3, torch.where(p < 0.85, 2, torch.where(p < 0.95, 16, 0)))))


@pytest.mark.parametrize('spec', [QuantSpec(), QuantSpec(group_size=32),
                                  QuantSpec(scheme='symmetric')])
def test_layout_matches_fake_quant(spec):
    w, bits = torch.randn(90, 64), _mix(90)
    layout = PackedLayout.from_float(w, bits, spec)
    layout.validate()
    ref = fake_quant_rows(w, bits, spec)
    # fp16 scales and fp16 16-bit rows are the only difference from fp32 fake quant.
    assert torch.allclose(layout.dequantize(), ref, atol=2e-3, rtol=2e-3)
    assert torch.equal(layout.bits_per_row(), bits.to(torch.uint8))


def test_real_bytes_two_bit_is_two_bits_and_pruned_is_gone():
    k = 256
    two = PackedLayout.from_float(torch.randn(64, k), torch.full((64,), 2))
    assert two.qweight.numel() * 4 == 64 * k * 2 // 8
    half = PackedLayout.from_float(torch.randn(64, k), torch.tensor([2, 0] * 32))
    assert half.qweight.numel() * 4 == 32 * k * 2 // 8 and half.perm.numel() == 32
    # scales + zeros (fp16) + perm (int32) + counts are all the overhead there is.
    assert half.packed_bytes() == 32 * k // 4 + 32 * (2 + 2 + 4) + 5 * 4


def test_pruned_rows_output_bias_or_zero():
    lin = torch.nn.Linear(32, 8)
    bits = torch.tensor([0, 4] * 4)
    mod = MixedBitLinear.from_float(lin, bits, dense_dtype=torch.float32)
    y = mod(torch.randn(3, 32))
    assert torch.allclose(y[:, 0], lin.bias[0].expand(3))
    lin.bias = None
    assert torch.equal(MixedBitLinear.from_float(lin, bits)(torch.randn(3, 32))[:, 0],
                       torch.zeros(3))


@pytest.mark.parametrize('use_ext', [True, False], ids=['extension', 'torch'])
@pytest.mark.parametrize('m', [1, 7, 64])
@pytest.mark.parametrize('gs', [None, 32])
@pytest.mark.parametrize('dense', [torch.float16, torch.bfloat16])
def test_cpu_path_matches_reference(m, gs, use_ext, dense):
    if use_ext and cpu_ext.load() is None:
        pytest.fail(f'the CPU extension did not build: {cpu_ext.status()}')
    # K = 104 is not a whole number of 2-, 3- or 4-bit words, and per-row GEMV words come in
    # 16-, 8- and single-word steps (8-bit rows: 26 = 16 + 8 + 2): every tail is exercised.
    layout = PackedLayout.from_float(torch.randn(70, 104), _mix(70, 1),
                                     QuantSpec(group_size=gs and 8), bias=torch.randn(70),
                                     dense_dtype=dense)
    x = torch.randn(m, 104)
    ref = reference_linear(x, layout)
    out = cpu_linear(x, layout, compute_dtype=torch.float32, use_ext=use_ext)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4)
    bf = cpu_linear(x, layout, compute_dtype=torch.bfloat16, use_ext=use_ext)
    assert ((bf - ref).abs().max() / ref.abs().max()) < 2e-2
    # Large M through the per-group chunks as well as the whole-layer decode.
    chunked = cpu_linear(x, layout, compute_dtype=torch.bfloat16, chunk_elements=16 * 104,
                         use_ext=use_ext)
    assert ((chunked - ref).abs().max() / ref.abs().max()) < 2e-2
    pruned = layout.bits_per_row() == 0
    assert pruned.any()
    assert torch.allclose(bf[:, pruned], layout.bias[pruned].float().expand(m, -1))


@pytest.mark.parametrize('flags, dtype', [
    ({'avx2', 'avx512_bf16'}, torch.bfloat16), ({'avx2', 'amx_bf16'}, torch.bfloat16),
    ({'avx2', 'fma'}, torch.float32), (set(), torch.float32)])
def test_the_cpu_gemm_dtype_is_bf16_only_with_native_bf16_units(monkeypatch, flags, dtype):
    from qvla_ros.kernels import cpu
    monkeypatch.setattr(cpu, 'cpu_flags', lambda: frozenset(flags))
    cpu.gemm_dtype.cache_clear()
    try:
        assert cpu.gemm_dtype() == dtype
    finally:
        cpu.gemm_dtype.cache_clear()


def test_module_roundtrip_and_validation(tmp_path):
    lin = torch.nn.Linear(64, 40)
    mod = MixedBitLinear.from_float(lin, _mix(40, 2))
    path = tmp_path / 'layer.safetensors'
    mod.save(path)
    back = MixedBitLinear.load(path)
    x = torch.randn(5, 64)
    assert torch.equal(mod(x), back(x))
    assert back.packed_bytes() == mod.packed_bytes()
    assert not list(tmp_path.glob('*.tmp'))
    tensors = mod.layout.tensors()
    tensors['perm'] = tensors['perm'][:-1]
    with pytest.raises(ValueError, match='perm must be int32'):
        PackedLayout.from_tensors(tensors, 64, 40, 64)
    with pytest.raises(ValueError, match='missing'):
        PackedLayout.from_tensors({}, 64, 40, 64)
    with pytest.raises(ValueError, match='expects inputs with 64 features'):
        mod(torch.randn(2, 63))
    with pytest.raises(ValueError, match='one per output row'):
        MixedBitLinear.from_float(lin, torch.tensor([4, 4]))


def test_dispatch_choice():
    assert choose_backend('cpu') is Backend.CPU
    assert choose_backend('cpu', Backend.REFERENCE) is Backend.REFERENCE
    assert choose_backend('cuda') is Backend.TRITON
    assert choose_backend('meta') is Backend.REFERENCE


def test_warm_up_builds_the_cpu_extension_only_when_a_packed_layer_needs_it():
    from qvla_ros.kernels.linear import warm_up
    assert warm_up(torch.nn.Sequential(torch.nn.Linear(4, 4))) == 'nothing to build'
    ref = MixedBitLinear.from_float(torch.nn.Linear(32, 8), torch.full((8,), 4),
                                    backend=Backend.REFERENCE)
    assert warm_up(torch.nn.Sequential(ref)) == 'nothing to build'
    packed = MixedBitLinear.from_float(torch.nn.Linear(32, 8), torch.full((8,), 4))
    status = warm_up(torch.nn.Sequential(torch.nn.ReLU(), packed))
    assert status.startswith('cpu extension: ') and status != 'cpu extension: not built yet'


def test_output_buffer_prefills_pruned_columns_and_never_aliases_the_bias():
    bits = torch.tensor([4, 0, 8, 0])
    bias = torch.randn(4)
    pruned = PackedLayout.from_float(torch.randn(4, 16), bits, bias=bias)
    stored = pruned.bias.clone()  # in the dense dtype
    for m, dtype in ((1, torch.float16), (3, torch.float32)):
        out = pruned.output_buffer(m, dtype, 'cpu')
        assert out.shape == (m, 4) and torch.equal(out, stored.to(dtype).expand(m, 4))
        out.fill_(7.0)
        assert torch.equal(pruned.bias, stored), 'output buffer is a view of the bias'
    no_bias = PackedLayout.from_float(torch.randn(4, 16), bits)
    assert torch.equal(no_bias.output_buffer(2, torch.float16, 'cpu'), torch.zeros(2, 4).half())
    kept = PackedLayout.from_float(torch.randn(4, 16), torch.tensor([4, 2, 8, 16]))
    assert kept.output_buffer(2, torch.float32, 'cpu').shape == (2, 4)
    # rows per group (16, 8, 4, 3, 2), words per row of the 8-, 4-, 3- and 2-bit groups, then
    # (first packed row, first quantized row, first word) of each quantized group
    assert kept.kernel_sizes == (1, 1, 1, 0, 1, 4, 2, 2, 1,
                                 1, 0, 0, 2, 1, 4, 3, 2, 6, 3, 2, 6)
    sizes = dict(zip(KERNEL_SIZES, kept.kernel_sizes))
    for g in kept.groups():  # the kernels' offsets are the reference layout's
        if g.bits != 16:
            assert (sizes[f'r{g.bits}'], sizes[f'q{g.bits}'], sizes[f'w{g.bits}'],
                    sizes[f'wpr{g.bits}'], sizes[f'n{g.bits}']) == (
                        g.row_start, g.qrow_start, g.word_start, g.words_per_row, g.rows)


@pytest.mark.parametrize('group_size', [None, 16])
def test_the_allocators_row_bytes_add_up_to_the_packed_layer(group_size):
    from qvla_ros.kernels.format import layer_bytes, row_bytes
    torch.manual_seed(0)
    w, bias = torch.randn(40, 48), torch.randn(40)
    bits = torch.tensor([16, 8, 4, 3, 2, 0, 4, 8] * 5)
    layout = PackedLayout.from_float(w, bits, QuantSpec(group_size=group_size), bias)
    rows = sum(row_bytes(int(b), 48, group_size) for b in bits)
    assert layout.packed_bytes() == rows + 5 * 4 + 40 * 2  # + counts (int32 x 5) + fp16 bias
    assert layer_bytes(bits, 48, group_size) == layout.packed_bytes() - 40 * 2
