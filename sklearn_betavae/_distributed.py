"""Data-parallel training through Hugging Face Accelerate (the ``dist`` extra).

``AcceleratedBetaVAENet`` is ``BetaVAENet`` with skorch's ``AccelerateMixin``:
the accelerator wraps the module and optimizer (``DistributedDataParallel``
when several processes run), shards every epoch's batches across the
processes and averages the gradients. skorch's ``DistributedHistory`` keeps
the batch records of all processes in every process's history, so the
epoch losses, early stopping and the roll-back after a failure see the same
numbers everywhere.
"""

import math
import uuid

import torch
from skorch import NeuralNet
from skorch.hf import AccelerateMixin
from skorch.history import DistributedHistory, History
from skorch.utils import noop
from torch.utils.data import DataLoader

from ._net import BetaVAENet


def batch_loader(dataset, batch_size, shuffle=False, generator=None):
    """A ``DataLoader`` over a ``RowDataset`` (or a ``Subset`` of one).

    Each batch is one block of ``row_blocks``, as in ``SliceLoader``, but
    fetched (through ``RowDataset.__getitems__``) by a ``DataLoader``, which
    Accelerate knows how to shard across processes. ``generator`` (the fit's
    own CPU generator; None: torch's global one) draws the shuffling.
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=_as_batch,
                      generator=generator)


def _as_batch(item):
    return item


def main_process_print(accelerator):
    """``print``, or with an accelerator its print: one message for all processes."""
    return print if accelerator is None else accelerator.print


def is_main_process(accelerator):
    """Whether this process reports progress: the only one, or the main one."""
    return accelerator is None or accelerator.is_main_process


def shared_seed(accelerator, seed):
    """Process 0's ``seed``, in every process (so splits and weights agree)."""
    if accelerator.num_processes == 1:
        return seed
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([seed], from_process=0)[0]


def _history_store(accelerator):
    """A key-value store every process reaches, for ``DistributedHistory``.

    A fresh namespace (chosen by process 0) in the store the process group
    was set up with: no other port or host to open, on one machine or many.
    """
    from accelerate.utils import broadcast_object_list

    namespace = broadcast_object_list([uuid.uuid4().hex], from_process=0)[0]
    # torch has no public accessor for the process group's store.
    group_store = torch.distributed.distributed_c10d._get_default_store()
    return torch.distributed.PrefixStore(f"sklearn_betavae/{namespace}/", group_store)


class AcceleratedBetaVAENet(AccelerateMixin, BetaVAENet):
    """``BetaVAENet`` trained through an ``accelerate.Accelerator``.

    ``batch_size`` is per process: with N processes a step averages the
    gradients of N batches. As with PyTorch's ``DistributedSampler``, the
    last batches of an epoch are filled up with rows from its start, so
    that every process takes the same number of steps. Validation is not
    sharded: every process scores every validation row, so the validation
    losses (which early stopping watches) are exactly those of one process.
    Between training runs the net is unwrapped (a
    plain module, optimizer and ``History``), so that inference, pickling
    and ``save`` work as without Accelerate; each run wraps it again, which
    makes warm starts possible.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
    **kwargs
        Passed to ``BetaVAENet``. ``device`` must be None: the accelerator
        places the module and the batches.
    """

    accelerated = True

    def __init__(self, *args, accelerator, **kwargs):
        # Unwrapped in end_run instead, after the callbacks' on_train_end:
        # EarlyStopping's best weights were taken from the wrapped module.
        super().__init__(*args, accelerator=accelerator, unwrap_after_train=False, **kwargs)

    def initialize_callbacks(self):
        # PrintLog prints to any sink but ``print`` whatever ``verbose`` says;
        # the table comes from the main process only, and only when verbose.
        self.callbacks__print_log__sink = self.accelerator.print if self.verbose else noop
        return super().initialize_callbacks()

    @property
    def n_processes(self):
        return self.accelerator.num_processes

    def get_iterator(self, dataset, training=False):
        if not training:  # see the class docstring: not sharded, not padded
            return NeuralNet.get_iterator(self, dataset, training=False)
        iterator = super().get_iterator(dataset, training=True)
        vars(self).setdefault("_prepared_loaders", []).append(iterator)
        return iterator

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        if not self._wrapped_with_accelerator:  # a warm start (end_run unwrapped it all)
            self._initialize_accelerator()
        if self.accelerator.num_processes > 1 and not isinstance(self.history_, DistributedHistory):
            self.history_ = DistributedHistory(
                self.history_.to_list(),
                store=_history_store(self.accelerator),
                rank=self.accelerator.process_index,
                world_size=self.accelerator.num_processes,
            )
        super().on_train_begin(net, X=X, y=y, **kwargs)

    def end_run(self):
        # Synced before the barrier, while every process still writes.
        self._plain_history()
        super().end_run()
        self.accelerator.wait_for_everyone()
        # The accelerator keeps what it prepared (the data included) for as
        # long as it lives: let this run's objects go.
        self._release([self.module_, self.optimizer_, *vars(self).pop("_prepared_loaders", [])])
        self._unwrap_accelerator()
        optimizer = self.optimizer_
        self.optimizer_ = getattr(optimizer, "optimizer", optimizer)

    def _release(self, prepared):
        ids = {id(thing) for thing in prepared}
        for name in ("_models", "_optimizers", "_dataloaders"):
            kept = getattr(self.accelerator, name, None)
            if isinstance(kept, list):
                kept[:] = [thing for thing in kept if id(thing) not in ids]

    def __getstate__(self):
        state = super().__getstate__()
        # skorch maps the tensors to state["device"] when unpickling; None
        # would mean the CPU, so name the device the weights are on.
        if hasattr(self, "module_"):
            state["device"] = str(next(self.module_.parameters()).device)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self.device = None  # the accelerator places the net again

    def train_step_single(self, batch, **fit_params):
        # BetaVAENet's step (three recorded terms, KL warm-up) rather than the
        # mixin's; the accelerator still autocasts and reduces the gradients.
        with self.accelerator.autocast():
            return BetaVAENet.train_step_single(self, batch, **fit_params)

    def finite_everywhere(self, loss, value):
        # One process raising alone would leave the others waiting forever in
        # the next all-reduce.
        finite = torch.tensor([float(math.isfinite(value))], device=loss.device)
        return bool(self.accelerator.gather(finite).min() > 0)

    def backward(self, objective):
        self.accelerator.backward(objective)

    def vae_module(self):
        return self.accelerator.unwrap_model(self.module_)

    def share_initial_state(self):
        # Each process computed the PCA start itself; different BLAS builds
        # (several nodes) could round it differently, and DDP broadcasts
        # parameters only when it wraps the module.
        if self.accelerator.num_processes > 1:
            import torch.distributed as dist

            with torch.no_grad():
                for tensor in self.vae_module().state_dict().values():
                    dist.broadcast(tensor, src=0)

    def truncate_history(self, n_epochs):
        self._plain_history()  # DistributedHistory cannot delete epochs
        super().truncate_history(n_epochs)

    def _plain_history(self):
        # The synced records in a plain History: its store cannot be pickled,
        # reused or truncated.
        if isinstance(self.history_, DistributedHistory):
            self.history_ = History(self.history_.to_list())
