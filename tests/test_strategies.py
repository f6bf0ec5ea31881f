"""The four strategies of model/strategies.py (SPEC 2) and ModelConfig."""
import json

import numpy as np
import pytest
import tensorflow as tf

from model import encoders, latent, losses, strategies
from model.config import ModelConfig

B, S, N = 2, 32, 16
# Narrow networks keep these tests fast; the structure is the paper's.
SMALL = dict(image_size=S, latent_dim=8, num_points=N, resnet_widths=(8, 8, 16, 16),
             cloud_widths=(8, 16), pose_hidden=16, heatmap_channels=16, fold_hidden=16)

CASES = {
    "cvae": ModelConfig(strategy="cvae", **SMALL),
    "extended_heatmap": ModelConfig(strategy="extended", decoders=("heatmap",), **SMALL),
    "extended_cloud": ModelConfig(strategy="extended", decoders=("cloud",), **SMALL),
    "extended_both": ModelConfig(strategy="extended", decoders=("cloud", "heatmap"), **SMALL),
    "kl": ModelConfig(strategy="kl", **SMALL),
    "poe": ModelConfig(strategy="poe", **SMALL),
}
FULL = ["pose", "heatmap", "chamfer", "emd", "recon"]
EXPECTED_TERMS = {
    "cvae": ["rgb/pose", "rgb/recon", "rgb/kl_prior"],
    "extended_heatmap": ["rgb/pose", "rgb/heatmap", "rgb/recon", "rgb/kl_prior"],
    "extended_cloud": ["rgb/pose", "rgb/chamfer", "rgb/emd", "rgb/recon", "rgb/kl_prior"],
    "extended_both": [f"rgb/{t}" for t in FULL] + ["rgb/kl_prior"],
    "kl": ([f"{z}/{t}" for z in ("joint", "rgb") for t in FULL]
           + ["joint/kl_prior", "rgb/kl_prior", "align/kl"]),
    "poe": ([f"{z}/{t}" for z in ("rgb", "cloud", "joint") for t in FULL]
            + ["rgb/kl_prior", "cloud/kl_prior"]),
}


def _batch(seed=0, labelled=(1.0, 1.0)):
    size = len(labelled)
    rng = np.random.default_rng(seed)
    f = lambda *shape: tf.constant(rng.normal(size=shape).astype(np.float32))  # noqa: E731
    return {"image": tf.constant(rng.uniform(size=(size, S, S, 3)).astype(np.float32)),
            "pose": f(size, 21, 3), "cloud": f(size, N, 3),
            "heatmaps": tf.constant(rng.uniform(size=(size, S // 4, S // 4, 21))
                                    .astype(np.float32)),
            "labelled": tf.constant(labelled, tf.float32)}


@pytest.fixture(scope="module")
def models():
    tf.keras.utils.set_random_seed(0)
    return {name: strategies.build_model(cfg) for name, cfg in CASES.items()}


def _total(name, t, beta, beta_prime=1.0):
    if name == "kl":
        return (t["joint/recon"] + beta * t["joint/kl_prior"] + t["rgb/recon"]
                + beta * t["rgb/kl_prior"] + beta_prime * t["align/kl"])
    if name == "poe":
        return (t["rgb/recon"] + t["cloud/recon"] + t["joint/recon"]
                + beta * (t["rgb/kl_prior"] + t["cloud/kl_prior"]))
    return t["rgb/recon"] + beta * t["rgb/kl_prior"]


@pytest.mark.parametrize("name", list(CASES))
def test_each_strategy_has_exactly_the_terms_of_its_equation(models, name):
    terms = models[name].compute_losses(_batch(), beta=0.1, training=False)
    assert sorted(terms) == sorted(EXPECTED_TERMS[name] + ["total"])
    assert all(t.shape == () for t in terms.values())
    values = {k: float(v) for k, v in terms.items()}
    assert values["total"] == pytest.approx(_total(name, values, 0.1), rel=1e-5)
    for latent_name in models[name].latent_names:
        t = {k.split("/")[1]: v for k, v in values.items() if k.startswith(latent_name + "/")}
        cfg = CASES[name]
        expected = (t["pose"] + cfg.lambda_heat * t.get("heatmap", 0.0)
                    + cfg.lambda_cloud * (t.get("chamfer", 0.0) + t.get("emd", 0.0)))
        assert t["recon"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_reach_every_trainable_variable(models, name):
    model = models[name]
    with tf.GradientTape() as tape:
        total = model.compute_losses(_batch(1), beta=1e-3, training=True)["total"]
    grads = tape.gradient(total, model.trainable_variables)
    missing = [v.name for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing
    zero = [v.name for v, g in zip(model.trainable_variables, grads)
            if not np.any(g.numpy()) or not np.isfinite(g.numpy()).all()]
    assert not zero


def test_sub_networks_per_strategy(models):
    expected = {  # encoders, decoders
        "cvae": (("rgb",), ("pose",)),
        "extended_heatmap": (("rgb",), ("pose", "heatmap")),
        "extended_cloud": (("rgb",), ("pose", "cloud")),
        "extended_both": (("rgb",), ("pose", "heatmap", "cloud")),
        "kl": (("rgb", "joint"), ("pose", "heatmap", "cloud")),
        "poe": (("rgb", "cloud"), ("pose", "heatmap", "cloud")),
    }
    for name, (enc, dec) in expected.items():
        model = models[name]
        assert (model.encoder_names, model.decoder_names) == (enc, dec), name
        assert (model.heatmap_decoder is not None) == ("heatmap" in dec)
        assert (model.cloud_decoder is not None) == ("cloud" in dec)
    # Parameter counts: the strategies differ exactly by their extra sub-networks.
    count = {name: m.count_params() for name, m in models.items()}
    rgb = models["cvae"].rgb_encoder.count_params()
    assert all(m.rgb_encoder.count_params() == rgb for m in models.values())
    heat = models["extended_heatmap"].heatmap_decoder.count_params()
    cloud_dec = models["extended_cloud"].cloud_decoder.count_params()
    assert count["extended_both"] == count["cvae"] + heat + cloud_dec
    assert count["poe"] == count["extended_both"] + models["poe"].cloud_encoder.count_params()
    assert count["kl"] == count["extended_both"] + models["kl"].joint_encoder.count_params()
    # S3's joint encoder has a ResNet-18 of its own (Alg. 2), beside a ResPEL like S4's cloud
    # encoder; its heads see both features (16 + 16), the cloud encoder's the cloud only.
    joint = models["kl"].joint_encoder
    assert joint.count_params() == (models["cvae"].rgb_encoder.backbone.count_params()
                                    + models["poe"].cloud_encoder.backbone.count_params()
                                    + 2 * ((16 + 16) * 8 + 8))
    assert joint.heads.mean.kernel.shape == (16 + 16, 8)
    assert models["poe"].cloud_encoder.heads.mean.kernel.shape == (16, 8)


def test_batched_decoding_matches_per_latent_inference(models):
    model = models["poe"]
    batch = _batch(2)
    terms = model.compute_losses(batch, beta=0.0, training=False)
    mu_r, _ = model.encode_rgb(batch["image"])
    mu_c, lv_c = model.cloud_encoder(batch["cloud"], training=False)
    _, lv_r = model.encode_rgb(batch["image"])
    mu_j, _ = latent.product_of_experts([mu_r, mu_c], [lv_r, lv_c])
    pose_r = model.predict_pose(batch["image"])
    np.testing.assert_allclose(pose_r.numpy(), model.decode(mu_r)["pose"].numpy(), rtol=1e-5)
    for name, mu in (("rgb", mu_r), ("cloud", mu_c), ("joint", mu_j)):
        out = model.decode(mu)
        assert set(out) == {"pose", "heatmaps", "cloud"}
        assert out["heatmaps"].shape == (B, S // 4, S // 4, 21) and out["cloud"].shape == (B, N, 3)
        pose = float(tf.reduce_mean(losses.pose_error(out["pose"], batch["pose"])))
        heat = float(tf.reduce_mean(losses.heatmap_error(out["heatmaps"], batch["heatmaps"])))
        assert float(terms[f"{name}/pose"]) == pytest.approx(pose, rel=1e-4)
        assert float(terms[f"{name}/heatmap"]) == pytest.approx(heat, rel=1e-4)
    kl = float(tf.reduce_mean(latent.kl_to_prior(mu_c, lv_c)))
    assert float(terms["cloud/kl_prior"]) == pytest.approx(kl, rel=1e-4)


def test_kl_alignment_term_is_kl_of_joint_to_rgb_posterior(models):
    model = models["kl"]
    batch = _batch(3)
    terms = model.compute_losses(batch, beta=0.0, training=False)
    joint = model.joint_encoder(batch["image"], batch["cloud"], training=False)
    rgb = model.encode_rgb(batch["image"])
    expected = float(tf.reduce_mean(latent.kl_divergence(*joint, *rgb)))
    assert float(terms["align/kl"]) == pytest.approx(expected, rel=1e-4)


def _gradients(model, term, sub_network, training):
    """Gradients of compute_losses(...)[term] (a name or a tuple of names, summed) with respect to
    the trainable variables of `sub_network`."""
    names = (term,) if isinstance(term, str) else term
    with tf.GradientTape() as tape:
        terms = model.compute_losses(_batch(7), beta=1e-3, training=training)
        value = tf.add_n([terms[n] for n in names])
    return tape.gradient(value, sub_network.trainable_variables)


def test_kl_joint_elbo_trains_the_joint_encoder_only(models):
    """Alg. 2: q(z|R,C) has its own parameters, so its ELBO does not train q(z|R).

    training=False: in training mode the decoders' batch norm pools statistics over the joint
    and the RGB latents of the step, which couples them through the batch statistics.
    """
    model = models["kl"]
    elbo = ("joint/recon", "joint/kl_prior")
    # Zeros rather than None: the latents are decoded as one concatenated batch.
    grads = _gradients(model, elbo, model.rgb_encoder, False)
    assert all(g is None or not np.any(g.numpy()) for g in grads)
    grads = _gradients(model, elbo, model.joint_encoder.rgb_backbone, False)
    assert all(g is not None and np.any(g.numpy()) for g in grads)


def test_kl_alignment_trains_the_rgb_encoder_only(models):
    """Eq. 3's KL(q(z|R,C) || q(z|R)) pulls q(z|R) towards the joint posterior, which it holds
    fixed: minimised with respect to both, the two collapsed onto each other (model docstring)."""
    model = models["kl"]
    for sub_network in (model.rgb_encoder.heads, model.rgb_encoder.backbone):
        grads = _gradients(model, "align/kl", sub_network, True)
        assert all(g is not None and np.any(g.numpy()) for g in grads), sub_network.name
    grads = _gradients(model, "align/kl", model.joint_encoder, True)
    assert all(g is None or not np.any(g.numpy()) for g in grads)


def test_poe_joint_posterior_is_the_product_with_the_prior_expert(models):
    """Eq. 4: z_joint ~ PoE(p(z), q(z|R), q(z|C)), the N(0, I) expert included once."""
    model = models["poe"]
    batch = _batch(8)
    posteriors = model.encode_posteriors(batch["image"], batch["cloud"], training=False)
    assert list(posteriors) == list(model.latent_names)
    rgb = model.encode_rgb(batch["image"], training=False)
    cloud = model.cloud_encoder(batch["cloud"], training=False)
    for name, expected in (("rgb", rgb), ("cloud", cloud)):
        for got, want in zip(posteriors[name], expected):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    experts = ([rgb[0], cloud[0]], [rgb[1], cloud[1]])
    product = latent.product_of_experts(*experts, include_prior=True)
    for got, want in zip(posteriors["joint"], product):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    # The comparison can tell: leaving the prior expert out changes the product here.
    without = latent.product_of_experts(*experts, include_prior=False)
    assert np.abs(without[1].numpy() - posteriors["joint"][1].numpy()).min() > 0.01


@pytest.mark.parametrize("name", ["cvae", "kl", "poe"])
def test_latents_are_sampled_when_training(models, monkeypatch, name):
    """Training decodes z = mu + exp(logvar / 2) eps, eps ~ N(0, I), for every latent."""
    model = models[name]
    sampled = []
    sampling_call = latent.Sampling.call

    def record(layer, inputs, training=None, seed=None):
        z = sampling_call(layer, inputs, training=training, seed=seed)
        sampled.append((inputs, z))
        return z

    monkeypatch.setattr(latent.Sampling, "call", record)
    tf.random.set_seed(0)
    batch = _batch(9, labelled=(1.0,) * 16)
    first = model.compute_losses(batch, beta=0.0, training=True)
    second = model.compute_losses(batch, beta=0.0, training=True)
    # The same batch twice: only the noise of the samples differs between the two passes.
    assert float(first["rgb/pose"]) != float(second["rgb/pose"])
    assert len(sampled) == 2 * len(model.latent_names)
    eps = np.concatenate([((z - mu) / tf.exp(logvar / 2)).numpy().ravel()
                          for (mu, logvar), z in sampled])
    assert eps.size == 2 * len(model.latent_names) * 16 * 8
    assert abs(eps.mean()) < 0.1 and abs(eps.std() - 1.0) < 0.1


@pytest.mark.parametrize("name", ["cvae", "poe"])
def test_a_seed_fixes_the_sampling_noise(models, name):
    """The training loop passes a seed of (run seed, step, replica): a resumed run draws the
    noise an uninterrupted one would have drawn; every latent gets its own."""
    model, batch = models[name], _batch(10, labelled=(1.0,) * 16)
    seed = tf.constant([3, 7], tf.int64)
    # Batch norm's moving statistics change in training mode; the pose terms do not depend on
    # them there, so two passes with one seed agree exactly.
    first = model.compute_losses(batch, beta=0.0, training=True, seed=seed)
    again = model.compute_losses(batch, beta=0.0, training=True, seed=seed)
    other = model.compute_losses(batch, beta=0.0, training=True, seed=seed + 1)
    for latent_name in model.latent_names:
        key = f"{latent_name}/pose"
        assert float(first[key]) == float(again[key])
        assert float(first[key]) != float(other[key])


def test_weak_supervision_masks_the_pose_of_unlabelled_samples(models):
    model = models["cvae"]
    batch = _batch(4, labelled=(1.0, 0.0))
    changed = dict(batch, pose=tf.concat([batch["pose"][:1], batch["pose"][1:] + 100.0], 0))
    a = model.compute_losses(batch, beta=0.0, training=False)
    b = model.compute_losses(changed, beta=0.0, training=False)
    assert float(a["rgb/pose"]) == pytest.approx(float(b["rgb/pose"]))
    pred = model.predict_pose(batch["image"])
    only_first = float(losses.pose_error(pred[:1], batch["pose"][:1])[0])
    assert float(a["rgb/pose"]) == pytest.approx(only_first, rel=1e-5)
    # No labelled sample: no pose term and no gradient into the pose decoder from it.
    none = dict(batch, labelled=tf.zeros([B]))
    with tf.GradientTape() as tape:
        t = model.compute_losses(none, beta=0.0, training=False)
    assert float(t["rgb/pose"]) == 0.0
    grads = tape.gradient(t["total"], model.pose_decoder.trainable_variables)
    assert all(g is None or not np.any(g.numpy()) for g in grads)


def test_sampling_only_when_training(models):
    model = models["cvae"]
    batch = _batch(5)
    a = model.compute_losses(batch, beta=0.0, training=False)["rgb/pose"]
    b = model.compute_losses(batch, beta=0.0, training=False)["rgb/pose"]
    assert float(a) == float(b)


def test_checkpoint_restores_into_a_model_built_from_the_config(models, tmp_path):
    model = models["poe"]
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    tf.keras.utils.set_random_seed(1)
    fresh = strategies.build_model(CASES["poe"])
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    image = _batch(6)["image"]
    np.testing.assert_allclose(fresh.predict_pose(image).numpy(),
                               model.predict_pose(image).numpy(), rtol=1e-6)
    assert fresh.build_from_config() is fresh                # idempotent
    assert len(fresh.variables) == len(model.variables)


def test_model_config_round_trip_and_validation():
    cfg = ModelConfig(strategy="extended", decoders=["cloud", "pose", "heatmap"], image_size=64)
    assert cfg.decoders == ("heatmap", "cloud") and cfg.heatmap_size == 16
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    default = ModelConfig()
    assert (default.latent_dim, default.num_points, default.lambda_heat, default.lambda_cloud,
            default.beta_prime, default.image_size) == (64, 256, 0.01, 1.0, 1.0, 256)
    assert strategies.STRATEGIES == ("cvae", "extended", "kl", "poe")
    with pytest.raises(ValueError, match="strategy"):
        ModelConfig(strategy="vae")
    with pytest.raises(ValueError, match="decoders.*only for strategy 'extended'"):
        ModelConfig(strategy="poe", decoders=("cloud",))
    with pytest.raises(ValueError, match="unknown decoder"):
        ModelConfig(strategy="extended", decoders=("depth",))
    with pytest.raises(ValueError, match="image_size=48"):
        ModelConfig(strategy="poe", image_size=48)
    ModelConfig(strategy="cvae", image_size=48)                # no heatmap decoder: any size
    with pytest.raises(ValueError, match="num_points=200"):
        ModelConfig(strategy="kl", num_points=200)
    with pytest.raises(ValueError, match="latent_dim"):
        ModelConfig(latent_dim=0)
    with pytest.raises(ValueError, match="unknown field.*'z_dim'"):
        ModelConfig.from_dict({"z_dim": 64})
    with pytest.raises(TypeError, match="ModelConfig"):
        strategies.build_model({"strategy": "poe"})


@pytest.mark.parametrize("strategy, decoders, total, trainable", [
    ("cvae", (), 11_301_247, 11_291_647),
    ("extended", ("heatmap", "cloud"), 14_071_258, 14_028_506),
    # S3 = S4's networks + a second ResNet-18 backbone (the joint encoder's own, 11,186,112 /
    # 11,176,512 trainable) + the joint heads' 512 RGB inputs (2 heads x 512 x 64 weights).
    ("kl", (), 15_367_834 + 11_186_112 + 2 * 512 * 64, 15_321_114 + 11_176_512 + 2 * 512 * 64),
    ("poe", (), 15_367_834, 15_321_114),
])
def test_parameter_counts_at_paper_size(strategy, decoders, total, trainable):
    """Full-size networks (SPEC 4, 256 px): the counts docs/model.md gives. The ResNet-18 backbone
    alone has 11,186,112 (test_encoders); the rest is heads, the cloud encoder and decoders."""
    model = strategies.build_model(ModelConfig(strategy=strategy, image_size=256,
                                               decoders=decoders))
    assert model.count_params() == total
    assert sum(v.shape.num_elements() for v in model.trainable_variables) == trainable


def test_width_multiplier_scales_every_network():
    assert ModelConfig.at_width(1.0) == ModelConfig()
    quarter = ModelConfig.at_width(0.25, strategy="kl", image_size=64, num_points=64)
    assert (quarter.resnet_widths, quarter.cloud_widths, quarter.pose_hidden,
            quarter.heatmap_channels, quarter.fold_hidden) == (
                (16, 32, 64, 128), (16, 32, 64, 128), 32, 64, 128)
    assert (quarter.strategy, quarter.image_size, quarter.num_points) == ("kl", 64, 64)
    assert ModelConfig.at_width(0.1).heatmap_channels == 24   # 25.6 -> a multiple of 4
    assert ModelConfig.at_width(0.01).resnet_widths == (4, 4, 4, 5)   # at least 4
    with pytest.raises(ValueError, match="width must be positive"):
        ModelConfig.at_width(0.0)
    with pytest.raises(ValueError, match="follow from width"):
        ModelConfig.at_width(0.5, fold_hidden=8)
    # Convolution and dense weights scale with the square of the width: a quarter-width
    # ResNet-18 backbone has about 1/16 of the paper's 11,186,112 parameters.
    backbone = encoders.ResNet18Backbone(quarter.resnet_widths)
    backbone(tf.zeros([1, 64, 64, 3]))
    assert abs(backbone.count_params() / 11_186_112 - 1 / 16) < 0.002


MODALITIES = {"cvae": (), "extended_heatmap": ("heatmaps",), "extended_cloud": ("cloud",),
              "extended_both": ("cloud", "heatmaps"), "kl": ("cloud", "heatmaps"),
              "poe": ("cloud", "heatmaps")}


@pytest.mark.parametrize("name", list(CASES))
def test_a_batch_needs_only_the_modalities_the_strategy_reads(models, name):
    needed = strategies.batch_modalities(CASES[name])
    assert needed == MODALITIES[name]
    batch = _batch()
    full = models[name].compute_losses(batch, 1.0, training=False)
    lean = {k: v for k, v in batch.items() if k not in ("cloud", "heatmaps") or k in needed}
    # Without training the latents are the means: the same batch gives the same terms.
    terms = models[name].compute_losses(lean, 1.0, training=False)
    assert sorted(terms) == sorted(full)
    for key in full:
        np.testing.assert_allclose(terms[key], full[key], rtol=1e-6, err_msg=key)
    for dropped in needed:
        short = {k: v for k, v in batch.items() if k != dropped}
        with pytest.raises(ValueError, match=f"reads .*'{dropped}'.*which the batch lacks"):
            models[name].compute_losses(short, 1.0, training=False)
