"""A mini Xception (depthwise-separable convolutions) on the bundled digits, with augmentation;
prints the test accuracy and the epoch time.

    python examples/xception_digits.py

``dlkit.models.mini_xception``, the "mini Xception" of Chollet's *Deep Learning with Python*
(ch. 9): a 5x5 Conv2D stem, then three blocks (32, 64, 128 filters) of twice
BatchNormalization + relu + SeparableConv2D, MaxPooling2D(3, strides=2) and a strided 1x1 Conv2D
residual, global average pooling, Dropout(0.5) and a Dense layer. The book's stem keeps the size
of its 180x180 images; here it has strides 2 (28x28 digits: 12x12 into the blocks), which
quarters the blocks' work. Augmentation, training and split as in ``resnet_digits.py``.

Measured on a shared 2-core CPU: 5 epochs, test accuracy 0.9855, about 20 s an epoch (38 s for the
first, compiling included). XLA's CPU backend runs depthwise convolutions slowly: per image this net
costs about as much as the ResNet of ``resnet_digits.py`` with a fraction of its arithmetic.
"""
import os
import sys

from dlkit.models import mini_xception

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resnet_digits as shared  # noqa: E402 - the augmentation, the training and the report are the same


def build_model():
    return mini_xception((28, 28, 1), 10, filters=(32, 64, 128), stem_strides=2, momentum=0.9,
                         augmentation=shared.augmentation(), name="mini_xception")


def main(epochs: int = 5, verbose: int = 2) -> float:
    return shared.train_and_evaluate(build_model(), epochs, verbose=verbose)[0]


if __name__ == "__main__":
    main()
