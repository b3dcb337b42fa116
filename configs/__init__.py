"""YAML configs: train settings (gtsrb-*.yaml, orl-*.yaml, yale-*.yaml) and the paper's tables
(table3.yaml ... table6.yaml, read by `fmfp-tf reproduce`). Installed as `fmfp_tf.configs`."""
