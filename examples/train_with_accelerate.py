"""
Data-parallel training with Hugging Face Accelerate
===================================================

Every process runs this same script; ``BetaVAETransformer(accelerator=...)``
gives each one its share of every epoch's batches and averages the gradients
across processes, so all of them end with the same model and the same
history. Launch it with Accelerate (needs the ``dist`` extra):

- one process (any machine)::

      python examples/train_with_accelerate.py

- two CPU processes on this machine (gloo on the loopback interface; add
  ``--cpu`` to this script). Accelerate's own CPU launcher needs ``mpirun``
  for several processes; its ``torchrun`` launcher does not::

      accelerate launch --multi_gpu --num_processes 2 --main_process_ip 127.0.0.1 \\
          examples/train_with_accelerate.py --cpu

- every GPU of one machine (8 here)::

      accelerate launch --multi_gpu --num_processes 8 examples/train_with_accelerate.py

- two machines with 8 GPUs each: run on each, with its own ``--machine_rank``
  (0 on the machine at ``MAIN_IP``, 1 on the other)::

      accelerate launch --multi_gpu --num_machines 2 --num_processes 16 \\
          --machine_rank 0 --main_process_ip MAIN_IP --main_process_port 29500 \\
          examples/train_with_accelerate.py

  On SLURM, start the same command once per node with ``srun``, taking the
  machine rank from ``$SLURM_NODEID`` and ``MAIN_IP`` from the first host of
  ``$SLURM_JOB_NODELIST``.

``batch_size`` is per process: with N processes a step sees N batches, so
keep N x ``batch_size`` about what you would use on one device (or raise
``learning_rate_init`` with it). Every process needs the data; here each
loads the bundled digits. The main process saves the model.
"""

import argparse

import numpy as np
from accelerate import Accelerator
from sklearn.datasets import load_digits

from sklearn_betavae import BetaVAETransformer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", action="store_true", help="train on CPU processes")
    parser.add_argument("--out", default="betavae_accelerate.safetensors")
    args = parser.parse_args()

    accelerator = Accelerator(cpu=args.cpu)
    X = load_digits().data.astype(np.float32)
    X_train, X_test = X[:1500], X[1500:]
    batch_size = max(16, 128 // accelerator.num_processes)
    vae = BetaVAETransformer(
        n_components=8, max_iter=50, batch_size=batch_size, random_state=0,
        early_stopping=True, accelerator=accelerator, verbose=1,
    ).fit(X_train)
    accelerator.print(
        f"{accelerator.num_processes} process(es) on {accelerator.device}, batch {batch_size} "
        f"each: {vae.n_iter_} epochs, held-out ELBO {vae.score(X_test):.2f} nats per image"
    )
    if accelerator.is_main_process:
        vae.save(args.out)
        accelerator.print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
