"""The toy things the extending tests add: their sources as text, written into a new module."""

# a defense layer: mirrors a random half of the images left-right
TOY_FLIP = '''
@keras.saving.register_keras_serializable(package="toy")
class ToyFlip(RandomImageDefense):
    """Mirrors a random half of the images left-right."""

    def draw_transformation(self, images, seed):
        ops = self.backend
        return {"flip": ops.random.uniform((ops.shape(images)[0],), seed=seed) < 0.5}

    def apply_transformation(self, images, transformation):
        ops = self.backend
        flipped = ops.numpy.flip(images, axis=2)
        return ops.numpy.where(transformation["flip"][:, None, None, None], flipped, images)
'''

# a dataset drawn without files: three classes of stripes
STRIPES = '''
def stripes(split, image_size, seed, limit):
    """Three classes: horizontal, vertical or no stripes."""
    count = min(limit or 240, 240) if split == "train" else min(limit or 60, 60)
    rng = np.random.default_rng([seed, split == "test"])
    labels = (np.arange(count) % 3).astype(np.int32)
    height, width = image_size
    images = rng.integers(0, 60, (count, height, width, 3)).astype(np.uint8)
    images[labels == 0, ::4] = 255
    images[labels == 1, :, ::4] = 255
    return Arrays(images, labels, ["horizontal", "vertical", "plain"])
'''

# an online adversarial-training method with a setting of its own (key noise_share, flag
# --noise-share): uniform noise in a share of the eps-ball
NOISE_METHOD = '''
@dataclasses.dataclass(frozen=True)
class NoiseSettings(Settings):
    """The toy method's own setting: key noise_share, flag --noise-share."""

    prefix: typing.ClassVar[str] = "noise"
    share: float = setting(1.0, "share of at_eps the noise spans", above=0.0, maximum=1.0)


def noise_examples(config, model):
    """Uniform noise in a share of the eps-ball: a toy online method."""
    radius = config.at_eps * config.noise_share
    return (lambda x, y: tf.clip_by_value(
        x + tf.random.uniform(tf.shape(x), -radius, radius), 0.0, 1.0)), None
'''
