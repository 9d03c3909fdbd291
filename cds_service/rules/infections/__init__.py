"""Infection results read before a JAK inhibitor starts (decisions 5, 15 and 21).

Latent tuberculosis (IGRA / TST / diagnosis, and whether preventive treatment was completed after it), hepatitis
B core antibody (with HBsAg and HBV DNA), hepatitis C antibody (with HCV RNA) and HIV (with antiretroviral
therapy and viral load). Tables, windows and wording: cards/rules/infections.toml; tests and codes:
cards/labs-serology.toml; treatments: cards/classes-infections.toml.

Results come from ``facts.coded_results`` (cds_service/facts/safety.py), newest first. The newest READABLE result
decides; a result that could not be read and is newer than it is said on the card (or, with no card, on the
could-not-check card), never taken as negative. Same-day results: a readable one wins over an unreadable
companion (a QuantiFERON report sends its interpretation and its bare numbers together). The critical cards
(HBsAg or HBV DNA detected, HCV RNA detected, active TB) are other rules' findings under the same concern: the
warnings here give way to them.

One module per concern: tb (latent tuberculosis), hepatitis (B core antibody, C antibody), hiv; what they share
(reading results and treatments, the lines that say them, the card) is in common.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from cds_service.findings import Finding, Missing
from cds_service.rules.context import DraftOrder, RuleContext
from cds_service.rules.infections.hepatitis import hbv_core, hcv_antibody
from cds_service.rules.infections.hiv import hiv
from cds_service.rules.infections.tb import latent_tb

# -- the family -------------------------------------------------------------------------------------------------

# each evaluator takes the rules of its own table (the `rule` argument differs by table)
EVALUATORS: dict[str, Callable[[RuleContext, Any, DraftOrder], Iterator[Finding | Missing]]] = {
    "latent_tb_rule": latent_tb,
    "hbv_core_rule": hbv_core,
    "hcv_antibody_rule": hcv_antibody,
    "hiv_rule": hiv,
}


def evaluate(ctx: RuleContext) -> Iterator[Finding | Missing]:
    for order in ctx.systemic_orders():
        for table, evaluator in EVALUATORS.items():
            for rule in ctx.knowledge.rules.for_drug(table, order.drug):
                yield from evaluator(ctx, rule, order)
