"""The monitoring state of one patient for the SMART app: per analyte the series, the drug's lines and the
schedule, computed from the same knowledge (``cards/``) and the same facts and rules code as the patient-view
hook. Nothing here re-states a threshold or a schedule: it reads ``[[lab_threshold]]`` and
``[[monitoring_schedule]]`` through ``rules.monitoring`` and ``rules.lab_thresholds``.

The record comes from the app, which read it from the FHIR server with the patient-view service's own prefetch
queries (``queries()``), so the service never sees the FHIR access token.
"""
from __future__ import annotations

import uuid
from datetime import date, timedelta

from cds_service.facts import LabValue, PatientFacts, build_facts, today_from
from cds_service.findings import Finding, Missing
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
    request = HookRequest(hook="patient-view", hookInstance=str(uuid.uuid4()),
                          context={"patientId": patient_id}, prefetch=prefetch)
    done = Completion(request, service.prefetch, engine.fhir_client).fill()
    record = PatientRecord(done.by_key, request.patient_id, keep=engine.knowledge.observation_codes,
                           unavailable=done.unavailable, gaps=done.gaps)
    facts = build_facts(engine.knowledge, record, request.patient_id, today_from(engine.settings.evaluation_date))
    return facts, dict(done.unavailable)


def _display_unit(series: list[LabValue]) -> str | None:
    """The unit the laboratory reported the newest result in: the whole panel is drawn in it."""
    return series[0].reported_unit if series else None


def _in(analyte, value: LabValue, shown_unit: str) -> float:
    if value.reported_unit == shown_unit:
        return value.reported_value
    return round(to_unit(analyte, value.value, shown_unit), 4)


def _lines(ctx: RuleContext, drugs: list[str], analyte_id: str, analyte, series: list[LabValue], shown_unit: str,
           start: date | None) -> list[dict]:
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
                label = f"{'+' if change.direction == 'rise' else '-'}{change.percent:g} % of baseline"
            else:
                by_unit = shown_unit if shown_unit in change.by else analyte.canonical_unit
                amount = change.by[by_unit]
                if by_unit != shown_unit:
                    amount = to_unit(analyte, amount, shown_unit)
                value = _in(analyte, base, shown_unit) + (amount if change.direction == "rise" else -amount)
                label = f"baseline {'+' if change.direction == 'rise' else '-'}{amount:g} {pretty_unit(shown_unit)}"
            kind = "interrupt" if threshold.indicator == "critical" else "limit"
        elif threshold.above_uln_times is not None:
            if not series:
                continue
            limit, origin = lab_thresholds.relative_limit(threshold, series[0], analyte)
            value = to_unit(analyte, limit, shown_unit)
            label = f"{threshold.above_uln_times:g} × ULN"
            kind = "uln"
        else:
            limits = threshold.limits
            value = limits[shown_unit] if shown_unit in limits else to_unit(analyte, limits[analyte.canonical_unit],
                                                                            shown_unit)
            sign = "<" if threshold.direction == "below" else ">"
            label = f"{'do not start' if kind == 'do-not-start' else kind} {sign} {value:g} {pretty_unit(shown_unit)}"
        key = (round(value, 6), threshold.direction)
        if key in seen:              # do not start and interrupt at the same value: one line, both names
            same = next(line for line in out if (round(line["value"], 6), line["direction"]) == key)
            if kind not in same["kinds"]:
                same["kinds"].append(kind)
                same["label"] = " / ".join(same["kinds"]).replace("do-not-start", "do not start") + \
                    same["label"][same["label"].index(" <" if threshold.direction == "below" else " >"):] \
                    if (" <" in same["label"] or " >" in same["label"]) else same["label"]
            continue
        seen.add(key)
        out.append({"rule": threshold.id, "kind": kind, "kinds": [kind], "direction": threshold.direction,
                    "value": round(value, 4), "label": label, "indicator": threshold.indicator})
    order = {"interrupt": 0, "limit": 1, "uln": 1, "do-not-start": 2}
    for line in out:                 # the line is drawn as its most pressing kind while on treatment
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


def _visits(ctx: RuleContext, schedule, start: date, state: str | None, why: str) -> list[dict]:
    """The schedule's visits with their marks: the checkpoints (weeks 4, 8, 12...) done in their window or not,
    then each complete set after them (done) and the next one, due ``every_days`` after the last complete set.
    A visit not done is overdue, due or planned by date; the current one carries the rules' own verdict
    (``monitoring.schedule_status``, the one the card shows)."""
    today = ctx.facts.today
    dated = [_part_dates(ctx, part) for part in schedule.parts]

    def complete_in(opens: date, closes: date) -> date | None:
        firsts = [next((d for d in dates if opens <= d < closes), None) for dates in dated]
        return None if any(d is None for d in firsts) else max(firsts)

    visits: list[dict] = []
    checkpoints = schedule.checkpoints
    for i, checkpoint in enumerate(checkpoints):
        due = start + timedelta(days=checkpoint.week * 7)
        opens = max(start, due - timedelta(days=schedule.early_days))
        closes = (start + timedelta(days=checkpoints[i + 1].week * 7 - schedule.early_days) if i + 1 < len(checkpoints)
                  else due + timedelta(days=schedule.every_days - schedule.early_days))
        visits.append({"label": f"week {checkpoint.week}", "due": due,
                       "overdueFrom": start + timedelta(days=checkpoint.overdue_week * 7),
                       "done": complete_in(opens, min(closes, today + timedelta(days=1)))})
    periodic = ("every " + (f"{round(schedule.every_days / 30.4)} months" if schedule.every_days < 300 else "year"))
    after = visits[-1]["due"] + timedelta(days=schedule.every_days - schedule.early_days) if visits else start
    last = next((v["done"] for v in reversed(visits) if v["done"]), None)
    for d in sorted({d for dates in dated for d in dates if d >= after}):
        done = complete_in(d - timedelta(days=schedule.early_days), d + timedelta(days=1))
        if done is not None and (last is None or done > last):
            visits.append({"label": periodic, "due": (last or start) + timedelta(days=schedule.every_days),
                           "overdueFrom": (last or start) + timedelta(days=schedule.overdue_days), "done": done})
            last = done
    if not visits or visits[-1]["done"] is not None or visits[-1]["due"] <= today - timedelta(days=schedule.every_days):
        base = last or (visits[-1]["due"] if visits else start)
        visits.append({"label": periodic, "due": base + timedelta(days=schedule.every_days),
                       "overdueFrom": base + timedelta(days=schedule.overdue_days), "done": None})
    for visit in visits:
        if visit["done"] is not None:
            visit["status"] = "done"
        elif today >= visit["overdueFrom"]:
            visit["status"] = "overdue"
        elif today >= visit["due"] - timedelta(days=schedule.early_days):
            visit["status"] = "due"
        else:
            visit["status"] = "planned"
    if state in ("due", "overdue"):     # the visit the rules' verdict names ("week 4 check ..."), else the next
        named = next((v for v in visits if why.startswith(v["label"] + " ")), None)
        named = named or next((v for v in visits if v["status"] != "done"), None)
        if named is not None:
            named["status"] = state
    for visit in visits:
        for key in ("due", "overdueFrom", "done"):
            visit[key] = visit[key].isoformat() if visit[key] else None
    return visits


def _said(item) -> dict:
    if isinstance(item, Missing):
        return {"indicator": "warning", "rule": item.rule_id, "summary": f"Could not check {item.check}: {item.why}"}
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
        "analytes": [], "schedules": [], "statements": [],
    }
    if not drugs:
        out["message"] = "No systemic JAK inhibitor in use is on record for this patient: nothing to monitor."
        return out
    # what the patient-view hook would say, the same findings (one line each)
    out["statements"] = [_said(i) for i in monitoring.evaluate(ctx) if isinstance(i, (Finding, Missing))]
    schedules = [s for s in knowledge.rules.monitoring_schedule if monitoring.applies(s, drugs)]
    analyte_ids: list[str] = []
    for schedule in schedules:
        verdict, why, done = None, "", None
        if start is not None:
            _, done = monitoring.last_complete_set(ctx, schedule, start)
            verdict, why = monitoring.schedule_status(schedule, start, facts.today, done)
        analytes = []
        for part in schedule.parts:          # "ALT (or AST)": the alternatives on record, else the first
            present = [a for a in part.analytes if facts.labs.get(a)]
            analytes += present or part.analytes[:1]
        out["schedules"].append({
            "id": schedule.id, "display": schedule.display, "analytes": analytes,
            "state": verdict or "up to date", "why": why, "lastCompleteSet": done.isoformat() if done else None,
            "visits": _visits(ctx, schedule, start, verdict, why) if start is not None else [],
        })
        analyte_ids += [a for a in analytes if a not in analyte_ids]
    for analyte_id in analyte_ids:
        analyte = knowledge.analytes[analyte_id]
        series = list(facts.labs.get(analyte_id, []))                 # newest first
        shown = _display_unit(series)
        panel = {
            "id": analyte_id, "display": analyte.display, "loinc": list(analyte.loinc),
            "unit": pretty_unit(shown) if shown else None,
            "schedule": next(s["id"] for s in out["schedules"] if analyte_id in s["analytes"]),
            "unreadable": [{"date": u.when.isoformat() if u.when else None, "why": u.why}
                           for u in facts.unreadable(analyte_id)],
        }
        if shown is None:
            why = facts.why_unavailable("Observation", analyte.loinc)
            said = f"could not be obtained: {why}" if why else "none on record"
            if facts.unreadable(analyte_id):
                said = f"a result could not be interpreted: {facts.unreadable(analyte_id)[0].why}"
            panel.update(series=[], lines=[], message=f"{sentence(analyte.display)}: {said}.")
        else:
            panel["series"] = [{"date": v.when.isoformat(), "value": _in(analyte, v, shown),
                                "reported": f"{v.reported_value:g} {pretty_unit(v.reported_unit)}"}
                               for v in reversed(series)]
            panel["lines"] = _lines(ctx, drugs, analyte_id, analyte, series, shown, start)
        out["analytes"].append(panel)
    return out
