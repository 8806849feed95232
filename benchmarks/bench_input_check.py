"""What checking query rows for NaN and infinity costs, on the host and on a device.

Usage:
    python benchmarks/bench_input_check.py
    python benchmarks/bench_input_check.py --device cuda

Inference validates X before encoding it. On the CPU the host's pass over
X (scikit-learn's ``check_array``, which sums X and looks closer only when
the sum is not finite) is cheap next to the network. On a GPU the plain
float32 pass a PyTorch user writes is little more than X's transfer, and
the host's pass is then a large share of it; the estimator therefore checks
each chunk on the device (whether its sum is finite, as scikit-learn's
check starts, read once after the last chunk). For float32 rows of each shape this prints, in one
process, the best of ``--repeats`` timings of:

- the host check (``check_array``, as ``validate_data`` calls it);
- the transfer of X to ``--device`` from ordinary (pageable) memory, as
  both the plain pass and the estimator send it (on the CPU: none);
- the device check of X once there, as the estimator makes it, and
  ``torch.isfinite(X).all()`` for comparison (several passes, with
  temporaries);

and the host check as a share of the transfer.
"""

import argparse
import time

import numpy as np
import torch
from sklearn.utils import check_array


def _best(fn, device, repeats):
    fn()  # warm-up: first-call allocations and kernels
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["1000x8656", "1000x50000", "200x200000"],
                        help="rows x features of float32 query rows")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"bench_input_check: device={device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), best of {args.repeats}")
    print("| rows x features | MB | host check ms | host GB/s | transfer ms | device check ms "
          "| isfinite().all() ms | host check / transfer |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for shape in args.shapes:
        n_rows, n_features = (int(n) for n in shape.split("x"))
        X = rng.standard_normal((n_rows, n_features), dtype=np.float32)
        host = _best(lambda: check_array(X, dtype=None), torch.device("cpu"), args.repeats)  # noqa: B023
        if device.type == "cpu":
            transfer, on_device = float("nan"), torch.from_numpy(X)
        else:
            transfer = _best(lambda: torch.from_numpy(X).to(device), device, args.repeats)  # noqa: B023
            on_device = torch.from_numpy(X).to(device)
        check = _best(lambda: bool(torch.isfinite(on_device.sum())),  # noqa: B023
                      device, args.repeats)
        elementwise = _best(lambda: bool(torch.isfinite(on_device).all()), device, args.repeats)  # noqa: B023
        print(f"| {shape} | {X.nbytes / 1e6:.0f} | {host * 1e3:.2f} | {X.nbytes / host / 1e9:.1f} "
              f"| {transfer * 1e3:.2f} | {check * 1e3:.2f} | {elementwise * 1e3:.2f} "
              f"| {host / transfer:.2f} |", flush=True)


if __name__ == "__main__":
    main()
