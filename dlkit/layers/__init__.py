"""Keras-named layers, each a Flax Linen module (see ``dlkit.layers.base`` for the conventions)."""
from dlkit.layers.attention import (
                               LayerNormalization,
                               MultiHeadAttention,
                               PositionalEmbedding,
                               TransformerDecoder,
                               TransformerEncoder,
)
from dlkit.layers.base import Layer, add_loss
from dlkit.layers.bidirectional import Bidirectional
from dlkit.layers.convolutional import Conv1D, Conv2D, Conv3D
from dlkit.layers.core import Activation, Dense, Dropout, Flatten, GaussianNoise, LeakyReLU, Reshape
from dlkit.layers.embedding import Embedding
from dlkit.layers.lambda_layer import Lambda
from dlkit.layers.merging import (
                               Add,
                               Average,
                               Concatenate,
                               Maximum,
                               Minimum,
                               Multiply,
                               Subtract,
                               add,
                               average,
                               concatenate,
                               maximum,
                               minimum,
                               multiply,
                               subtract,
)
from dlkit.layers.normalization import BatchNormalization
from dlkit.layers.pooling import (
                               AveragePooling1D,
                               AveragePooling2D,
                               AveragePooling3D,
                               GlobalAveragePooling1D,
                               GlobalAveragePooling2D,
                               GlobalAveragePooling3D,
                               GlobalMaxPooling1D,
                               GlobalMaxPooling2D,
                               GlobalMaxPooling3D,
                               MaxPooling1D,
                               MaxPooling2D,
                               MaxPooling3D,
)
from dlkit.layers.preprocessing import (
                               Normalization,
                               RandomCrop,
                               RandomFlip,
                               RandomRotation,
                               RandomTranslation,
                               RandomZoom,
                               Rescaling,
)
from dlkit.layers.recurrent import GRU, LSTM, SimpleRNN
from dlkit.layers.regularization import SpatialDropout1D, SpatialDropout2D, SpatialDropout3D
from dlkit.layers.reshaping import (
                               Cropping1D,
                               Cropping2D,
                               Cropping3D,
                               Permute,
                               RepeatVector,
                               UpSampling1D,
                               UpSampling2D,
                               UpSampling3D,
                               ZeroPadding1D,
                               ZeroPadding2D,
                               ZeroPadding3D,
)
from dlkit.layers.separable import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
from dlkit.layers.text_vectorization import TextVectorization
from dlkit.layers.transposed import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from dlkit.layers.wrappers import TimeDistributed
from dlkit.symbolic import Input

Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D

__all__ = [
    "Add", "Average", "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract", "add", "average",
    "concatenate", "maximum", "minimum", "multiply", "subtract",
    "Activation", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool2D", "BatchNormalization",
    "Conv1D", "Conv2D", "Conv3D", "Convolution2D", "Dense", "Dropout", "Flatten", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "Input", "Layer", "MaxPool2D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "Normalization", "RandomCrop", "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "Rescaling",
    "Reshape", "add_loss",
]
__all__ += ["LayerNormalization", "MultiHeadAttention", "PositionalEmbedding", "TransformerDecoder",
            "TransformerEncoder"]
__all__ += ["Bidirectional", "Embedding", "GRU", "LSTM", "SimpleRNN"]
__all__ += ["Conv2DTranspose", "GaussianNoise", "LeakyReLU", "UpSampling2D"]
__all__ += ["Conv1DTranspose", "Conv3DTranspose", "Cropping1D", "Cropping2D", "Cropping3D", "DepthwiseConv1D",
            "DepthwiseConv2D", "Permute", "RepeatVector", "SeparableConv1D", "SeparableConv2D", "SpatialDropout1D",
            "SpatialDropout2D", "SpatialDropout3D", "TimeDistributed", "UpSampling1D", "UpSampling3D",
            "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"]
__all__ += ["Lambda", "TextVectorization"]
