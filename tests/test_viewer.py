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

from diffussm_lib.diffusion import (
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    eps_from_x0,  # noqa: E402
    half_log_snr,
    v_from_x0_eps,
    x0_from_eps,
)
from diffussm_lib.sampling import (
    ALL_CLASSES,
    ViewerFrames,
    compute_frames,
    denoising_viewer,  # noqa: E402
    frame_png,
    render_frame,
    save_gif,
    strip_figure,
    viewer_labels,
)
from diffussm_lib.sampling.frames import guidance_directions, log_snr, recorded_steps  # noqa: E402
from diffussm_lib.sampling.render import guidance_panel, noise_timeline  # noqa: E402
from diffussm_lib.sampling.viewer import informative_frame  # noqa: E402

SIZE = 12  # H = W of the stand-in's images
T = 50  # diffusion steps of the test schedule


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


class PointMassV(PointMass):
    """The same exact denoiser predicting v = sqrt(ab) eps - sqrt(1 - ab) x_0 instead of eps."""

    def forward(self, x, t, y):
        eps = super().forward(x, t, y)
        return v_from_x0_eps(self.schedule, x0_from_eps(self.schedule, x, t, eps), eps, t)


class NoClasses(torch.nn.Module):
    """The exact denoiser of one image (the classes' mean), without class conditioning (num_classes = 0)."""

    num_classes = 0
    null_class = 0
    in_channels = 1

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self.register_buffer("mu", PointMass(schedule).mu[PointMass.null_class])

    def forward(self, x, t, y):
        assert y is None, "a model without classes got class labels"
        return eps_from_x0(self.schedule, x, t, self.mu.expand_as(x))


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
    f = compute_frames(
        model, sched, labels, image_size=SIZE, sampler=sampler, steps=12, guidance=2.0, seed=5
    )
    run = ddim_sample if sampler == "ddim" else ddpm_sample
    out = run(
        model,
        sched,
        (4, 1, SIZE, SIZE),
        labels,
        steps=12,
        guidance_scale=2.0,
        clip_x0=True,
        generator=torch.Generator().manual_seed(5),
    )
    assert (
        torch.equal(f.xs[-1], out)
        and torch.equal(f.x0_preds[-1], out)
        and torch.equal(f.final, out)
    )
    assert len(f) == 12 + 1 and f.sampler == sampler and f.guidance == 2.0
    # the exact denoiser lands on each class's image
    assert torch.allclose(out, model.mu[labels], atol=1e-4)


def test_frames_are_the_trajectory(model, sched):
    f = compute_frames(
        model, sched, torch.tensor([1, 2]), image_size=SIZE, sampler="ddim", steps=5, seed=0
    )
    res = ddim_sample(
        model,
        sched,
        (2, 1, SIZE, SIZE),
        torch.tensor([1, 2]),
        steps=5,
        clip_x0=True,
        generator=torch.Generator().manual_seed(0),
        return_trajectory=True,
    )
    assert torch.equal(f.xs[:-1], res.xs) and torch.equal(f.x0_preds[:-1], res.x0_preds)
    assert f.timesteps[:-1].tolist() == res.timesteps.tolist()


def test_long_runs_are_strided(model, sched):
    f = compute_frames(
        model, sched, torch.tensor([4]), image_size=SIZE, sampler="ddpm", max_frames=10
    )
    # T = 50 steps, stride ceil(50 / 10) = 5: steps 0, 5, ..., 45 and the last (49), then the final frame
    assert len(f) == 10 + 1 + 1
    assert f.timesteps[0] == T - 1 and f.timesteps[-2] == 0 and f.timesteps[-1] == -1
    assert f.step_index.tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 49, 50]
    assert f.caption(1, sched).startswith("step 5/50, t = ")
    assert f.caption(-1) == "step 50/50, final sample (t = -1, clean)"


@pytest.mark.parametrize("sampler", ["ddim", "dpm_solver++", "ddpm"])
def test_step_numbers_and_captions(model, sched, sampler):
    f = compute_frames(
        model, sched, torch.tensor([1, 2]), image_size=SIZE, sampler=sampler, steps=10, max_frames=4
    )
    # stride ceil(10 / 4) = 3: steps 0, 3, 6, 9 are recorded, then the final sample after all 10
    assert recorded_steps(10, 3).tolist() == [0, 3, 6, 9]
    assert f.step_index.tolist() == [0, 3, 6, 9, 10] and len(f) == 5
    t = int(f.timesteps[2])
    assert f.caption(2, sched) == f"step 6/10, t = {t}, log-SNR = {2 * half_log_snr(sched, t):.1f}"
    assert f.caption(2) == f"step 6/10, t = {t}"


def test_log_snr(sched):
    ts = torch.tensor([T - 1, 25, 0, -1])
    ls = log_snr(sched, ts)
    assert ls.dtype == torch.float64 and ls.shape == (4,)
    assert torch.allclose(
        ls[:3],
        torch.tensor([2 * half_log_snr(sched, t) for t in (T - 1, 25, 0)], dtype=torch.float64),
    )
    assert ls[-1] == float("inf") and bool((ls[1:] > ls[:-1]).all())  # rises as the noise goes


def test_guidance_directions_exact(model, sched):
    """For the exact denoiser eps_y - eps_null = -sqrt(ab_t) / sqrt(1 - ab_t) (mu_y - mu_null): the label
    pulls towards its class's image. A v-prediction model gives the same eps directions."""
    labels = torch.tensor([0, 3, 7])
    f = compute_frames(
        model, sched, labels, image_size=SIZE, steps=6, guidance=2.0, with_guidance_dirs=True
    )
    assert f.guidance_dirs.shape == f.xs.shape
    for k, t in enumerate(f.timesteps.tolist()[:-1]):
        ab = sched.alpha_bar[t]
        expected = -(ab.sqrt() / (1 - ab).sqrt()) * (model.mu[labels] - model.mu[model.null_class])
        assert torch.allclose(f.guidance_dirs[k], expected.float(), atol=1e-4, rtol=1e-4), k
    assert not f.guidance_dirs[-1].any()  # the final frame: no model call
    v_model = PointMassV(sched)
    fv = compute_frames(
        v_model,
        sched,
        labels,
        image_size=SIZE,
        steps=6,
        guidance=2.0,
        prediction="v",
        with_guidance_dirs=True,
    )
    assert torch.allclose(fv.xs, f.xs, atol=1e-4) and torch.allclose(
        fv.guidance_dirs, f.guidance_dirs, atol=1e-3
    )
    # drawn with the sign of its effect on x_0: white (+1) where class 3's bar (row 4) is added
    shown = guidance_panel(f.guidance_dirs[2])
    assert shown.abs().amax() == pytest.approx(1.0) and float(shown[1, 0, 4].mean()) > 0.9
    with pytest.raises(ValueError, match="need labels"):
        guidance_directions(
            model, sched, compute_frames(model, sched, None, image_size=SIZE, steps=3)
        )


def test_compute_frames_errors(model, sched):
    with pytest.raises(ValueError, match="sampler"):
        compute_frames(model, sched, torch.tensor([1]), image_size=SIZE, sampler="euler")
    with pytest.raises(ValueError, match="labels must have shape"):
        compute_frames(
            model, sched, torch.tensor([1, 2]), image_size=SIZE, x_T=torch.randn(3, 1, SIZE, SIZE)
        )
    with pytest.raises(ValueError, match="with_guidance_dirs"):
        compute_frames(model, sched, None, image_size=SIZE, with_guidance_dirs=True)
    with pytest.raises(ValueError, match="class_choice must be"):
        viewer_labels(12, 4)
    assert viewer_labels(ALL_CLASSES, 12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert viewer_labels(7, 3).tolist() == [7, 7, 7]


def test_render_frame_panels_caption_and_timeline(model, sched):
    f = compute_frames(model, sched, torch.arange(6), image_size=SIZE, steps=4)
    plain = render_frame(f, 2, ncol=3, scale=1, header=False)
    grid_h, grid_w = 2 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2  # sampling.make_grid with pad 2
    assert plain.shape == (grid_h, 2 * grid_w + 6) and plain.dtype == np.uint8
    # the right panel is the predicted x_0: at the final frame both panels show the same samples
    last = render_frame(f, -1, ncol=3, scale=1, header=False)
    assert np.array_equal(last[:, :grid_w], last[:, grid_w + 6 :])
    png = frame_png(f, 2, ncol=3, scale=2)
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.size[0] == 2 * (2 * grid_w + 6) and im.size[1] > 2 * grid_h
    # with the guidance direction: a third panel; with the schedule: the timeline below
    g = compute_frames(
        model,
        sched,
        torch.arange(6),
        image_size=SIZE,
        steps=4,
        guidance=2.0,
        with_guidance_dirs=True,
    )
    three = render_frame(g, 2, ncol=3, scale=1, header=False)
    assert three.shape == (grid_h, 3 * grid_w + 2 * 6)
    assert np.array_equal(
        three[:, 2 * (grid_w + 6) :], render_frame(g, 2, ncol=3, scale=1, header=False)[:, -grid_w:]
    )
    with_timeline = render_frame(g, 2, ncol=3, scale=1, schedule=sched)
    without = render_frame(g, 2, ncol=3, scale=1)
    assert (
        with_timeline.shape[1] == without.shape[1]
        and with_timeline.shape[0] > without.shape[0] + 20
    )


def test_noise_timeline_cursor_moves(model, sched):
    f = compute_frames(model, sched, torch.arange(2), image_size=SIZE, steps=5)
    pics = [noise_timeline(sched, f.timesteps, k, width=200, height=40) for k in range(len(f))]
    assert all(p.shape == (40, 200) and p.dtype == np.uint8 for p in pics)
    # the cursor is a black vertical line: its column moves right as t falls
    cursor = [int(np.argmax((p[5:20] == 0).sum(axis=0))) for p in pics]
    assert cursor == sorted(cursor) and cursor[0] < 20 and cursor[-1] > 180


def _state(box) -> dict:
    """The widget state a notebook saves for ``box`` (model id -> state), as JupyterLab or nbclient
    would store it; what a frontend renders without a kernel."""
    from ipywidgets.embed import embed_data

    return {
        m["model_id"] if "model_id" in m else k: m
        for k, m in embed_data(views=[box])["manager_state"]["state"].items()
    }


def test_viewer_frames_live_in_the_page(model, sched):
    """One Image per frame in a Stack; Play, slider and Stack linked in the browser (jslink); the
    saved state holds every frame's PNG and shows an informative frame, not pure noise."""
    box = denoising_viewer(model, sched, n=4, image_size=SIZE, steps=8, guidance=2.0, scale=1)
    v = box.viewer
    assert "diffussm-viewer" in box._dom_classes and "diffussm-viewer-stack" in v.stack._dom_classes
    assert len(v.frames) == 9 and len(v.stack.children) == 9 and list(v.stack.children) == v.images
    assert [im.value for im in v.images] == v.pngs and len(set(v.pngs)) == 9
    assert all("diffussm-viewer-image" in im._dom_classes for im in v.images)
    assert (
        v.play.max == 8
        and v.step.options[0][0] == f"t = {T - 1}"
        and v.step.options[-1] == ("final", 8)
    )
    pairs = {(lk.source[0], lk.source[1], lk.target[0], lk.target[1]) for lk in v.links}
    assert pairs == {
        (v.play, "value", v.step, "index"),
        (v.step, "index", v.stack, "selected_index"),
    }
    k = v.step.index
    assert k == informative_frame(v.frames, sched) and 0 < k < 8
    assert (
        v.play.value == v.stack.selected_index == k
        and v.step.label == f"t = {int(v.frames.timesteps[k])}"
    )
    levels = log_snr(sched, v.frames.timesteps)
    assert levels[k] >= 0 > levels[k - 1]  # the first frame with signal >= noise
    v.show(3)
    assert v.step.index == v.play.value == v.stack.selected_index == 3 and v.step.value == 3
    v.show(-1)
    assert v.stack.selected_index == 8 and v.step.label == "final"

    v.show(k)
    state = _state(box)
    by_name = {}
    for m in state.values():
        by_name.setdefault(m["model_name"], []).append(m["state"])
    assert len(by_name["ImageModel"]) == 9 and len(by_name["LinkModel"]) == 2
    (stack,) = by_name["StackModel"]
    (play,) = by_name["PlayModel"]
    (slider,) = by_name["SelectionSliderModel"]
    assert (
        stack["selected_index"] == play["value"] == slider["index"] == k
        and len(stack["children"]) == 9
    )


def test_sampler_steps_and_new_noise_recompute_frames(model, sched):
    v = denoising_viewer(
        model, sched, n=3, image_size=SIZE, sampler="ddim", steps=8, guidance=2.0, scale=1
    ).viewer
    t_before, x_T = int(v.frames.timesteps[v.step.index]), v.x_T.clone()
    pngs_before = list(v.pngs)
    v.sampler.value = "dpm_solver++"
    assert v.frames.sampler == "dpm_solver++" and v.frames.steps == 8 and v.pngs != pngs_before
    assert [im.value for im in v.stack.children] == v.pngs
    assert torch.equal(v.frames.xs[0], x_T)  # the same initial noise
    # the slider stays at the nearest timestep
    assert abs(int(v.frames.timesteps[v.step.index]) - t_before) == int(
        (v.frames.timesteps - t_before).abs().min()
    )
    assert "DPM-Solver++" in v.status.value and "8 steps" in v.status.value
    v.steps.value = 4
    assert len(v.frames) == 5 and len(v.stack.children) == len(v.images) == 5 and v.play.max == 4
    v.steps.value = 12
    assert len(v.frames) == 13 and len(v.stack.children) == 13
    assert v.stack.selected_index == v.step.index == v.play.value
    v.sampler.value = "ddpm"
    assert v.frames.sampler == "ddpm" and len(v.frames) == 13
    before = v.frames
    v.new_noise.click()
    assert v.seed == 1 and not torch.equal(v.x_T, x_T) and torch.equal(v.frames.xs[0], v.x_T)
    assert not torch.equal(v.frames.xs[1], before.xs[1]) and v.frames.sampler == "ddpm"
    # every step count the dropdown cannot take leaves the frames and says why
    v.sampler.value = "dpm_solver++"
    shown = v.frames
    v.steps.value = T
    assert (
        v.frames is shown
        and "cannot sample this setting" in v.status.value
        and "steps" in v.status.value
    )
    assert not v.sampler.disabled and not v.steps.disabled  # controls re-enabled


def test_class_and_guidance_recompute_frames_from_the_same_noise(model, sched):
    v = denoising_viewer(
        model, sched, n=3, image_size=SIZE, sampler="ddim", steps=6, guidance=1.0, scale=1
    ).viewer
    v.show(-1)
    before = v.pngs[-1]
    v.class_select.value = 7
    assert v.frames.labels.tolist() == [7, 7, 7]
    assert v.step.index == len(v.frames) - 1 and v.pngs[-1] != before
    assert torch.allclose(v.frames.final, model.mu[[7, 7, 7]], atol=1e-4)
    assert torch.equal(v.frames.xs[0], v.x_T)  # same initial noise for every setting
    assert not v.class_select.disabled and not v.step.disabled  # controls re-enabled after sampling
    v.guidance.value = 3.0
    assert v.frames.guidance == 3.0 and len(v._cache) == 3
    cached = v.frames_for(("ddim", 6, 7, 1.0, 0))[0]
    v.guidance.value = 1.0
    assert v.frames is cached  # seen settings come from the cache


def test_viewer_without_classes(sched):
    v = denoising_viewer(NoClasses(sched), sched, n=2, image_size=SIZE, steps=5, scale=1).viewer
    assert v.class_select.disabled and v.guidance.disabled and v.guidance.value == 1.0
    assert v.frames.labels is None and v.frames.guidance_dirs is None and len(v.stack.children) == 6
    assert "unconditional" in v.status.value and "guidance direction" not in v.status.value


# one line naming the argument for each bad input (issue 27)
BAD_INPUT = [
    ("unknown sampler", "model", dict(sampler="euler"), "sampler must be one of"),
    ("zero steps", "model", dict(steps=0), "steps must be an integer >= 1"),
    ("negative steps", "model", dict(steps=-3), "steps must be an integer >= 1"),
    ("fractional steps", "model", dict(steps=2.5), "steps must be an integer >= 1"),
    ("negative guidance", "model", dict(guidance=-0.5), "guidance must be >= 0"),
    (
        "class too large",
        "model",
        dict(class_choice=10),
        r"class_choice must be -1 \(all\) or a class in \[0, 9\]",
    ),
    ("negative class", "model", dict(class_choice=-2), r"class_choice must be -1 \(all\)"),
    (
        "class of a model without classes",
        "no_classes",
        dict(class_choice=3),
        "class_choice=3: the class selector needs a class-conditional model",
    ),
    (
        "all classes of a model without classes",
        "no_classes",
        dict(class_choice=ALL_CLASSES),
        "no class conditioning",
    ),
    (
        "guidance for a model without classes",
        "no_classes",
        dict(guidance=2.0),
        "guidance=2.0 needs class labels",
    ),
    ("empty batch", "model", dict(n=0), "n .digits per batch. must be >= 1"),
]


@pytest.mark.parametrize("what, which, kwargs, message", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_viewer_bad_input_one_clear_line(model, sched, what, which, kwargs, message):
    m = model if which == "model" else NoClasses(sched)
    with pytest.raises(ValueError, match=message) as info:
        denoising_viewer(m, sched, **{"n": 2, "image_size": SIZE, "steps": 4, **kwargs})
    assert "\n" not in str(info.value), f"{what}: the message is not one line"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sampler="euler"), "sampler must be one of"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(guidance=-1.0), "guidance must be >= 0"),
    ],
)
def test_compute_frames_bad_input(model, sched, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_frames(model, sched, torch.tensor([1]), image_size=SIZE, **kwargs)


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
    # the viewer's frames (guidance panel, timeline) as the static fallback
    g = compute_frames(
        model,
        sched,
        torch.arange(4),
        image_size=SIZE,
        steps=3,
        guidance=2.0,
        with_guidance_dirs=True,
    )
    with Image.open(save_gif(g, tmp_path / "full.gif", scale=1, schedule=sched)) as im:
        assert (
            im.n_frames == 4
            and im.size == Image.fromarray(render_frame(g, 0, scale=1, schedule=sched)).size
        )


def test_strip_figure(model, sched):
    import matplotlib.pyplot as plt

    f = compute_frames(model, sched, torch.arange(4), image_size=SIZE, steps=20)
    fig = strip_figure(f, num=6, schedule=sched, title="strip")
    assert len(fig.axes) == 2 * 6
    assert (
        fig.axes[0].get_title().startswith(f"t = {T - 1}\nlog-SNR ")
        and fig.axes[5].get_title() == "final"
    )
    plt.close(fig)


def test_viewer_frames_caption(sched):
    f = ViewerFrames(
        timesteps=torch.tensor([49, 0, -1]),
        xs=torch.zeros(3, 1, 1, 2, 2),
        x0_preds=torch.zeros(3, 1, 1, 2, 2),
    )
    assert f.caption(0, sched).startswith("frame 0/2, t = 49, log-SNR = ")
    assert "final sample" in f.caption(2)
