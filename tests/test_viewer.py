"""The denoising viewer (diffussm_lib.sampling): frames from the sampler's trajectory, the widget's
state without a browser, the GIF and the static strip. A hand-written analytic denoiser stands in for
a trained model, so these tests need neither training nor a checkpoint."""
import matplotlib

matplotlib.use("Agg")

import io  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from diffussm_lib.diffusion import NoiseSchedule, ddim_sample, ddpm_sample, eps_from_x0  # noqa: E402
from diffussm_lib.sampling import (ALL_CLASSES, ViewerFrames, compute_frames, denoising_viewer,  # noqa: E402
                                 frame_png, render_frame, save_gif, strip_figure, viewer_labels)

SIZE = 12          # H = W of the stand-in's images
T = 50             # diffusion steps of the test schedule


class PointMass(torch.nn.Module):
    """The exact eps-denoiser for data that is one fixed image per class: class c is a bright
    horizontal bar at row c (in [-1, 1]), the null class their mean. eps = (x_t - sqrt(ab_t) mu_y) /
    sqrt(1 - ab_t). x (B, 1, H, W), t long (B,), y long (B,) or None -> eps (B, 1, H, W)."""

    num_classes = 10
    null_class = 10
    in_channels = 1

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        mu = -torch.ones(self.num_classes + 1, 1, SIZE, SIZE)
        for c in range(self.num_classes):
            mu[c, 0, c + 1] = 1.0
        mu[self.null_class] = mu[: self.num_classes].mean(0)
        self.register_buffer("mu", mu)

    def forward(self, x, t, y):
        y = torch.full((x.shape[0],), self.null_class, dtype=torch.long) if y is None else y
        return eps_from_x0(self.schedule, x, t, self.mu[y])


@pytest.fixture(scope="module")
def sched():
    return NoiseSchedule.cosine(T)


@pytest.fixture(scope="module")
def model(sched):
    return PointMass(sched)


def test_first_frame_is_pure_noise(model, sched):
    labels = torch.arange(64) % 10
    f = compute_frames(model, sched, labels, image_size=SIZE, steps=10, seed=3)
    assert f.timesteps[0] == T - 1 and f.timesteps[-1] == -1
    x_T = f.xs[0]
    assert x_T.shape == (64, 1, SIZE, SIZE)
    assert abs(x_T.mean().item()) < 0.05 and abs(x_T.std().item() - 1.0) < 0.05
    # ... and it is exactly the first draw of a generator seeded with the seed
    g = torch.Generator().manual_seed(3)
    assert torch.equal(x_T, torch.randn(x_T.shape, generator=g))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_last_frame_equals_sampler_output(model, sched, sampler):
    labels = torch.tensor([0, 3, 7, 9])
    f = compute_frames(model, sched, labels, image_size=SIZE, sampler=sampler, steps=12, guidance=2.0, seed=5)
    run = ddim_sample if sampler == "ddim" else ddpm_sample
    out = run(model, sched, (4, 1, SIZE, SIZE), labels, steps=12, guidance_scale=2.0, clip_x0=True,
              generator=torch.Generator().manual_seed(5))
    assert torch.equal(f.xs[-1], out) and torch.equal(f.x0_preds[-1], out) and torch.equal(f.final, out)
    assert len(f) == 12 + 1 and f.sampler == sampler and f.guidance == 2.0
    # the exact denoiser lands on each class's image
    assert torch.allclose(out, model.mu[labels], atol=1e-4)


def test_frames_are_the_trajectory(model, sched):
    f = compute_frames(model, sched, torch.tensor([1, 2]), image_size=SIZE, steps=5, seed=0)
    res = ddim_sample(model, sched, (2, 1, SIZE, SIZE), torch.tensor([1, 2]), steps=5, clip_x0=True,
                      generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert torch.equal(f.xs[:-1], res.xs) and torch.equal(f.x0_preds[:-1], res.x0_preds)
    assert f.timesteps[:-1].tolist() == res.timesteps.tolist()


def test_long_runs_are_strided(model, sched):
    f = compute_frames(model, sched, torch.tensor([4]), image_size=SIZE, sampler="ddpm", max_frames=10)
    # T = 50 steps, stride ceil(50 / 10) = 5: steps 0, 5, ..., 45 and the last (49), then the final frame
    assert len(f) == 10 + 1 + 1
    assert f.timesteps[0] == T - 1 and f.timesteps[-2] == 0 and f.timesteps[-1] == -1


def test_compute_frames_errors(model, sched):
    with pytest.raises(ValueError, match="sampler"):
        compute_frames(model, sched, torch.tensor([1]), image_size=SIZE, sampler="euler")
    with pytest.raises(ValueError, match="labels must have shape"):
        compute_frames(model, sched, torch.tensor([1, 2]), image_size=SIZE, x_T=torch.randn(3, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match="class must be"):
        viewer_labels(12, 4)
    assert viewer_labels(ALL_CLASSES, 12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert viewer_labels(7, 3).tolist() == [7, 7, 7]


def test_render_frame_shows_both_panels(model, sched):
    f = compute_frames(model, sched, torch.arange(6), image_size=SIZE, steps=4)
    plain = render_frame(f, 2, ncol=3, scale=1, header=False)
    grid_h, grid_w = 2 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2           # sampling.make_grid with pad 2
    assert plain.shape == (grid_h, 2 * grid_w + 6) and plain.dtype == np.uint8
    # the right panel is the predicted x_0: at the final frame both panels show the same samples
    last = render_frame(f, -1, ncol=3, scale=1, header=False)
    assert np.array_equal(last[:, :grid_w], last[:, grid_w + 6:])
    png = frame_png(f, 2, ncol=3, scale=2)
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.size[0] == 2 * (2 * grid_w + 6) and im.size[1] > 2 * grid_h


def test_slider_changes_the_displayed_image(model, sched):
    box = denoising_viewer(model, sched, n=4, image_size=SIZE, steps=8, guidance=1.0, scale=1)
    v = box.viewer
    assert "diffussm-viewer" in box._dom_classes and "diffussm-viewer-image" in v.image._dom_classes
    assert v.step.max == v.play.max == len(v.frames) - 1 == 8
    assert (v.link.source, v.link.target) == ((v.play, "value"), (v.step, "value"))
    first = v.image.value
    assert first == v.pngs[0]
    v.step.value = 5
    assert v.image.value == v.pngs[5] != first
    assert "frame 5/8" in v.status.value
    v.step.value = v.step.max
    assert v.image.value == v.pngs[-1]
    assert "final sample" in v.status.value


def test_class_and_guidance_recompute_frames_from_the_same_noise(model, sched):
    v = denoising_viewer(model, sched, n=3, image_size=SIZE, steps=6, guidance=1.0, scale=1).viewer
    v.step.value = v.step.max
    before = v.image.value
    v.class_select.value = 7
    assert v.frames.labels.tolist() == [7, 7, 7]
    assert v.step.value == v.step.max and v.image.value != before
    assert torch.allclose(v.frames.final, model.mu[[7, 7, 7]], atol=1e-4)
    assert torch.equal(v.frames.xs[0], v.x_T)                    # same initial noise for every setting
    assert not v.class_select.disabled and not v.step.disabled   # controls re-enabled after sampling
    v.guidance.value = 3.0
    assert v.frames.guidance == 3.0 and len(v._cache) == 3
    cached = v.frames_for(7, 1.0)[0]
    v.guidance.value = 1.0
    assert v.frames is cached                                    # seen settings come from the cache


def test_save_gif_one_gif_frame_per_frame(model, sched, tmp_path):
    f = compute_frames(model, sched, torch.arange(4), image_size=SIZE, steps=9)
    path = save_gif(f, tmp_path / "sub" / "denoise.gif", fps=10, hold_last=1.0, scale=1)
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "GIF" and im.is_animated and im.n_frames == len(f) == 10
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
    assert durations[0] == 100 and durations[-1] == 1100
    # identical pictures still give one GIF frame each
    same = [np.full((8, 8), 128, dtype=np.uint8)] * 5
    with Image.open(save_gif(same, tmp_path / "same.gif")) as im:
        assert im.n_frames == 5
    with pytest.raises(ValueError, match="no frames"):
        save_gif([], tmp_path / "empty.gif")


def test_strip_figure(model, sched):
    import matplotlib.pyplot as plt

    f = compute_frames(model, sched, torch.arange(4), image_size=SIZE, steps=20)
    fig = strip_figure(f, num=6, schedule=sched, title="strip")
    assert len(fig.axes) == 2 * 6
    assert fig.axes[0].get_title() == f"t = {T - 1}" and fig.axes[5].get_title() == "final"
    plt.close(fig)


def test_viewer_frames_caption(sched):
    f = ViewerFrames(timesteps=torch.tensor([49, 0, -1]), xs=torch.zeros(3, 1, 1, 2, 2),
                     x0_preds=torch.zeros(3, 1, 1, 2, 2))
    assert f.caption(0, sched).startswith("frame 0/2: t = 49")
    assert "final sample" in f.caption(2)
