"""
Grid search over beta and latent size on a Dask cluster
=======================================================

A search over ``beta`` x ``n_components`` x seeds is many independent fits:
scikit-learn hands them to joblib, and joblib's ``"dask"`` backend sends
them to the workers of a Dask cluster. The same code runs on a laptop (a
``LocalCluster`` of processes) and on an HPC scheduler (a
``dask_jobqueue.SLURMCluster``, shown below, not run here). Nothing in the
estimator changes: each worker fits its own clone.

Run it with ``python examples/plot_grid_search_on_dask.py`` (about 30 s on a
2-core CPU; needs the ``dist`` extra: ``pip install "sklearn_betavae[dist]"``).
"""

import time

import joblib
import torch
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from sklearn_betavae import BetaVAETransformer


def laptop_client():
    """Two worker processes on this machine, one thread each, loopback only."""
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    )
    return Client(cluster)


def hpc_client(n_jobs=16):
    """The HPC version: each SLURM job is one Dask worker (not run here).

    Adapt the queue, account and resources to your site; with a GPU per job,
    add ``job_extra_directives=["--gres=gpu:1"]`` and keep ``device="auto"``.
    """
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        queue="normal",
        account="my_lab",
        cores=4,
        processes=1,  # one fit at a time per job: torch uses the 4 cores
        memory="16GB",
        walltime="02:00:00",
        job_script_prologue=["source ~/venvs/betavae/bin/activate"],
    )
    cluster.scale(jobs=n_jobs)
    return Client(cluster)


def main():
    X = load_digits().data
    pipe = Pipeline([
        ("scale", MinMaxScaler()),
        ("vae", BetaVAETransformer(device="cpu", hidden_layer_sizes=(64,), max_iter=20)),
    ])
    grid = {
        "vae__beta": [1.0, 4.0],
        "vae__n_components": [4, 8],
        "vae__random_state": [0, 1],
    }
    start = time.perf_counter()
    with laptop_client() as client, joblib.parallel_backend("dask"):
        print(f"Dask workers: {len(client.scheduler_info()['workers'])}")
        search = GridSearchCV(pipe, grid, cv=3, n_jobs=-1).fit(X)
    print(f"{len(search.cv_results_['params']) * 3} fits in {time.perf_counter() - start:.1f} s")
    print("| beta | n_components | seed | mean held-out ELBO |")
    print("|---|---|---|---|")
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"| {params['vae__beta']} | {params['vae__n_components']} | "
              f"{params['vae__random_state']} | {score:.2f} |")
    print(f"best: {search.best_params_}")


if __name__ == "__main__":
    # Worker processes import this file again: the guard keeps them from
    # starting clusters of their own. One torch thread per process, as on
    # the workers, so that processes do not oversubscribe the cores.
    torch.set_num_threads(1)
    main()
