# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Behaviour cloning of qvla-ref on a rollout dataset: L1 or MSE on normalized action chunks.

Image augmentation (random crop and colour jitter), AdamW with linear warm-up and cosine
decay, bf16 autocast on CPUs with native bf16 units (``uses_bf16``), periodic validation on
held-out episodes. Optional helpers for training from scratch: fixed 2D sine-cosine
initialisation of the vision position embeddings (``pos_init='sincos'``) and an auxiliary
colour-localization loss (``aux_weight``, with ``aux_counterfactual`` extra frames per batch
read with other samples' instructions; see ``aux_targets``) through a training-only head.
``init`` warm-starts from a float checkpoint of the same config and keeps its action and
proprio normalization (fine-tuning on a larger dataset without re-learning from scratch); a
config that only adds proprio inputs widens it (``widen_proprio``: the new inputs start with
zero weight, so the policy starts unchanged).
Deterministic given the seed: the batch of step s is drawn from a generator seeded by
(seed, s), so a run resumed from its last saved state (every ``save_every`` steps, written
atomically, no pickle) continues exactly as if it had never stopped.
"""

from dataclasses import asdict, replace
import json
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
from safetensors.torch import save_file
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from qvla_ros.data.rollouts import episodes, read_episode, read_info
from qvla_ros.kernels.cpu import gemm_dtype
from qvla_ros.models import aux_targets
from qvla_ros.models.checkpoint import save_policy
from qvla_ros.models.image_store import EpisodeImages
from qvla_ros.models.normalization import ActionNormalizer
from qvla_ros.models.recipes import TrainConfig
from qvla_ros.models.reference import build_reference, RefConfig, sincos_2d, tokenize
from qvla_ros.models.warm_start import add_cameras, warm_start, widen_proprio
from qvla_ros.storage.atomic import write_folder, write_json
from qvla_ros.storage.errors import read_json_object, read_safetensors

STATE = 'train_state'
LOSSES = {'l1': F.l1_loss, 'mse': F.mse_loss}  # keys: recipes.LOSS_NAMES


class ChunkDataset:
    """Every step of every episode as (images, instruction tokens, proprio, action chunk).

    A config with named cameras reads those cameras' frames, (B, N, 3, S, S) per batch; one
    without reads the dataset's first camera, (B, 3, S, S). Frames stay on disk until a batch
    needs them (:class:`~qvla_ros.models.image_store.EpisodeImages`).
    """

    def __init__(self, root: Path, config: RefConfig, entries: List[dict],
                 normalizer: ActionNormalizer, aux: bool = False):
        available = read_info(root).cameras
        missing = [c for c in config.cameras if c not in available]
        if missing:
            raise ValueError(f'{root}: the model reads cameras {list(config.cameras)}; the '
                             f'dataset has {list(available)}')
        self.cameras = config.cameras or available[:1]
        self.stacked = bool(config.cameras)  # (B, N, 3, S, S) batches, else (B, 3, S, S)
        tokens, masks, proprio, chunks, aux_vals, mentions = [], [], [], [], [], []
        h = config.chunk_size
        for entry in entries:
            data = read_episode(root, entry)
            acts = data['action']  # (T, A)
            t = acts.shape[0]
            ids, mask = tokenize(entry['instruction'], config.vocab, config.max_text_tokens)
            for i in range(t):
                idx = np.minimum(np.arange(i, i + h), t - 1)  # pad with the last action
                chunks.append(normalizer.normalize(acts[idx]))
            if aux:  # colour centroids in the first camera's frames
                aux_vals.append(aux_targets.centroids(data[f'image.{self.cameras[0]}']))
                ment = aux_targets.mention_indices(entry['instruction'])
                mentions.append(np.broadcast_to(ment, (t, aux_targets.MENTIONS)))
            if data['proprio'].shape[1] < config.proprio_dim:
                raise ValueError(f'{root}: the model takes {config.proprio_dim} proprio values, '
                                 f'the dataset has {data["proprio"].shape[1]}')
            proprio.append(data['proprio'][:, :config.proprio_dim])
            tokens.append(ids.expand(t, -1))
            masks.append(mask.expand(t, -1))
        if not chunks:
            raise ValueError(f'{root}: no samples in the selected episodes')
        self.images = EpisodeImages(root, entries, self.cameras)
        self.tokens, self.masks = torch.cat(tokens), torch.cat(masks)
        self.proprio = torch.from_numpy(np.concatenate(proprio)).float()
        self.chunks = torch.from_numpy(np.stack(chunks)).float()  # (N, H, A)
        self.size = config.image_size
        self.uv = self.present = self.mentions = None
        if aux:  # colour centroids (N, C, 2), (N, C) and mentions (N, MENTIONS) per sample
            self.uv = torch.from_numpy(np.concatenate([v for v, _ in aux_vals]))
            self.present = torch.from_numpy(np.concatenate([p for _, p in aux_vals]))
            self.mentions = torch.from_numpy(np.concatenate(mentions))

    def __len__(self) -> int:
        return self.chunks.shape[0]

    def batch(self, idx: torch.Tensor, gen: Optional[torch.Generator], cfg: TrainConfig,
              text_idx: Optional[torch.Tensor] = None):
        """Return (batch dict, normalized targets) for sample indices ``idx``.

        ``text_idx`` takes the instruction of other samples (counterfactual aux samples).
        """
        frames = self.images.get(idx)  # (B, N, H, W, 3) uint8
        b, n = frames.shape[:2]
        img = frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0  # (B N, 3, H, W)
        img = augment(img, gen, cfg, self.size) if gen is not None else F.interpolate(
            img, size=(self.size, self.size), mode='bilinear', align_corners=False)
        img = img.unflatten(0, (b, n)) if self.stacked else img
        text = idx if text_idx is None else text_idx
        return ({'image': img, 'tokens': self.tokens[text], 'mask': self.masks[text],
                 'proprio': self.proprio[idx]}, self.chunks[idx])

    def aux_targets(self, idx: torch.Tensor, text_idx: torch.Tensor):
        """Return aux (values (B, K), mask (B, K)) of frames ``idx`` read with ``text_idx``."""
        return aux_targets.compose(self.uv[idx], self.present[idx], self.mentions[text_idx])


def augment(img: torch.Tensor, gen: torch.Generator, cfg: TrainConfig,
            size: int) -> torch.Tensor:
    """Random crop (area ``crop_scale``) resized to ``size``, then colour jitter; (B, 3, S, S).

    With ``crop_scale`` < 1 the policy sees zoomed-in views in training but full frames at
    inference, which hurts a fixed-camera policy, so the recipes default to 1.0 (jitter only).
    """
    b, _, h, w = img.shape
    side = math.sqrt(cfg.crop_scale)
    ch, cw = int(h * side), int(w * side)
    out = []
    for i in range(b):
        y = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        out.append(img[i:i + 1, :, y:y + ch, x:x + cw])
    img = F.interpolate(torch.cat(out), size=(size, size), mode='bilinear', align_corners=False)
    j = cfg.jitter
    bright = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * j
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * j
    sat = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * j
    img = img * bright
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * contrast + mean
    gray = img.mean(dim=1, keepdim=True)
    return ((img - gray) * sat + gray).clamp(0, 1)


def _split(root: Path, val_fraction: float):
    entries = episodes(root)
    n_val = int(round(val_fraction * len(entries)))
    if len(entries) - n_val < 1:
        raise ValueError(f'{root} has {len(entries)} episodes: not enough to train')
    return entries[:len(entries) - n_val], entries[len(entries) - n_val:]


def _fit_normalizer(root: Path, entries: List[dict], action_dim: int) -> ActionNormalizer:
    acts = np.concatenate([read_episode(root, e)['action'] for e in entries])
    mask = [True] * action_dim
    if action_dim == 7:
        mask[-1] = False  # the gripper stays in its own units, as upstream OpenVLA does
    return ActionNormalizer.fit(acts, mask)


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def f(step):
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return f


def _save_state(out: Path, modules: Dict[str, torch.nn.Module], opt, step: int,
                log: list) -> None:
    tensors = {f'{prefix}.{k}': v.detach().contiguous()
               for prefix, module in modules.items() for k, v in module.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, st in opt_state['state'].items():
        for name, v in st.items():
            tensors[f'opt.{idx}.{name}'] = torch.as_tensor(v).contiguous()
    meta = {'step': step, 'param_groups': opt_state['param_groups'], 'log': log}
    write_folder(out / STATE, {'tensors.safetensors': lambda p: save_file(tensors, str(p)),
                               'meta.json': lambda p: p.write_text(json.dumps(meta))})


def _load_state(out: Path, modules: Dict[str, torch.nn.Module], opt):
    state = out / STATE
    meta = read_json_object(state / 'meta.json', 'the training state to resume from')
    tensors = read_safetensors(state / 'tensors.safetensors')
    for prefix, module in modules.items():
        n = len(prefix) + 1
        module.load_state_dict({k[n:]: v for k, v in tensors.items()
                                if k.startswith(prefix + '.')})
    opt_state = {'state': {}, 'param_groups': meta['param_groups']}
    for k, v in tensors.items():
        if k.startswith('opt.'):
            _, idx, name = k.split('.', 2)
            opt_state['state'].setdefault(int(idx), {})[name] = v
    opt.load_state_dict(opt_state)
    return meta['step'], meta['log']


def uses_bf16(cfg: TrainConfig) -> bool:
    """Return whether training autocasts to bf16: asked for, and native on this CPU.

    Without native bf16 units torch emulates bf16, and a training step of qvla-ref small
    became about 20 times slower than in float32.
    """
    return cfg.bf16 and gemm_dtype() == torch.bfloat16


def train(root: Path, config: RefConfig, out: Path, cfg: TrainConfig,
          progress: bool = False) -> Dict:
    """Train qvla-ref on the dataset at ``root``; write the checkpoint to ``out``."""
    root, out = Path(root), Path(out)
    train_eps, val_eps = _split(root, cfg.val_fraction)
    init = warm_start(cfg.init, config) if cfg.init else None
    normalizer = (init.normalizer if init is not None
                  else _fit_normalizer(root, train_eps, config.action_dim))
    data = ChunkDataset(root, config, train_eps, normalizer, aux=cfg.aux_weight > 0)
    val = ChunkDataset(root, config, val_eps, normalizer) if val_eps else None
    if init is not None:  # keep its normalization: its head was fitted in those units
        model = widen_proprio(init, replace(config, cameras=init.config.cameras), data.proprio,
                              cfg.widen_init, cfg.seed)
        model = add_cameras(model, config, cfg.seed).train()
    else:
        model = build_reference(config, cfg.seed, normalizer).train()
        model.proprio_mean.copy_(data.proprio.mean(0))
        model.proprio_std.copy_(data.proprio.std(0).clamp_min(1e-3))
    if cfg.pos_init == 'sincos':
        emb = model.vision.embeddings.position_embedding.weight
        with torch.no_grad():
            emb.copy_(sincos_2d(config.image_size // config.patch_size, config.vision_hidden))
    modules = {'model': model}
    if cfg.aux_weight > 0:  # training-only head, never exported
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed + 1)
            modules['aux'] = torch.nn.Linear(config.hidden, aux_targets.num_targets())
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    step, log = 0, []
    if (out / STATE / 'meta.json').is_file():
        step, log = _load_state(out, modules, opt)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg), last_epoch=step - 1)
    bf16 = uses_bf16(cfg)
    bar = tqdm(total=cfg.steps, initial=step, desc='train', disable=not progress)
    while step < cfg.steps:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, len(data), (cfg.batch_size,), generator=gen)
        text_idx = idx
        if 'aux' in modules and cfg.aux_counterfactual:  # extra frames, other instructions
            extra = torch.randint(0, len(data), (2, cfg.aux_counterfactual), generator=gen)
            idx, text_idx = torch.cat([idx, extra[0]]), torch.cat([idx, extra[1]])
        batch, target = data.batch(idx, gen, cfg, text_idx)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            hidden = model.features(batch)  # (B + extra, N, D)
            pred = model.head(hidden[:cfg.batch_size])
        loss = LOSSES[cfg.loss](pred.float(), target[:cfg.batch_size])
        entry = {'step': step + 1, 'loss': loss.item()}
        if not math.isfinite(entry['loss']):
            raise RuntimeError(f'training loss is {entry["loss"]} at step {step + 1}; stopped '
                               f'before it reached the weights (the last saved state in {out} '
                               'is intact)')
        if 'aux' in modules:
            queries = model.query_states(hidden).float().mean(1)  # (B + extra, D)
            aux = _aux_loss(modules['aux'], queries, *data.aux_targets(idx, text_idx))
            entry['aux_loss'] = aux.item()
            loss = loss + cfg.aux_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        if val is not None and (step % cfg.val_every == 0 or step == cfg.steps):
            entry['val_loss'] = evaluate(model, val, cfg)
        log.append(entry)
        bar.update(1)
        bar.set_postfix({k: f'{v:.4f}' for k, v in entry.items() if k != 'step'})
        if step % cfg.save_every == 0 or step == cfg.steps:
            _save_state(out, modules, opt, step, log)
    bar.close()
    model.eval()
    save_policy(model, out)
    write_json(out / 'train_log.json', {'train_config': asdict(cfg), 'bf16_autocast': bf16,
                                        'model_config': asdict(config), 'log': log})
    return {'steps': step, 'final_loss': log[-1]['loss'] if log else None,
            'val_loss': next((e['val_loss'] for e in reversed(log) if 'val_loss' in e), None)}


def _aux_loss(head: torch.nn.Module, state: torch.Tensor, values: torch.Tensor,
              mask: torch.Tensor) -> torch.Tensor:
    """Masked MSE of the localization head on pooled action-query states (B, D)."""
    err = (head(state) - values) ** 2 * mask  # (B, K)
    return err.sum() / mask.sum().clamp_min(1.0)


@torch.no_grad()
def evaluate(model, data: ChunkDataset, cfg: TrainConfig, max_samples: int = 256) -> float:
    """Return the mean L1 loss on up to ``max_samples`` samples, without augmentation."""
    was_training = model.training
    model.eval()
    idx = torch.arange(min(len(data), max_samples))
    losses = []
    for part in idx.split(cfg.batch_size):
        batch, target = data.batch(part, None, cfg)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=uses_bf16(cfg)):
            pred = model.action_tensor(batch)
        losses.append(F.l1_loss(pred.float(), target, reduction='sum').item())
    model.train(was_training)
    return sum(losses) / (len(idx) * data.chunks.shape[1] * data.chunks.shape[2])
