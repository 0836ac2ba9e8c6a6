"""Deterministic sample source databases (SQLite) for the three demo entities.

They differ in schema, schedule (daily / weekly / monthly) and language; ``de`` needs translation,
every source has injected duplicates (same business key, different versions), odd characters, NULLs
and rows outside the demo interval (which a correct extract must leave out).
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from pathlib import Path


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


#: The data interval each demo entity runs for: [start, end) under its timetable.
DEMO_INTERVALS: dict[str, tuple[dt.datetime, dt.datetime]] = {
    "de": (_utc(2026, 11, 1), _utc(2026, 11, 2)),  # @daily
    "jp": (_utc(2026, 11, 1), _utc(2026, 11, 8)),  # weekly, Sundays
    "br": (_utc(2026, 10, 1), _utc(2026, 11, 1)),  # @monthly
}

ODD = ['Müller & Söhne "Präzision"', "Comma, Inc.", "Line\nBreak GmbH", "Tab\tCo", "Back\\slash", "😀 Emoji AG", ""]


def _ts(start: dt.datetime, span: dt.timedelta, rng: random.Random) -> str:
    return (start + dt.timedelta(seconds=rng.randrange(int(span.total_seconds())))).strftime("%Y-%m-%d %H:%M:%S")


def _dupes(rows: list[list[object]], rng: random.Random, share: float, bump: int | None) -> list[list[object]]:
    """Re-emit ``share`` of the rows under the same key; ``bump`` = index of a timestamp made older."""
    extra = []
    for row in rng.sample(rows, int(len(rows) * share)):
        copy = list(row)
        if bump is not None:
            older = dt.datetime.strptime(str(copy[bump]), "%Y-%m-%d %H:%M:%S") - dt.timedelta(minutes=1)
            copy[bump] = older.strftime("%Y-%m-%d %H:%M:%S")
            copy[1] = f"{copy[1]} (stale)"
        extra.append(copy)
    out = rows + extra
    rng.shuffle(out)
    return out


def make_de(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    industries = [
        "Maschinenbau",
        "Einzelhandel",
        "Großhandel",
        "Softwareentwicklung",
        "Unternehmensberatung",
        "Baugewerbe",
        "Lebensmittelherstellung",
        "Logistik und Spedition",
        "Gastronomie",
        "Immobilienverwaltung",
        "Energieversorgung",
        "Gesundheitswesen",
        "Feinmechanik",  # the last one is not in the glossary
    ]
    cities = ["Berlin", "München", "Köln", "Düsseldorf", "Straße am See", "Görlitz"]
    forms = ["GmbH", "AG", "KG", "  GmbH & Co. KG ", "", None]
    start, end = DEMO_INTERVALS["de"]
    span = end - start
    data: list[list[object]] = []
    for i in range(rows):
        inside = i % 10 != 0  # one row in ten lies outside the run's day
        when = _ts(start if inside else start - span, span, rng)
        name = rng.choice(ODD) + f" {i}" if i % 50 == 0 else f"Firma {i} {rng.choice(['Nord', 'Süd', 'Ost'])}"
        data.append(
            [
                f"HRB{100000 + i}",
                name,
                rng.choice(forms),
                rng.choice(industries),
                rng.choice(cities),
                f"{rng.randrange(25000, 5000000)}.{rng.randrange(100):02d}",
                f"{rng.randrange(1950, 2025)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                when,
            ]
        )
    data = _dupes(data, rng, 0.05, bump=7)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS unternehmen")
        conn.execute(
            "CREATE TABLE unternehmen (firmen_id TEXT, firmenname TEXT, rechtsform TEXT, branche TEXT, "
            "stadt TEXT, stammkapital TEXT, gegruendet TEXT, aktualisiert TEXT)"
        )
        conn.executemany("INSERT INTO unternehmen VALUES (?, ?, ?, ?, ?, ?, ?, ?)", data)


def make_jp(path: Path, rows: int, seed: int = 2) -> None:
    rng = random.Random(seed)
    names = ["株式会社さくら", "合同会社ひかり", "有限会社山田商店", "株式会社テクノ・ジャパン", "ＡＢＣ株式会社"]
    prefectures = ["東京都千代田区丸の内1-1", "大阪府大阪市北区梅田2-2", "北海道札幌市中央区3-3", "沖縄県那覇市\n4-4"]
    start, end = DEMO_INTERVALS["jp"]
    span = end - start
    data: list[list[object]] = []
    for i in range(rows):
        inside = i % 8 != 0
        when = _ts(start if inside else end, span, rng)
        data.append(
            [
                i,
                f"{7010001000000 + i * 7}",
                f"{rng.choice(names)} {i}",
                rng.choice(prefectures),
                rng.randrange(1_000_000, 10_000_000_000),
                rng.choice([None, rng.randrange(1, 5000)]),
                when,
            ]
        )
    dupes = [
        [len(data) + n, *row[1:3], row[3] + " (再掲)", *row[4:]]
        for n, row in enumerate(rng.sample(data, len(data) // 20))
    ]
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS kigyou")
        conn.execute(
            "CREATE TABLE kigyou (seq INTEGER, houjin_bangou TEXT, shougou TEXT, shozaichi TEXT, "
            "shihonkin INTEGER, juugyouin INTEGER, touroku TEXT)"
        )
        conn.executemany("INSERT INTO kigyou VALUES (?, ?, ?, ?, ?, ?, ?)", data + dupes)


def make_br(path: Path, rows: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    start, end = DEMO_INTERVALS["br"]
    span = end - start
    data: list[list[object]] = []
    for i in range(rows):
        inside = i % 12 != 0
        when = _ts(start if inside else start - span, span, rng)
        data.append(
            [
                f"{11222333000100 + i * 3:014d}",
                f"  Comércio {i} Ltda ",
                rng.choice(["", "Padaria São João", None, "Açaí & Cia"]),
                rng.choice(["sp", "RJ", "mg", "BA"]),
                f"{rng.randrange(1000, 900000)}.{rng.randrange(100):02d}",
                rng.choice(["ATIVA", "BAIXADA", "SUSPENSA"]),
                when,
            ]
        )
    data = _dupes(data, rng, 0.05, bump=6)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS empresas")
        conn.execute(
            "CREATE TABLE empresas (cnpj TEXT, razao_social TEXT, nome_fantasia TEXT, uf TEXT, "
            "capital_social TEXT, situacao TEXT, data_atualizacao TEXT)"
        )
        conn.executemany("INSERT INTO empresas VALUES (?, ?, ?, ?, ?, ?, ?)", data)


def make_all(directory: Path, rows: int = 4000) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for entity, maker in (("de", make_de), ("jp", make_jp), ("br", make_br)):
        path = directory / f"source_{entity}.db"
        maker(path, rows)
        paths[entity] = path
    return paths
