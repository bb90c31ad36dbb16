#!/usr/bin/env python3
"""Generates the benchmark CSVs of metier.citoyens, deterministically (fixed seed).

Two files with the same rows:

  citoyens_utf8.csv    UTF-8, ',' delimiter, ISO dates, '.' decimals: what psql's \\copy reads.
  citoyens_cp1252.csv  Windows-1252, ';' delimiter, dd/mm/yyyy dates, decimal commas: a French
                       spreadsheet's export, which only mairie-dba load-csv can read as is.

Columns, with a header: id, civilite, nom, prenom, date_naissance, email, telephone, adresse,
code_postal, arrondissement, quotient_familial (date_inscription is left to its default).
About 10% of emails and 15% of quotients are empty (NULL); emails are unique; some addresses
are quoted because they hold a comma, a few also hold doubled quotes.

    python3 bench/gen_citoyens.py --rows 1000000 --out /tmp/mairie-dba-bench
"""

import argparse
import os
import random
import sys
import time
import unicodedata
from datetime import date, timedelta

COLUMNS = [
    "id", "civilite", "nom", "prenom", "date_naissance", "email", "telephone",
    "adresse", "code_postal", "arrondissement", "quotient_familial",
]

NOMS = [
    "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau",
    "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel",
    "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent",
    "Müller", "Lefèbvre", "Faure", "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier",
    "Chevalier", "François", "Legrand", "Gauthier", "García", "Perrin", "Robin", "Clément",
    "Morin", "Nicolas", "Henry", "Roussel", "Mathieu", "Gautier", "Masson", "Marchand",
    "Duval", "Denis", "Dumont", "Marie", "Lemaire", "Noël", "Meyer", "Dufour", "Meunier",
    "Brun", "Blanchard", "Giraud", "Joly", "Rivière", "Lucas", "Brunet", "Gaillard", "Barbier",
    "Arnaud", "Martínez", "Gérard", "Roche", "Renard", "Schmitt", "Roy", "Leroux", "Colin",
    "Vidal", "Caron", "Picard", "Roger", "Fabre", "Aubert", "Lemoine", "Renaud", "Dumas",
    "Lacroix", "Olivier", "Philippe", "Bourgeois", "Pierre", "Benoît", "Rey", "Leclerc",
    "Payet", "Rolland", "Lefebvre", "Hébert", "Bérenger", "Château", "Lemaître", "Dupré",
    "Cœurdevey", "Bœuf", "Nuñez", "Ébrard", "Ménard", "Pélissier", "Séverin", "Bézier",
    "Giraud-Lefèvre", "D'Agostino", "N'Diaye", "Ben Saïd", "Lê", "Nguyen",
    "Mañas", "Ferré", "Gilles", "Désiré", "Ange", "Canel", "Maïo", "Aïssaoui", "Ottaviani",
]

PRENOMS_M = [
    "Jean", "Pierre", "Michel", "André", "Philippe", "René", "Louis", "Alain", "Jacques",
    "Bernard", "Marcel", "Daniel", "Roger", "Robert", "Paul", "Claude", "Christian", "Henri",
    "Georges", "Nicolas", "François", "Patrick", "Gérard", "Christophe", "Joseph", "Julien",
    "Jérôme", "Benoît", "Frédéric", "Stéphane", "Sébastien", "Cédric", "Loïc", "Gaël", "Noël",
    "Anaël", "Élie", "Théo", "Raphaël", "Mathéo", "Léo", "Jean-Noël", "Hervé", "Régis",
    "Aurélien", "Émile", "Lucas", "Hugo", "Nathan", "Karim", "Mehdi", "Yanis", "Moussa",
]

PRENOMS_F = [
    "Marie", "Nathalie", "Isabelle", "Sylvie", "Catherine", "Françoise", "Martine", "Christine",
    "Monique", "Valérie", "Sophie", "Sandrine", "Hélène", "Céline", "Chloé", "Zoé", "Léa",
    "Manon", "Inès", "Anaïs", "Gaëlle", "Maëlys", "Noémie", "Mélanie", "Aurélie", "Émilie",
    "Élodie", "Marie-Hélène", "Bénédicte", "Agnès", "Geneviève", "Thérèse", "Josée", "Cécile",
    "Renée", "Danièle", "Mireille", "Odile", "Solène", "Maïwenn", "Camille", "Sarah", "Yasmine",
    "Fatima", "Aïcha", "Lina", "Jade", "Louise", "Alice", "Clémence", "Léonie", "Margaux",
]

VOIES = [
    "rue de la République", "boulevard Longchamp", "rue Paradis", "avenue du Prado",
    "rue Saint-Ferréol", "cours Julien", "boulevard de la Libération", "rue d'Aubagne",
    "chemin du Roucas-Blanc", "rue Sainte", "boulevard Baille", "avenue de la Capelette",
    "traverse de la Martine", "rue Édouard-Delanglade", "quai de Rive-Neuve", "place Castellane",
    "boulevard Michelet", "rue Sénac-de-Meilhan", "montée des Accoules", "impasse des Œillets",
    "avenue de Saint-Barnabé", "rue Émile-Zola", "chemin de Château-Gombert", "rue Pierre-Dravet",
]

COMPLEMENTS = [
    "Bât. A", "Bât. B", "Appt 12", "Escalier C", "Résidence Les Pins", "2e étage",
    "Villa Thérèse", "Résidence \"Le Panorama\"", "Chez Mme Durand", "Porte 3",
]


def ascii_fold(s):
    """'Lefèvre-Hébert' -> 'lefevre-hebert': the part of an email address made from a name."""
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii").lower()
    return "".join(c for c in s if c.isalnum() or c in ".-")


def csv_field(s):
    """Quotes a field when it holds a delimiter of either file, a quote or a line break."""
    if any(c in s for c in ',;"\r\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", default=os.environ.get("BENCH_WORK", "/tmp/mairie-dba-bench"),
                    help="output directory [env BENCH_WORK, default /tmp/mairie-dba-bench]")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--no-id", action="store_true",
                    help="leave out the id column (let the identity generate it)")
    ap.add_argument("--crlf", action="store_true",
                    help="end the Windows-1252 file's lines with CRLF, as spreadsheets do")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()

    # Everything that can be precomputed is, so that the per-row work is a few list lookups
    # and one string join: 1M rows take a few seconds.
    d0 = date(1930, 1, 1)
    ndays = (date(2007, 12, 31) - d0).days + 1
    days = [d0 + timedelta(n) for n in range(ndays)]
    dates_iso = [d.isoformat() for d in days]
    dates_fr = [d.strftime("%d/%m/%Y") for d in days]
    # (civilite,nom,prenom joined for each file, email stem)
    people = []
    for civ, prenoms in (("M", PRENOMS_M), ("Mme", PRENOMS_F)):
        for p in prenoms:
            for n in NOMS:
                fields = (civ, csv_field(n), csv_field(p))
                people.append((",".join(fields), ";".join(fields), ascii_fold(p) + "." + ascii_fold(n)))
    domains = ["example.fr", "example.com", "mairie-test.fr", "courriel.example.org"]
    phones = [f"0{'6' if rng.random() < 0.6 else '4'} {rng.randrange(100):02d} {rng.randrange(100):02d} "
              f"{rng.randrange(100):02d} {rng.randrange(100):02d}" for _ in range(1 << 16)]
    # Street part of the address, with and without a complement holding a comma.
    adresses = []
    for _ in range(1 << 13):
        base = f"{rng.randint(1, 250)} {rng.choice(VOIES)}"
        r = rng.random()
        if r < 0.08:
            base = f"{rng.choice(COMPLEMENTS)}, {base}"
        elif r < 0.12:
            base = f"{base}, {rng.choice(COMPLEMENTS)}"
        adresses.append(csv_field(base))
    # code_postal and arrondissement agree: 13001 is the 1st arrondissement.
    arr_u = [f"130{a:02d},{a}" for a in range(1, 17)]
    arr_f = [f"130{a:02d};{a}" for a in range(1, 17)]

    cols = COLUMNS[1:] if args.no_id else COLUMNS
    eol_fr = "\r\n" if args.crlf else "\n"
    path_utf8 = os.path.join(args.out, "citoyens_utf8.csv")
    path_fr = os.path.join(args.out, "citoyens_cp1252.csv")
    tmp_utf8, tmp_fr = path_utf8 + ".partial", path_fr + ".partial"

    rand = rng.random
    bits = rng.getrandbits
    npeople, nd = len(people), len(dates_iso)
    chunk = 50_000
    with open(tmp_utf8, "w", encoding="utf-8", newline="") as fu, \
            open(tmp_fr, "w", encoding="cp1252", newline="") as ff:
        fu.write(",".join(cols) + "\n")
        ff.write(";".join(cols) + eol_fr)
        for start in range(1, args.rows + 1, chunk):
            out_u, out_f = [], []
            for i in range(start, min(start + chunk, args.rows + 1)):
                who_u, who_f, stem = people[int(rand() * npeople)]
                di = int(rand() * nd)
                email = "" if rand() < 0.10 else f"{stem}.{i}@{domains[i & 3]}"
                tel = phones[bits(16)]
                a = bits(4)
                adresse = adresses[bits(13)]
                if rand() < 0.15:
                    q_u = q_f = ""
                else:
                    q = int(rand() * 400_000)
                    q_u = f"{q // 100}.{q % 100:02d}"
                    q_f = f"{q // 100},{q % 100:02d}"
                if args.no_id:
                    out_u.append(f"{who_u},{dates_iso[di]},{email},{tel},{adresse},{arr_u[a]},{q_u}\n")
                    out_f.append(f"{who_f};{dates_fr[di]};{email};{tel};{adresse};{arr_f[a]};{q_f}{eol_fr}")
                else:
                    out_u.append(f"{i},{who_u},{dates_iso[di]},{email},{tel},{adresse},{arr_u[a]},{q_u}\n")
                    out_f.append(f"{i};{who_f};{dates_fr[di]};{email};{tel};{adresse};{arr_f[a]};{q_f}{eol_fr}")
            fu.write("".join(out_u))
            ff.write("".join(out_f))
    os.replace(tmp_utf8, path_utf8)
    os.replace(tmp_fr, path_fr)
    print(f"gen_citoyens: {args.rows} rows -> {path_utf8} ({os.path.getsize(path_utf8) / 1e6:.1f} MB), "
          f"{path_fr} ({os.path.getsize(path_fr) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f}s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
