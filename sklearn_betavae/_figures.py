"""Drawing helpers shared by ``plotting`` and ``reporting``.

``draw_latent_maps`` draws the figure of ``plotting.plot_latent_maps`` from
the Bunch of ``inspection.latent_maps`` (the report draws maps it has
already computed); ``draw_row``, ``pyplot`` and ``saved`` are the small
pieces every figure uses. matplotlib (the ``plot`` extra) and nilearn are
imported when a figure is drawn.
"""

import numpy as np


def draw_latent_maps(result, kind, path):
    """The figure of ``plot_latent_maps`` from the Bunch of ``latent_maps``."""
    maps = result.maps
    titles = [f"latent {latent}" for latent in result.latents]
    if result.kl is not None:
        titles = [f"{title} (KL {kl:.2f} nats)" for title, kl in zip(titles, result.kl)]
    plt = pyplot()
    if not hasattr(maps, "affine"):
        figure, axes = plt.subplots(1, len(titles), squeeze=False, figsize=(2.4 * len(titles), 2.6))
        for ax, pattern, title in zip(axes[0], maps, titles):
            limit = float(np.abs(pattern).max()) or 1.0
            draw_row(ax, pattern, cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(title, fontsize=9)
        return saved(figure, path)
    import nibabel
    from nilearn.image import index_img
    from nilearn.plotting import plot_prob_atlas, plot_stat_map

    if kind == "prob_atlas":
        data = np.abs(np.asarray(maps.dataobj, dtype=np.float32))
        peaks = data.reshape(-1, data.shape[-1]).max(axis=0)
        atlas = nibabel.Nifti1Image(data / np.where(peaks > 0, peaks, 1.0), maps.affine)
        figure = plt.figure(figsize=(9, 3.5))
        plot_prob_atlas(atlas, figure=figure, threshold=0.5, view_type="filled_contours",
                        title="latent maps: |map| above half its peak", draw_cross=False)
        return saved(figure, path)
    figure, axes = plt.subplots(len(titles), 1, squeeze=False, figsize=(8, 2.6 * len(titles)))
    data = np.asarray(maps.dataobj)
    for volume, (ax, title) in enumerate(zip(axes[:, 0], titles)):
        peak = np.unravel_index(np.argmax(np.abs(data[..., volume])), data.shape[:3])
        cut_coords = maps.affine[:3, :3] @ np.array(peak) + maps.affine[:3, 3]
        plot_stat_map(index_img(maps, volume), axes=ax, title=title, draw_cross=False,
                      cmap="RdBu_r", cut_coords=cut_coords.tolist())
    return saved(figure, path)


def draw_row(ax, row, **imshow):
    """A row of input space as a square image when its length is a square
    (such as digits), else as a curve."""
    side = int(round(np.sqrt(row.size)))
    if side * side == row.size:
        ax.imshow(row.reshape(side, side), **imshow)
        ax.set_axis_off()
    else:
        ax.plot(row)


def pyplot():
    """matplotlib's pyplot, imported when a figure is drawn (the ``plot`` extra)."""
    import matplotlib.pyplot as plt

    return plt


def saved(figure, path):
    """``figure``, saved at ``path`` first unless it is None."""
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure
