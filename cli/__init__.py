"""The `fmfp-tf` command line (installed as `fmfp_tf.cli`)."""
