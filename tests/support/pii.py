"""A deterministic corpus of personal data in the shapes people type it: e-mail addresses, phone numbers in several
national formats, payment cards with valid Luhn digits, IBANs with valid check digits, national ids, IP addresses."""

from __future__ import annotations

import base64
import ipaddress
import random
import re
import string
import unicodedata
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

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
        "secret": f"here is the key {value} for the test",
        "mac": f"my laptop is {value} on the wifi",
        "passport": f"for the booking: {value} thanks",
    }[kind]


# Samples in the shapes the first corpus lacked, written by hand: each must be redacted whole.
HARD_SAMPLES: dict[str, list[str]] = {
    "email": [
        '"john doe"@example.com',
        '"very.unusual@strange"@contoso.example',
        "jörg.müller@bücher.example",
        "用户@例子.广告",
        "θσερ@παράδειγμα.δοκιμή",
        "jane dot doe at contoso dot com",
        "jane [at] contoso [dot] com",
        "jane(at)contoso(dot)example",
        "jane at contoso.com",
        "jane＠contoso．com",
        "ｊａｎｅ＠ｃｏｎｔｏｓｏ．ｃｏｍ",
        "first.last+tag@sub.mail.example.co.uk",
        "o'brien@example.ie",
        "jane%40contoso.example",
        "ja\u200bne@con\u200btoso.example",
    ],
    "phone": [
        "+1\u00a0555\u00a0123\u00a04567",
        "+44\u200920\u20097946\u20090958",
        "555\u2013123\u20134567",
        "555_123_4567",
        "０３－１２３４－５６７８",
        "+1 (555) 123-4567 ext. 89",
        "555-123-4567x123",
        "%2B81%2090%201234%205678",
        "+49\u202f30\u202f12345678",
        "tel:+33612345678",
    ],
    "payment card": [
        "4111\u00a01111\u00a01111\u00a01111",
        "4111\u20091111\u20091111\u20091111",
        "4111\u20131111\u20131111\u20131111",
        "4111_1111_1111_1111",
        "４１１１ １１１１ １１１１ １１１１",
        "5500-0000-0000-0004",
        "3782 822463 10005",
    ],
    "national id": [
        "123\u00a045\u00a06789",
        "123\u201345\u20136789",
        "078-05-1120",
        "QQ\u00a012\u00a034\u00a056\u00a0C",
    ],
    "iban": [
        "DE89\u00a03704\u00a00440\u00a00532\u00a00130\u00a000",
        "GB82\u00a0WEST\u00a01234\u00a05698\u00a07654\u00a032",
    ],
    "ipv4": ["ip10.20.30.40", "host=192.168.1.20", "１９２.１６８.１.２"],
    "ipv6": ["fe80::1%eth0", "[2001:db8::1]:443"],
    "secret": [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "DefaultEndpointsProtocol=https;AccountName=contoso;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;",
        "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=root;"
        "SharedAccessKey=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo=",
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "sk_live_51Hx9aBcDeFgHiJkLmNoPq",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "AKIAIOSFODNN7EXAMPLE",
        "password=hunter2hunter2",
        "Authorization: Bearer abc123def456ghi789",
        "?sv=2022-11-02&sig=AbCdEfGh1234%2FIjKl5678%3D",
    ],
    "mac": ["00:1A:2B:3C:4D:5E", "00-1a-2b-3c-4d-5e", "001a.2b3c.4d5e"],
    "passport": ["passport C01X00T47", "passport no. 123456789", "Passport number: X1234567", "L8988901C"],
}

# Ordinary chat and operations text: none of it may be changed (false positives).
ORDINARY_TEXT: list[str] = [
    "what can you do?",
    "help",
    "which alerts exist?",
    "rate 4 out of 5",
    "I will be at home later, look at this",
    "meet at 10:30 at the station",
    "version 1.2.3 released on 2026-11-28 at 10:30",
    "release 2.0 is due on 2026-12-01T09:00:00Z",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 and activity 550e8400-e29b-41d4-a716-446655440000",
    "p95 latency is 2 s, CPU 80 %",
    "the bot answered 201 in 35 ms",
    "python 3.11 and aiohttp 3.14",
    "I paid 20 EUR for 3 tickets",
    "room 101, floor 3",
    "can you dot the i's and cross the t's?",
    "error rate below 0.5 % for 30 min",
    "the top-level domain is .com",
    "en-US",
    "de-DE",
    "how do I reset my password?",
    "token limits are a thing",
    "it costs $1,299.99",
    "call me tomorrow at noon",
    "the meeting is in room B-12",
]


# Generated samples: one Hypothesis strategy per kind, drawing the separators, digit scripts, quoting, international
# domains and extensions people and programs use.
_SEPARATORS = (" ", "-", ".", "\u00a0", "\u2009", "\u202f", "\u2013", "\u2014", "_", "")
_DIGIT_SCRIPTS = ("0123456789", "０１２３４５６７８９", "٠١٢٣٤٥٦٧٨٩")  # ASCII, full-width, Arabic-Indic
_LETTERS = string.ascii_letters + "äöüßéèçñøåłžščəığşαβγδλμπσωабвгдежзиклмнопрстуфхцчшщыэюяあいうえお中文字"


def _script(draw: st.DrawFn, digits: str) -> str:
    script = draw(st.sampled_from(_DIGIT_SCRIPTS))
    return digits.translate(str.maketrans("0123456789", script))


def _grouped(draw: st.DrawFn, digits: str, sizes: list[int]) -> str:
    separator = draw(st.sampled_from(_SEPARATORS))
    return _group(digits, tuple(sizes), separator)


@st.composite
def emails(draw: st.DrawFn) -> str:
    word = st.text(_LETTERS + string.digits, min_size=2, max_size=12).filter(lambda w: w[0].isalpha())
    local_words = draw(st.lists(word, min_size=1, max_size=3))
    labels = draw(st.lists(st.text(_LETTERS, min_size=2, max_size=10), min_size=1, max_size=3))
    tld = draw(st.sampled_from(["com", "example", "de", "co.uk", "org", "info", "рф", "中国", "ελ"]))
    form = draw(st.sampled_from(["plain", "plus", "quoted", "spelled", "bracketed", "fullwidth"]))
    local = ".".join(local_words)
    domain = ".".join([*labels, tld])
    if form == "plus":
        return f"{local}+{draw(word)}@{domain}"
    if form == "quoted":
        return f'"{" ".join(local_words)}"@{domain}'
    if form == "spelled":
        return f"{' dot '.join(local_words)} at {' dot '.join([*labels, tld.replace('.', ' dot ')])}"
    if form == "bracketed":
        return f"{local} [at] {domain.replace('.', ' [dot] ')}"
    if form == "fullwidth":
        return f"{local}＠{domain}"
    return f"{local}@{domain}"


@st.composite
def phones(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(["", "+1 ", "+44 ", "+49 ", "+33 ", "+81 ", "+91 ", "+353 ", "00 49 "]))
    sizes = draw(st.lists(st.integers(2, 4), min_size=3, max_size=4).filter(lambda sizes: sum(sizes) >= 7))
    digits = "".join(draw(st.sampled_from("0123456789")) for _ in range(sum(sizes)))
    number = country + _grouped(draw, digits, sizes)
    extension = draw(st.sampled_from(["", " ext. 12", " x345", " #7"]))
    return _script(draw, number + extension)


@st.composite
def cards(draw: st.DrawFn) -> str:
    rng = random.Random(draw(st.integers(0, 2**32)))
    prefix, length, sizes = draw(
        st.sampled_from(
            [("4", 16, [4, 4, 4, 4]), ("51", 16, [4, 4, 4, 4]), ("37", 15, [4, 6, 5]), ("6011", 16, [4] * 4)]
        )
    )
    return _script(draw, _grouped(draw, _card(rng, prefix, length), sizes))


@st.composite
def ibans(draw: st.DrawFn) -> str:
    rng = random.Random(draw(st.integers(0, 2**32)))
    country, length = draw(st.sampled_from([("DE", 22), ("FR", 27), ("NL", 18), ("ES", 24), ("IT", 27), ("BE", 16)]))
    iban = _iban(rng, country, length)
    separator = draw(st.sampled_from([" ", "\u00a0", "", "-"]))
    return _group(iban, (4,) * 8, separator)


@st.composite
def national_ids(draw: st.DrawFn) -> str:
    digits = "".join(draw(st.sampled_from("0123456789")) for _ in range(9))
    if draw(st.booleans()):
        separator = draw(st.sampled_from(["-", " ", "\u00a0", "\u2013"]))
        return _group(digits, (3, 2, 4), separator)
    letters = "ABCEGHJKLMNPRSTWXYZ"
    prefix = draw(st.sampled_from(letters)) + draw(st.sampled_from(letters))
    separator = draw(st.sampled_from([" ", "\u00a0", ""]))
    return separator.join([prefix, digits[:2], digits[2:4], digits[4:6], draw(st.sampled_from("ABCD"))])


@st.composite
def ipv4s(draw: st.DrawFn) -> str:
    address = str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    return draw(st.sampled_from(["", "ip", "host=", "from:", "("])) + address


@st.composite
def ipv6s(draw: st.DrawFn) -> str:
    address = str(ipaddress.IPv6Address(draw(st.integers(1, 2**128 - 1))))
    return draw(st.sampled_from(["{}", "[{}]:443", "{}%eth0", "addr={}"])).format(address)


@st.composite
def macs(draw: st.DrawFn) -> str:
    octets = [f"{draw(st.integers(0, 255)):02x}" for _ in range(6)]
    if draw(st.booleans()):
        octets = [octet.upper() for octet in octets]
    form = draw(st.sampled_from([":", "-", "cisco"]))
    if form == "cisco":
        joined = "".join(octets)
        return ".".join(joined[i : i + 4] for i in range(0, 12, 4))
    return form.join(octets)


@st.composite
def secrets_(draw: st.DrawFn) -> str:
    rng = random.Random(draw(st.integers(0, 2**32)))

    def token(alphabet: str, size: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(size))

    def b64url(size: int) -> str:
        return base64.urlsafe_b64encode(rng.randbytes(size)).decode().rstrip("=")

    alnum = string.ascii_letters + string.digits
    kind = draw(st.sampled_from(["jwt", "azure", "account_key", "openai", "github", "aws", "password", "bearer"]))
    if kind == "jwt":
        header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').decode().rstrip("=")
        return f"{header}.{b64url(rng.randint(20, 120))}.{b64url(rng.randint(32, 64))}"
    account_key = base64.b64encode(rng.randbytes(64)).decode()
    if kind == "azure":
        return f"DefaultEndpointsProtocol=https;AccountName={token(string.ascii_lowercase, 8)};AccountKey={account_key}"
    if kind == "account_key":
        return account_key
    if kind == "openai":
        return "sk-" + draw(st.sampled_from(["", "proj-", "svcacct-"])) + token(alnum + "-_", 40)
    if kind == "github":
        return draw(st.sampled_from(["ghp_", "gho_", "ghs_", "ghu_"])) + token(alnum, 36)
    if kind == "aws":
        return "AKIA" + token(string.ascii_uppercase + string.digits, 16)
    if kind == "password":
        return draw(st.sampled_from(["password=", "Password: ", "pwd=", "client_secret="])) + token(alnum + "!$%", 14)
    return "Authorization: Bearer " + token(alnum + "-._~", 32)


@st.composite
def passports(draw: st.DrawFn) -> str:
    number = draw(st.sampled_from(string.ascii_uppercase)) + "".join(
        draw(st.sampled_from("0123456789")) for _ in range(draw(st.integers(7, 8)))
    )
    return draw(st.sampled_from(["passport {}", "Passport No. {}", "passport number: {}", "{}"])).format(number)


STRATEGIES: dict[str, st.SearchStrategy[str]] = {
    "email": emails(),
    "phone": phones(),
    "payment card": cards(),
    "iban": ibans(),
    "national id": national_ids(),
    "ipv4": ipv4s(),
    "ipv6": ipv6s(),
    "mac": macs(),
    "secret": secrets_(),
    "passport": passports(),
}
_NOT_IDENTIFYING = {"dot", "at", "com", "org", "info", "example", "passport", "number", "password", "bearer"}
_NOT_IDENTIFYING |= {"authorization", "defaultendpointsprotocol", "https", "accountname", "accountkey", "client"}
_NOT_IDENTIFYING |= {"secret", "eth0", "host", "from", "addr", "ext"}


def fragments(value: str) -> list[str]:
    """The pieces of a sample that identify someone on their own: every word or digit group of 4 or more characters
    (after the normalisation redaction applies), besides the words of the template."""
    normal = unicodedata.normalize("NFKC", value)
    pieces = re.split(r"[^\w]+|_", normal)
    return [piece for piece in pieces if len(piece) >= 4 and piece.lower() not in _NOT_IDENTIFYING]


def leaks(kind: str, value: str, redact: Callable[[str], str]) -> bool:
    """Whether the sample, or an identifying piece of it, survives redaction in its sentence."""
    out = unicodedata.normalize("NFKC", redact(sentences(kind, value)))
    # A secret's surroundings (account and host names of a connection string) are not secret; its key is long.
    pieces = fragments(value)
    if kind == "secret":
        pieces = [piece for piece in pieces if len(piece) >= 12 and any(char.isdigit() for char in piece)]
    return value in out or any(piece in out for piece in pieces)


def _try_kind(
    kind: str, strategy: st.SearchStrategy[str], redact: Callable[[str], str], examples: int
) -> tuple[list[str], list[str]]:
    tried: list[str] = []
    leaked: list[str] = []

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None)
    @given(strategy)
    def run(value: str) -> None:
        if value not in tried:
            tried.append(value)
            if leaks(kind, value, redact):
                leaked.append(value)

    run()
    return tried, leaked


def measure_recall(redact: Callable[[str], str], examples: int = 300) -> dict[str, tuple[int, list[str]]]:
    """Per kind: how many generated samples were tried and which of them leaked (deterministic: derandomized)."""
    results: dict[str, tuple[int, list[str]]] = {}
    for kind, strategy in STRATEGIES.items():
        tried, leaked = _try_kind(kind, strategy, redact, examples)
        results[kind] = (len(tried), leaked)
    return results
