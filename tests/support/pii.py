"""A deterministic corpus of personal data in the shapes people type it: e-mail addresses, phone numbers in several
national formats, payment cards with valid Luhn digits, IBANs with valid check digits, national ids, IP addresses."""

from __future__ import annotations

import ipaddress
import random
import string

SEED = 20261128


def _luhn_digit(partial: str) -> str:
    total = 0
    for index, char in enumerate(reversed(partial)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def _card(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + _luhn_digit(body)


def _group(digits: str, sizes: tuple[int, ...], separator: str) -> str:
    parts, start = [], 0
    for size in sizes:
        parts.append(digits[start : start + size])
        start += size
    return separator.join(part for part in parts if part)


def _iban(rng: random.Random, country: str, length: int) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    check = 98 - int(numeric) % 97
    return f"{country}{check:02d}{bban}"


def corpus() -> dict[str, list[str]]:
    rng = random.Random(SEED)
    names = ["jane.doe", "j.smith", "max_mustermann", "marie+bot", "o'brien", "li.wei99", "ana-maria", "x"]
    domains = ["contoso.example", "mail.fabrikam.example", "example.co.uk", "uni-bonn.example.de"]
    emails = [f"{rng.choice(names)}{i}@{rng.choice(domains)}" for i in range(40)]

    def digits(count: int) -> str:
        return "".join(rng.choice(string.digits) for _ in range(count))

    phones = []
    for _ in range(8):
        phones += [
            f"+1 ({rng.randint(200, 989)}) {rng.randint(200, 999)}-{digits(4)}",  # US
            f"({rng.randint(200, 989)}) {rng.randint(200, 999)}-{digits(4)}",
            f"+44 20 {digits(4)} {digits(4)}",  # UK
            f"07{digits(3)} {digits(6)}",
            f"+49 30 {digits(8)}",  # Germany
            f"+33 6 {digits(2)} {digits(2)} {digits(2)} {digits(2)}",  # France
            f"+91 {rng.randint(70000, 99999)} {digits(5)}",  # India
        ]
    cards = []
    for _ in range(10):
        visa, mastercard = _card(rng, "4", 16), _card(rng, "5" + str(rng.randint(1, 5)), 16)
        amex, discover = _card(rng, rng.choice(["34", "37"]), 15), _card(rng, "6011", 16)
        cards += [
            _group(visa, (4, 4, 4, 4), " "),
            _group(mastercard, (4, 4, 4, 4), "-"),
            _group(amex, (4, 6, 5), " "),
            discover,
        ]
    ibans = []
    for country, length in (("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18), ("ES", 24), ("IT", 27)):
        for _ in range(5):
            if country == "GB":
                iban = _iban(rng, country, length)
                iban = iban[:4] + "NWBK" + iban[8:]  # a bank code of letters, as British IBANs have
                numeric = "".join(str(int(c, 36)) for c in iban[4:] + iban[:2] + "00")
                iban = f"{iban[:2]}{98 - int(numeric) % 97:02d}{iban[4:]}"
            else:
                iban = _iban(rng, country, length)
            ibans.append(_group(iban, (4,) * 8, " ") if rng.random() < 0.5 else iban)
    national_ids = [f"{rng.randint(100, 665)}-{digits(2)}-{digits(4)}" for _ in range(10)]  # US SSN
    letters = "ABCEGHJKLMNPRSTWXYZ"
    national_ids += [
        f"{rng.choice(letters)}{rng.choice(letters)} {digits(2)} {digits(2)} {digits(2)} {rng.choice('ABCD')}"
        for _ in range(10)
    ]  # UK National Insurance number
    ipv4 = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20)]
    ipv6 = [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(15)]
    ipv6 += ["2001:db8::1", "fe80::1ff:fe23:4567:890a", "::ffff:192.0.2.128", "2001:db8:85a3::8a2e:370:7334", "::1"]
    return {
        "email": emails,
        "phone": phones,
        "payment card": cards,
        "iban": ibans,
        "national id": national_ids,
        "ipv4": ipv4,
        "ipv6": ipv6,
    }


def sentences(kind: str, value: str) -> str:
    return {
        "email": f"you can reach me at {value}, thanks",
        "phone": f"call me on {value} tomorrow",
        "payment card": f"my card is {value} and it was declined",
        "iban": f"please refund to {value}.",
        "national id": f"my id number is {value}",
        "ipv4": f"the request came from {value} again",
        "ipv6": f"my address is {value} behind the router",
    }[kind]
