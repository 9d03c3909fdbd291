"""The first-slice patient: a full baseline record of a given age and sex, and its two indications."""
from fixtures.builders import condition, full_baseline, patient

RA = condition("69896004", "Rheumatoid arthritis")
AD = condition("24079001", "Atopic dermatitis")


def record(age=45, sex="female", drop=(), extra=()):
    labs = [o for o in full_baseline(sex=sex, age=age) if o["code"]["coding"][0]["code"] not in drop]
    return [patient(age=age, sex=sex), *labs, *extra]
