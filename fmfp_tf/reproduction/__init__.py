"""Reproduction of the paper's tables 3 to 6: `reproduce(["table5"], out_dir, quick=True)`."""
from fmfp_tf.reproduction.runner import reproduce, resolve_data_dirs, run_table
from fmfp_tf.reproduction.table_spec import TABLES, load as load_table

__all__ = ["reproduce", "resolve_data_dirs", "run_table", "TABLES", "load_table"]
