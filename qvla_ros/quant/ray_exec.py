# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Exact-sensitivity shards as Ray tasks: on this machine or on a cluster.

``RayExecutor('local')`` starts a private Ray instance on this machine, every listener bound to
127.0.0.1, no dashboard, no usage reports; ``RayExecutor('ray://...' | 'HOST:PORT' | 'auto')``
joins a running cluster (``ray start``, SLURM, KubeRay; docs/distributed.md). The model, the
calibration batch and each layer's Hessian go into the object store once; every shard is a
task that is retried when it fails or its worker dies, and each result is handed back as it
arrives, so the caller can keep it (``ShardStore``) before the next one finishes.

Ray is optional (``pip install 'qvla_ros[distributed]'``): nothing here imports it until an
executor is made.
"""

import os
from typing import Any, Dict, List, Mapping, Optional

import torch
from tqdm.auto import tqdm

from qvla_ros.quant.policy import Batch, QuantPolicy
from qvla_ros.quant.sensitivity import OnResult, run_shard, SensitivityConfig, Shard

# Environment of a private local instance: listeners on loopback (Ray otherwise binds every
# interface and advertises the machine's address) and no usage reports sent anywhere.
LOCAL_ENV = {'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER': '0', 'RAY_USAGE_STATS_ENABLED': '0'}
_CACHE: Dict[str, Any] = {}  # per worker process: the deserialized policy, by job


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError('--ray needs Ray, which is not installed; install it with: pip '
                           "install 'qvla_ros[distributed]' (or pip install ray)") from None
    return ray


def _shard_task(policy_box: list, job: str, batch: Batch, cfg: SensitivityConfig, shard: Shard,
                hessian: Optional[torch.Tensor], threads: int, device: str) -> torch.Tensor:
    """Run one shard in a Ray worker: the policy is fetched and placed once per process.

    ``policy_box`` is [ObjectRef]: boxed, Ray hands the reference over unresolved, so a worker
    deserializes the model only for its first shard of the job.
    """
    ray = _import_ray()
    torch.set_num_threads(max(1, threads))
    if _CACHE.get('job') != job:
        _CACHE.update(job=job, policy=ray.get(policy_box[0]).to(device))
    batch = {k: v.to(device) for k, v in batch.items()}
    hessian = None if hessian is None else hessian.to(device)
    return run_shard(_CACHE['policy'], batch, shard, cfg, hessian=hessian).cpu()


class RayExecutor:
    """Run shards as Ray tasks with ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs each."""

    def __init__(self, address: str = 'local', cpus_per_task: float = 1.0,
                 gpus_per_task: float = 0.0, max_retries: int = 3,
                 num_cpus: Optional[int] = None):
        if cpus_per_task <= 0 or gpus_per_task < 0 or max_retries < 0:
            raise ValueError('expected --cpus-per-task > 0, --gpus-per-task >= 0 and '
                             f'max_retries >= 0, got {cpus_per_task}, {gpus_per_task}, '
                             f'{max_retries}')
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_task, self.gpus_per_task = cpus_per_task, gpus_per_task
        self.max_retries = max_retries
        self.ray: Any = None

    def start(self) -> 'RayExecutor':
        """Start (``local``) or join (an address) a Ray cluster."""
        if self.address == 'local':
            os.environ.update(LOCAL_ENV)  # read by Ray at import and by the processes it starts
        ray = _import_ray()
        if self.address == 'local':
            # This process may have imported Ray before the variable was set.
            from ray._private import ray_constants
            ray_constants.ENABLE_RAY_CLUSTER = False
        if not ray.is_initialized():
            if self.address == 'local':
                ray.init(num_cpus=self.num_cpus or os.cpu_count(), include_dashboard=False,
                         _node_ip_address='127.0.0.1', configure_logging=False,
                         log_to_driver=False)
            else:
                ray.init(address=self.address, log_to_driver=False)
        self.ray = ray
        return self

    def stop(self) -> None:
        """Leave the cluster (a local instance ends with it)."""
        if self.ray is not None and self.ray.is_initialized():
            self.ray.shutdown()
        self.ray = None

    def run_shards(self, policy: QuantPolicy, batch: Batch, cfg: SensitivityConfig,
                   shards: List[Shard], hessians: Mapping[str, torch.Tensor],
                   on_result: OnResult) -> None:
        """Submit every shard, and report each result as soon as it arrives."""
        ray = self.ray or self.start().ray
        device = 'cuda' if self.gpus_per_task > 0 else 'cpu'
        policy_ref, batch_ref = ray.put(policy), ray.put(batch)
        hessian_refs = {k: ray.put(v) for k, v in hessians.items()
                        if any(s.layer == k for s in shards)}
        task = ray.remote(_shard_task).options(
            num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
            max_retries=self.max_retries, retry_exceptions=True)
        job = policy_ref.hex()  # one per put: a later model never meets a cached earlier one
        pending = {task.remote([policy_ref], job, batch_ref, cfg, shard,
                               hessian_refs.get(shard.layer), int(self.cpus_per_task),
                               device): shard for shard in shards}
        with tqdm(total=len(shards), desc='exact sensitivity (ray)',
                  disable=not cfg.progress) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                shard = pending.pop(ready[0])
                on_result(shard, ray.get(ready[0]))
                bar.update(1)
