"""The monitoring state of one patient for the SMART app: per analyte the series, the drug's lines and the
schedule, computed from the same knowledge (``cards/``) and the same facts and rules code as the patient-view
hook. Nothing here re-states a threshold or a schedule: it reads ``[[lab_threshold]]`` and
``[[monitoring_schedule]]`` through ``rules.monitoring`` and ``rules.lab_thresholds``.

The record comes from the app, which read it from the FHIR server with the patient-view service's own prefetch
queries (``queries()``), so the service never sees the FHIR access token.

Texts (findings, analyte and schedule names, line and visit labels, messages) are in the language of the call:
the caller passes the engine whose knowledge is in that language and sets the catalogue (``i18n.using``), as the
hook endpoint does; the codes the app keys on (``kind``, ``status``, ``state``) stay English.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from cds_service.facts import LabValue, PatientFacts, build_facts, today_from
from cds_service.findings import Finding, Missing
from cds_service.i18n import number, say
from cds_service.knowledge.units import to_unit
from cds_service.record.completion import Completion
from cds_service.record.index import PatientRecord
from cds_service.rules import lab_thresholds, monitoring
from cds_service.rules.context import RuleContext
from cds_service.rules.text import sentence
from cds_service.rules.text import unit as pretty_unit
from cds_service.wire import HookRequest

SERVICE_ID = "jak-patient-view"


def queries(engine) -> dict[str, str]:
    """The patient-view service's prefetch templates: what the app reads from the FHIR server."""
    return dict(engine.services[SERVICE_ID].prefetch)


def read_facts(engine, patient_id: str, prefetch: dict) -> tuple[PatientFacts, dict[str, str]]:
    """Facts from what the app read (as a hook call with this prefetch and no fhirServer); keys the app did not
    send are unavailable, and said so."""
    service = engine.services[SERVICE_ID]
    request = HookRequest(
        hook="patient-view", hookInstance=str(uuid.uuid4()), context={"patientId": patient_id}, prefetch=prefetch
    )
    done = Completion(request, service.prefetch, engine.fhir_client).fill()
    record = PatientRecord(
        done.by_key,
        request.patient_id,
        keep=engine.knowledge.observation_codes,
        unavailable=done.unavailable,
        gaps=done.gaps,
    )
    facts = build_facts(engine.knowledge, record, request.patient_id, today_from(engine.settings.evaluation_date))
    return facts, dict(done.unavailable)


def _display_unit(series: list[LabValue]) -> str | None:
    """The unit the laboratory reported the newest result in: the whole panel is drawn in it."""
    return series[0].reported_unit if series else None


def _in(analyte, value: LabValue, shown_unit: str) -> float:
    if value.reported_unit == shown_unit:
        return value.reported_value
    return round(to_unit(analyte, value.value, shown_unit), 4)


def _lines(
    ctx: RuleContext,
    drugs: list[str],
    analyte_id: str,
    analyte,
    series: list[LabValue],
    shown_unit: str,
    start: date | None,
) -> list[dict]:
    """The drug's thresholds for this analyte as horizontal lines in ``shown_unit``."""
    out: list[dict] = []
    seen: set[tuple] = set()
    for threshold in ctx.knowledge.rules.lab_threshold:
        if threshold.analyte != analyte_id or not any(d in threshold.drugs for d in drugs):
            continue
        phase = "on_treatment" if "on_treatment" in threshold.phase else "start"
        kind = "do-not-start" if phase == "start" else ("interrupt" if threshold.indicator == "critical" else "limit")
        if threshold.from_baseline is not None:
            if start is None:
                continue
            base = next((v for v in series if v.when <= start), None)
            if base is None:
                continue
            change = threshold.from_baseline
            if change.percent is not None:
                factor = 1 + (change.percent if change.direction == "rise" else -change.percent) / 100
                value = _in(analyte, base, shown_unit) * factor
                label = say(
                    "{change} % of baseline",
                    change=f"{'+' if change.direction == 'rise' else '-'}{number(change.percent)}",
                )
            else:
                by_unit = shown_unit if shown_unit in change.by else analyte.canonical_unit
                amount = change.by[by_unit]
                if by_unit != shown_unit:
                    amount = to_unit(analyte, amount, shown_unit)
                value = _in(analyte, base, shown_unit) + (amount if change.direction == "rise" else -amount)
                label = say(
                    "baseline {change} {unit}",
                    change=f"{'+' if change.direction == 'rise' else '-'}{number(amount)}",
                    unit=pretty_unit(shown_unit),
                )
            kind = "interrupt" if threshold.indicator == "critical" else "limit"
        elif threshold.above_uln_times is not None:
            if not series:
                continue
            limit, _origin = lab_thresholds.relative_limit(threshold, series[0], analyte)
            value = to_unit(analyte, limit, shown_unit)
            label = say("{times} × ULN", times=float(threshold.above_uln_times))
            kind = "uln"
        else:
            limits = threshold.limits
            value = (
                limits[shown_unit]
                if shown_unit in limits
                else to_unit(analyte, limits[analyte.canonical_unit], shown_unit)
            )
            sign = "<" if threshold.direction == "below" else ">"
            bound = f"{sign} {number(value)} {pretty_unit(shown_unit)}"
            label = None  # "<kinds> <bound>", made below (one line can carry two kinds)
        key = (round(value, 6), threshold.direction)
        if key in seen:  # do not start and interrupt at the same value: one line, both names
            same = next(line for line in out if (round(line["value"], 6), line["direction"]) == key)
            if kind not in same["kinds"]:
                same["kinds"].append(kind)
            continue
        seen.add(key)
        out.append(
            {
                "rule": threshold.id,
                "kind": kind,
                "kinds": [kind],
                "direction": threshold.direction,
                "value": round(value, 4),
                "label": label,
                "indicator": threshold.indicator,
                "bound": None if label is not None else bound,
            }
        )
    order = {"interrupt": 0, "limit": 1, "uln": 1, "do-not-start": 2}
    names = {"interrupt": say("interrupt"), "limit": say("limit"), "do-not-start": say("do not start")}
    for line in out:  # the line is drawn as its most pressing kind while on treatment
        bound = line.pop("bound")
        if bound is not None:  # a fixed limit: its kinds in the order they were found, then the bound
            line["label"] = " / ".join(names[k] for k in line["kinds"]) + " " + bound
        line["kinds"].sort(key=order.__getitem__)
        line["kind"] = line["kinds"][0]
    return out


def _part_dates(ctx: RuleContext, part) -> list[date]:
    """Dates of the usable results (or coded records) of one schedule part, oldest first."""
    facts = ctx.facts
    found: set[date] = set()
    for name in part.analytes:
        found.update(v.when for v in facts.labs.get(name, []))
    for ref in part.codes:
        found.update(r.when for r in facts.records.get(f"{ref.system}|{ref.code}", []) if r.when is not None)
    return sorted(found)


def _visits(ctx: RuleContext, schedule, start: date, state: str | None, week: int | None) -> list[dict]:
    """The schedule's visits with their marks: the checkpoints (weeks 4, 8, 12...) done in their window or not,
    then each complete set after them (done) and the next one, due ``every_days`` after the last complete set.
    A visit not done is overdue, due or planned by date; the current one carries the rules' own verdict
    (``monitoring.schedule_verdict``, the one the card shows: ``week`` is its checkpoint, None the repeat)."""
    today = ctx.facts.today
    dated = [_part_dates(ctx, part) for part in schedule.parts]

    def complete_in(opens: date, closes: date) -> date | None:
        firsts = [next((d for d in dates if opens <= d < closes), None) for dates in dated]
        found = [d for d in firsts if d is not None]
        return None if len(found) < len(firsts) else max(found)

    visits: list[dict] = []
    checkpoints = schedule.checkpoints
    for i, checkpoint in enumerate(checkpoints):
        due = start + timedelta(days=checkpoint.week * 7)
        opens = max(start, due - timedelta(days=schedule.early_days))
        closes = (
            start + timedelta(days=checkpoints[i + 1].week * 7 - schedule.early_days)
            if i + 1 < len(checkpoints)
            else due + timedelta(days=schedule.every_days - schedule.early_days)
        )
        visits.append(
            {
                "label": say("week {week}", week=checkpoint.week),
                "week": checkpoint.week,
                "due": due,
                "overdueFrom": start + timedelta(days=checkpoint.overdue_week * 7),
                "done": complete_in(opens, min(closes, today + timedelta(days=1))),
            }
        )
    periodic = (
        say("every {months} months", months=round(schedule.every_days / 30.4))
        if schedule.every_days < 300
        else say("every year")
    )
    after = visits[-1]["due"] + timedelta(days=schedule.every_days - schedule.early_days) if visits else start
    last = next((v["done"] for v in reversed(visits) if v["done"]), None)
    for d in sorted({d for dates in dated for d in dates if d >= after}):
        done = complete_in(d - timedelta(days=schedule.early_days), d + timedelta(days=1))
        if done is not None and (last is None or done > last):
            visits.append(
                {
                    "label": periodic,
                    "week": None,
                    "due": (last or start) + timedelta(days=schedule.every_days),
                    "overdueFrom": (last or start) + timedelta(days=schedule.overdue_days),
                    "done": done,
                }
            )
            last = done
    if not visits or visits[-1]["done"] is not None or visits[-1]["due"] <= today - timedelta(days=schedule.every_days):
        base = last or (visits[-1]["due"] if visits else start)
        visits.append(
            {
                "label": periodic,
                "week": None,
                "due": base + timedelta(days=schedule.every_days),
                "overdueFrom": base + timedelta(days=schedule.overdue_days),
                "done": None,
            }
        )
    for visit in visits:
        if visit["done"] is not None:
            visit["status"] = "done"
        elif today >= visit["overdueFrom"]:
            visit["status"] = "overdue"
        elif today >= visit["due"] - timedelta(days=schedule.early_days):
            visit["status"] = "due"
        else:
            visit["status"] = "planned"
    if state in ("due", "overdue"):  # the visit of the checkpoint the rules' verdict is about, else the next
        named = next((v for v in visits if week is not None and v["week"] == week), None)
        named = named or next((v for v in visits if v["status"] != "done"), None)
        if named is not None:
            named["status"] = state
    for visit in visits:
        for key in ("due", "overdueFrom", "done"):
            visit[key] = visit[key].isoformat() if visit[key] else None
    return visits


def _said(item) -> dict:
    if isinstance(item, Missing):
        return {
            "indicator": "warning",
            "rule": item.rule_id,
            "summary": say("Could not check {check}: {why}", check=item.check, why=item.why),
        }
    return {"indicator": item.indicator, "rule": item.rule_id, "summary": item.summary}


def state(engine, patient_id: str, prefetch: dict) -> dict:
    """The monitoring state (JSON-ready) of the patient whose record the app read."""
    knowledge = engine.knowledge
    facts, unavailable = read_facts(engine, patient_id, prefetch)
    ctx = RuleContext(knowledge=knowledge, facts=facts, hook="patient-view")
    starts, names, start = monitoring.treatment(ctx)
    drugs = list(names)
    out: dict = {
        "today": facts.today.isoformat(),
        "drugs": [{"id": d, "name": names[d], "start": starts[d].isoformat() if d in starts else None} for d in drugs],
        "start": start.isoformat() if start else None,
        "unavailable": sorted(set(unavailable.values())),
        "analytes": [],
        "schedules": [],
        "statements": [],
    }
    if not drugs:
        out["message"] = say("No systemic JAK inhibitor in use is on record for this patient: nothing to monitor.")
        return out
    # what the patient-view hook would say, the same findings (one line each)
    out["statements"] = [_said(i) for i in monitoring.evaluate(ctx) if isinstance(i, (Finding, Missing))]
    schedules = [s for s in knowledge.rules.monitoring_schedule if monitoring.applies(s, drugs)]
    analyte_ids: list[str] = []
    for schedule in schedules:
        verdict, why, week, done = None, "", None, None
        if start is not None:
            _, done = monitoring.last_complete_set(ctx, schedule, start)
            verdict, why, week = monitoring.schedule_verdict(schedule, start, facts.today, done)
        analytes: list[str] = []
        for part in schedule.parts:  # "ALT (or AST)": the alternatives on record, else the first
            present = [a for a in part.analytes if facts.labs.get(a)]
            analytes += present or part.analytes[:1]
        out["schedules"].append(
            {
                "id": schedule.id,
                "display": schedule.display,
                "analytes": analytes,
                "state": verdict or "up to date",
                "why": why,
                "lastCompleteSet": done.isoformat() if done else None,
                "visits": _visits(ctx, schedule, start, verdict, week) if start is not None else [],
            }
        )
        analyte_ids += [a for a in analytes if a not in analyte_ids]
    for analyte_id in analyte_ids:
        analyte = knowledge.analytes[analyte_id]
        series = list(facts.labs.get(analyte_id, []))  # newest first
        shown = _display_unit(series)
        panel = {
            "id": analyte_id,
            "display": analyte.display,
            "loinc": list(analyte.loinc),
            "unit": pretty_unit(shown) if shown else None,
            "schedule": next(s["id"] for s in out["schedules"] if analyte_id in s["analytes"]),
            "unreadable": [
                {"date": u.when.isoformat() if u.when else None, "why": u.why} for u in facts.unreadable(analyte_id)
            ],
        }
        if shown is None:
            gap = facts.why_unavailable("Observation", analyte.loinc)
            name = sentence(analyte.display)
            if facts.unreadable(analyte_id):
                said = say(
                    "{analyte}: a result could not be interpreted: {why}.",
                    analyte=name,
                    why=facts.unreadable(analyte_id)[0].why,
                )
            elif gap:
                said = say("{analyte}: could not be obtained: {why}.", analyte=name, why=gap)
            else:
                said = say("{analyte}: none on record.", analyte=name)
            panel.update(series=[], lines=[], message=said)
        else:
            panel["series"] = [
                {
                    "date": v.when.isoformat(),
                    "value": _in(analyte, v, shown),
                    "reported": f"{number(v.reported_value)} {pretty_unit(v.reported_unit)}",
                }
                for v in reversed(series)
            ]
            panel["lines"] = _lines(ctx, drugs, analyte_id, analyte, series, shown, start)
        out["analytes"].append(panel)
    return out
