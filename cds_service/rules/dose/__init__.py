"""Dose rules: the licensed maximum for the order's indication and the lower doses a patient's situation calls
for (age, weight, kidney and liver function, interacting medicines, start vs continuation).

Reads ``[[dose]]`` (cards/rules/dose.toml), ``[[dose_halving]]`` and ``[interacting_class.*]``; the order's
induction/maintenance phase (``[dose_phase.*]``) is read with the order (``DraftOrder.phase``). For each draft
order every applicable entry is evaluated; the lowest applicable cap wins and ONE card per order (concern
``dose:<order id>``) lists every reason with the patient's values. Its suggestion edits the draft to that dose
and frequency (or, for "not recommended", removes the draft), so accepting it makes the same order pass on sign.
Data a rule needs but cannot read is reported as a ``Missing`` gap, never read as normal.

Halvings (decision 14, ``outcome = "halve"``) are caps too: the dose that otherwise applies (the lowest cap of the
order's indication, phase and patient, and the drug's ``otherwise`` doses) is stepped down along the drug's
``[[dose_halving]]`` steps once per halving group. When the order does not state its phase and the halved dose
depends on it, the lower (maintenance) dose is the limit and the card offers both corrections, each writing its
phase into the order.
"""

from __future__ import annotations

from collections.abc import Iterator

from cds_service.findings import Finding, Missing
from cds_service.rules.context import RuleContext
from cds_service.rules.dose.order import evaluate_order

__all__ = ["evaluate", "evaluate_order"]


def evaluate(ctx: RuleContext) -> Iterator[Finding | Missing]:
    for order in ctx.systemic_orders():
        yield from evaluate_order(ctx, order, ctx.knowledge.rules.for_drug("dose", order.drug))
