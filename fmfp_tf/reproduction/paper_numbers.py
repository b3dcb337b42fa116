"""The paper's numbers for tables 3 to 6.

`paper_tables.csv` beside this module is a copy of `../shared/paper/tables.csv` (one row per cell:
table, defense, dataset, model, attack, size, accuracy in %), kept in the package so that a
reproduction report can print the paper's value next to ours on any machine.
"""
import csv
import functools
import importlib.resources
import io



@functools.lru_cache(maxsize=1)
def rows():
    """Every cell of tables 3 to 6 as dicts (size an int or None, accuracy_pct a float)."""
    text = importlib.resources.files(__package__).joinpath("paper_tables.csv").read_text(
        encoding="utf-8")
    cells = []
    for row in csv.DictReader(io.StringIO(text)):
        cells.append({"table": int(row["table"]), "defense": row["defense"],
                      "dataset": row["dataset"], "model": row["model"], "attack": row["attack"],
                      "size": int(row["size"]) if row["size"] else None,
                      "accuracy_pct": float(row["accuracy_pct"])})
    return tuple(cells)


def lookup(table, dataset, model, attack, size=None):
    """The paper's accuracy in % for one cell, or None when the paper has no such cell."""
    for cell in rows():
        if (cell["table"] == table and cell["dataset"] == dataset and cell["model"] == model
                and cell["attack"] == attack and cell["size"] == size):
            return cell["accuracy_pct"]
    return None
