#!/usr/bin/env python3
"""Writes crates/policy/tests/pii/phones.jsonl: a labelled set of phone numbers that no one
here wrote. Faker (https://pypi.org/project/Faker/) makes each locale's numbers in its own
formats; libphonenumber's Python port (https://pypi.org/project/phonenumbers/) keeps those it
calls possible numbers for the locale's country (Faker also makes numbers no plan has); each
is set in a sentence among the numbers prose holds besides (dates, times, amounts, order
numbers, versions), which the detector must leave alone.

    python3 -m pip install faker==40.63.0 phonenumbers==9.0.43
    python3 scripts/phone_corpus.py > crates/policy/tests/pii/phones.jsonl

Deterministic: the same versions write the same file.
"""

import json
import random

import phonenumbers
from faker import Faker

LOCALES = [
    "en_US", "en_GB", "en_CA", "en_AU", "en_IN", "en_NZ", "en_IE", "de_DE", "de_AT", "de_CH",
    "fr_FR", "fr_CH", "es_ES", "es_MX", "it_IT", "nl_NL", "pt_BR", "pt_PT", "pl_PL", "sv_SE",
    "da_DK", "no_NO", "fi_FI", "cs_CZ", "ru_RU", "uk_UA", "tr_TR", "ja_JP", "ko_KR", "zh_CN",
    "id_ID", "th_TH", "vi_VN", "el_GR", "he_IL", "hu_HU", "ro_RO",
]
PER_LOCALE = 12

TEMPLATES = [
    "Call {name} at {phone} before {time} on {date}.",
    "{name}, order #{order}, tel. {phone}, total {amount}.",
    "Phone: {phone}",
    "You can reach the {city} office on {phone} (Mon-Fri, {time}-17:00).",
    "Invoice {order} of {date}: {amount}; questions to {phone}, reference {ref}.",
    "Kontakt: {name}, {phone} – Termin am {date} um {time}.",
    "Ticket {ref} (v{version}): customer asked for a call back on {phone}.",
    "mobile {phone}",
    "{name} ({city}) - {phone} - ID {order}",
    "Please text {phone} if the parcel {ref} is late; it weighs {weight} kg.",
]


def region(locale):
    country = locale.split("_")[1]
    return {"UK": "GB"}.get(country, country)


def main():
    rng = random.Random(20261201)
    out = []
    for locale in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(rng.randrange(1 << 30))
        kept = 0
        tries = 0
        while kept < PER_LOCALE and tries < PER_LOCALE * 20:
            tries += 1
            phone = fake.phone_number()
            try:
                parsed = phonenumbers.parse(phone, region(locale))
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_possible_number(parsed):
                continue
            text = rng.choice(TEMPLATES).format(
                name=fake.name(),
                phone=phone,
                time=f"{rng.randrange(7, 19):02d}:{rng.choice(['00', '15', '30', '45'])}",
                date=f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                order=rng.randrange(10000, 99999999),
                amount=f"{rng.randrange(1, 9999)}.{rng.randrange(0, 100):02d} EUR",
                city=fake.city(),
                ref=f"{rng.choice('ABCDEFGH')}{rng.randrange(100, 99999)}",
                version=f"{rng.randrange(1, 9)}.{rng.randrange(0, 20)}.{rng.randrange(0, 9)}",
                weight=f"{rng.randrange(1, 40)}.{rng.randrange(0, 10)}",
            )
            out.append({"locale": locale, "text": text,
                        "entities": [{"type": "phone", "value": phone}]})
            kept += 1
    for line in out:
        print(json.dumps(line, ensure_ascii=False))


if __name__ == "__main__":
    main()
