"""The classifier of the paper's "MTCNN" face pipeline.

In that pipeline an MTCNN detector (Zhang et al. 2016) finds and aligns the face first (see
`fmfp_tf.data.face_alignment`); the aligned crop is then classified by the VGG-style CNN with
batch normalisation that also serves as DNN2.
"""
from fmfp_tf.models.traffic_signs import dnn2


def face_cnn(input_shape, num_classes, name="mtcnn"):
    return dnn2(input_shape, num_classes, name=name)
