"""Print a model card's shortcut checks as Markdown tables: its validation scores overall, per source and per
age group, with each class's recall where the group holds that class.

    python scripts/card_tables.py weights/pneumonia.json [weights/covid.json ...]

The tables in docs/models.md are this script's output; the card stays the one owner of the figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifier.card import ModelCard, Scores


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def table(card: ModelCard) -> str:
    """One row per image set (all, each source, each age group): images, accuracy, ROC AUC, every class's recall."""
    validation = card.validation
    rows: list[tuple[str, Scores]] = [("all", validation)]
    rows += [(f"source: {name}", scores) for name, scores in (validation.by_source or {}).items()]
    rows += [(f"age: {name}", scores) for name, scores in (validation.by_age_group or {}).items()]
    header = ["images", "n", "accuracy", "ROC AUC", *(f"recall {c}" for c in card.classes)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, scores in rows:
        auc = "" if scores.roc_auc is None else f"{scores.roc_auc:.3f}"
        recalls = [percent(scores.recall.get(c)) for c in card.classes]
        lines.append("| " + " | ".join([name, str(scores.n), percent(scores.accuracy), auc, *recalls]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cards", nargs="+", type=Path, help="model cards (weights/<name>.json)")
    args = parser.parse_args(argv)
    for path in args.cards:
        card = ModelCard.load(path)
        decision = "" if card.threshold is None else f", threshold {card.threshold:.3f}"
        if card.class_offsets:
            decision = ", class offsets " + ", ".join(f"{c} {o:+.2f}" for c, o in card.class_offsets.items())
        print(f"`{card.name}` {card.version}{decision}\n\n{table(card)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
