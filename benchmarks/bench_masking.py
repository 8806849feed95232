"""Peak memory of masking a study larger than one wants in memory: chunks to a memmap vs all at once.

Usage:
    python benchmarks/bench_masking.py [--n-subjects 5000] [--resolution 6] [--batch-size 64]

Simulated subjects (``make_brain_population``, "amplitude", 6 mm: 8,656
grey-matter voxels) are written as one NIfTI file each into a temporary
folder; then, each in a fresh process so that peak memory is its own:
``NiftiMasker.transform`` of the list of files (what a user writes first),
and ``sklearn_betavae.mask_to_memmap`` of the same list into a ``.npy``
memmap, followed by a 3-epoch ``BetaVAETransformer`` fit on the memmap. The
table gives seconds and peak resident memory (Linux's VmHWM, reset after
the imports) above the resident memory then, and the ratios to masking at once. CPU only: masking
does not use a GPU (``--device`` is accepted for the fit).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status_mb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def _reset_peak():
    """Start the peak resident memory (VmHWM) again from the current one."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _peak_rss_mb():
    return _status_mb("VmHWM")


def _child(method, folder, batch_size, device):
    import numpy as np
    import torch
    from nilearn.maskers import NiftiMasker

    from sklearn_betavae import BetaVAETransformer, mask_to_memmap

    torch.set_num_threads(1)
    files = sorted(str(path) for path in Path(folder).glob("sub-*.nii"))
    masker = NiftiMasker(str(Path(folder) / "mask.nii"), standardize=None).fit()
    baseline = _reset_peak()
    start = time.perf_counter()
    if method == "at once":
        X = masker.transform(files).astype(np.float32)
    else:
        X = mask_to_memmap(files, masker, Path(folder) / "X.npy", batch_size=batch_size)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "peak_mb": _peak_rss_mb() - baseline, "shape": list(X.shape)}
    if method != "at once":
        start = time.perf_counter()
        BetaVAETransformer(n_components=6, max_iter=3, device=device, random_state=0).fit(X)
        result["fit_seconds"] = time.perf_counter() - start
        result["fit_peak_mb"] = _peak_rss_mb() - baseline
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=5000)
    parser.add_argument("--resolution", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.child, args.folder, args.batch_size, args.device)

    import nibabel

    from sklearn_betavae.datasets import make_brain_population

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        for first in range(0, args.n_subjects, 500):
            population = make_brain_population(min(500, args.n_subjects - first), resolution=args.resolution,
                                               random_state=first)
            for offset, image in enumerate(population.images):
                nibabel.save(image, Path(folder) / f"sub-{first + offset:05d}.nii")
        nibabel.save(population.mask_img, Path(folder) / "mask.nii")
        size = sum(path.stat().st_size for path in Path(folder).glob("sub-*.nii")) / 2**20
        print(f"{args.n_subjects} subjects written ({size:.0f} MB of NIfTI) in "
              f"{time.perf_counter() - start:.0f} s\n")
        results = {}
        for method in ("at once", "mask_to_memmap"):
            command = [sys.executable, __file__, "--child", method, "--folder", folder,
                       "--batch-size", str(args.batch_size), "--device", args.device]
            output = subprocess.run(command, capture_output=True, text=True, check=True,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
            results[method] = json.loads(output.strip().splitlines()[-1])
    n, voxels = results["at once"]["shape"]
    print(f"{n} subjects x {voxels} voxels ({n * voxels * 4 / 2**20:.0f} MB as float32), "
          f"batch_size {args.batch_size}\n")
    print("| method | seconds | peak memory above baseline (MB) | time ratio | memory ratio |")
    print("|---|---|---|---|---|")
    base = results["at once"]
    for method, result in results.items():
        print(f"| {method} | {result['seconds']:.1f} | {result['peak_mb']:.0f} | "
              f"{result['seconds'] / base['seconds']:.2f} | {result['peak_mb'] / base['peak_mb']:.3f} |")
    chunked = results["mask_to_memmap"]
    print(f"\nthen BetaVAETransformer(max_iter=3).fit on the memmap: {chunked['fit_seconds']:.1f} s, "
          f"peak memory above baseline {chunked['fit_peak_mb']:.0f} MB (masking included)")


if __name__ == "__main__":
    main()
