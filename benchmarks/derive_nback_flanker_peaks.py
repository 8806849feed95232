"""Derive the peak table that ``load_nback_flanker`` ships, from NiMARE's studyset.

Usage:
    pip install --no-deps --target /tmp/nimare nimare==0.22.1
    pip install pandas pyarrow
    python benchmarks/derive_nback_flanker_peaks.py \
        /tmp/nimare/nimare/resources/nback_vs_flanker_studyset_2026-07

Reads the studyset's ``coordinates.parquet`` and ``metadata.parquet`` (NiMARE
0.22.1, MIT licence; the files only, NiMARE is not imported), keeps the
analyses whose peaks are reported in MNI space (717 of 906: the others are in
Talairach or an unknown space) and writes one row per peak, analyses in the
studyset's order, to ``sklearn_betavae/data/nback_flanker_peaks.csv.gz``:
analysis id, study id, task (``n-back`` or ``flanker``, the studyset's
``comparison_task``), x, y, z in MNI millimetres. The gzip header carries no
time stamp, so the file is the same bytes on every run. Not run by the
package or its tests: the table it wrote is committed.
"""

import argparse
import gzip
import io
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "sklearn_betavae" / "data" / "nback_flanker_peaks.csv.gz"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studyset", type=Path, help="the nback_vs_flanker_studyset_2026-07 folder")
    args = parser.parse_args()
    coordinates = pd.read_parquet(args.studyset / "coordinates.parquet")
    metadata = pd.read_parquet(args.studyset / "metadata.parquet")
    task = metadata.set_index("id")["comparison_task"]
    mni = coordinates[coordinates["space"] == "MNI"]
    order = {analysis: i for i, analysis in enumerate(metadata["id"])}
    mni = mni.assign(order=mni["id"].map(order)).sort_values("order", kind="stable")
    table = pd.DataFrame({
        "analysis_id": mni["id"], "study_id": mni["study_id"], "task": task.loc[mni["id"]].to_numpy(),
        "x": mni["x"], "y": mni["y"], "z": mni["z"],
    })
    text = io.StringIO()
    table.to_csv(text, index=False, float_format="%.6g")
    OUT.write_bytes(gzip.compress(text.getvalue().encode(), compresslevel=9, mtime=0))
    counts = table.drop_duplicates("analysis_id")["task"].value_counts().to_dict()
    print(f"{len(table)} peaks, {table['analysis_id'].nunique()} analyses {counts}, "
          f"{table['study_id'].nunique()} studies -> {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
