#!/usr/bin/env python3
"""Génère les jeux de démonstration CSV du dossier data/ (base mairie, Ville de Marseille).

Déterministe : graine fixe et date de référence fixe (pas d'appel à l'horloge), donc deux
exécutions produisent des fichiers identiques octet pour octet. Bibliothèque standard seule.

    python3 data/generate_demo.py            # écrit les CSV à côté de ce script

Fichiers produits (ordre de chargement, clés étrangères comprises) :
    services.csv        UTF-8, ',' , LF
    types_demande.csv   UTF-8, ',' , LF
    citoyens.csv        UTF-8, ',' , LF, dates ISO, NULL = champ vide non quoté
    demandes.csv        Windows-1252, ';', CRLF, dates jj/mm/aaaa hh:mm, virgule décimale
    rendez_vous.csv     UTF-8, ',' , LF, horodatages ISO avec décalage (+01 / +02)
"""

import csv
import random
import unicodedata
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

GRAINE = 13001
PARIS = ZoneInfo("Europe/Paris")
# Date de référence des données : tout ce qui est clos l'est avant, les rendez-vous
# « à venir » sont postérieurs.
REFERENCE = datetime(2026, 11, 20, 18, 0, tzinfo=PARIS)
DEBUT_HISTORIQUE = datetime(2024, 1, 2, 8, 0, tzinfo=PARIS)
FIN_RDV_A_VENIR = datetime(2027, 6, 30, 17, 0, tzinfo=PARIS)

NB_CITOYENS = 300
NB_DEMANDES = 400
NB_RENDEZ_VOUS = 300

DOSSIER = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------
# Référentiel (doit rester cohérent avec V001__referentiel.sql)
# ---------------------------------------------------------------------------
# numero -> (secteur, population) ; la population sert de poids de tirage.
ARRONDISSEMENTS = {
    1: (1, 39736), 2: (2, 24810), 3: (2, 51322), 4: (3, 49512),
    5: (3, 45612), 6: (4, 42241), 7: (1, 35618), 8: (4, 81186),
    9: (5, 76918), 10: (5, 56487), 11: (6, 57214), 12: (6, 63806),
    13: (7, 92697), 14: (7, 64481), 15: (8, 77373), 16: (8, 16592),
}
MAIRIES_SECTEUR = {
    1: "Mairie des 1er et 7e arrondissements",
    2: "Mairie des 2e et 3e arrondissements",
    3: "Mairie des 4e et 5e arrondissements",
    4: "Mairie des 6e et 8e arrondissements",
    5: "Mairie des 9e et 10e arrondissements",
    6: "Mairie des 11e et 12e arrondissements",
    7: "Mairie des 13e et 14e arrondissements",
    8: "Mairie des 15e et 16e arrondissements",
}

# id, code, nom, direction, telephone, email, actif
SERVICES = [
    (1, "ETAT_CIVIL", "Service de l'état civil", "Direction de l'accueil et de la vie citoyenne",
     "04 91 55 10 10", "etat-civil@marseille.fr", True),
    (2, "ELECTIONS", "Service des élections", "Direction de l'accueil et de la vie citoyenne",
     "04 91 55 10 20", "elections@marseille.fr", True),
    (3, "URBANISME_ADS", "Service des autorisations d'urbanisme", "Direction de l'urbanisme",
     "04 91 55 20 10", "urbanisme-ads@marseille.fr", True),
    (4, "HABITAT_INDIGNE", "Service de lutte contre l'habitat indigne", "Direction de l'habitat et du logement",
     "04 91 55 20 40", "habitat-indigne@marseille.fr", True),
    (5, "VOIRIE", "Service de la voirie et des chaussées", "Direction de l'espace public",
     "04 91 55 30 10", "voirie@marseille.fr", True),
    (6, "ECLAIRAGE_PUBLIC", "Service de l'éclairage public", "Direction de l'espace public",
     "04 91 55 30 20", "eclairage@marseille.fr", True),
    (7, "PROPRETE", "Service de la propreté urbaine", "Direction de la propreté et de l'environnement",
     "04 91 55 40 10", "proprete@marseille.fr", True),
    (8, "PARCS_JARDINS", "Service des parcs, jardins et arbres d'alignement", "Direction des parcs et jardins",
     "04 91 55 40 30", "parcs-jardins@marseille.fr", True),
    (9, "CCAS", "Centre communal d'action sociale", "Direction de l'action sociale et de la solidarité",
     "04 91 55 50 10", "ccas@marseille.fr", True),
    (10, "INSCRIPTIONS_SCOLAIRES", "Service des inscriptions scolaires", "Direction de l'éducation et de la jeunesse",
     "04 91 55 60 10", "inscriptions-scolaires@marseille.fr", True),
    (11, "RESTAURATION_SCOLAIRE", "Service de la restauration scolaire", "Direction de l'éducation et de la jeunesse",
     "04 91 55 60 20", "cantines@marseille.fr", True),
    (12, "PETITE_ENFANCE", "Service de la petite enfance (crèches municipales)", "Direction de la petite enfance",
     "04 91 55 60 40", "petite-enfance@marseille.fr", True),
    (13, "CIMETIERES", "Service des cimetières et opérations funéraires", "Direction des opérations funéraires",
     "04 91 55 70 10", "cimetieres@marseille.fr", True),
    (14, "ESPACE_PUBLIC_ODP", "Service de l'occupation du domaine public", "Direction de l'espace public",
     "04 91 55 80 10", "occupation-domaine-public@marseille.fr", True),
    (15, "MARCHES_FORAINS", "Service des marchés et foires", "Direction de l'espace public",
     "04 91 55 80 30", "marches@marseille.fr", True),
    (16, "ARCHIVES", "Archives municipales", "Direction de la culture et du patrimoine",
     "04 91 55 90 10", "archives@marseille.fr", True),
    (17, "STATIONNEMENT_REGIE", "Régie du stationnement résidentiel (transférée à la Métropole)",
     "Direction de l'espace public", None, None, False),
]

# code, libelle, categorie, service_id, delai_traitement_jours, poids, frais (min, max) ou None
TYPES_DEMANDE = [
    ("ETAT_CIVIL_ACTE_NAISSANCE", "Copie ou extrait d'acte de naissance", "etat_civil", 1, 5, 40, None),
    ("ETAT_CIVIL_ACTE_MARIAGE", "Copie ou extrait d'acte de mariage", "etat_civil", 1, 5, 14, None),
    ("ETAT_CIVIL_ACTE_DECES", "Copie d'acte de décès", "etat_civil", 1, 5, 10, None),
    ("ETAT_CIVIL_DOSSIER_MARIAGE", "Dépôt de dossier de mariage", "etat_civil", 1, 60, 6, None),
    ("ETAT_CIVIL_PACS", "Enregistrement d'un PACS", "etat_civil", 1, 30, 6, None),
    ("ETAT_CIVIL_CHANGEMENT_PRENOM", "Changement de prénom", "etat_civil", 1, 30, 2, None),
    ("ELECTIONS_INSCRIPTION_LISTES", "Inscription sur les listes électorales", "elections", 2, 30, 14, None),
    ("ELECTIONS_CHANGEMENT_ADRESSE", "Changement d'adresse sur les listes électorales", "elections", 2, 30, 6, None),
    ("URBA_PERMIS_CONSTRUIRE", "Permis de construire", "urbanisme", 3, 90, 8, None),
    ("URBA_DECLARATION_PREALABLE", "Déclaration préalable de travaux", "urbanisme", 3, 30, 14, None),
    ("URBA_PERMIS_DEMOLIR", "Permis de démolir", "urbanisme", 3, 60, 2, None),
    ("URBA_CERTIFICAT_URBANISME", "Certificat d'urbanisme", "urbanisme", 3, 30, 6, None),
    ("URBA_SIGNALEMENT_HABITAT_INDIGNE", "Signalement de logement indigne ou en péril", "urbanisme", 4, 15, 6, None),
    ("VOIRIE_NID_DE_POULE", "Signalement de nid-de-poule ou chaussée dégradée", "voirie", 5, 15, 22, None),
    ("VOIRIE_SIGNALISATION", "Signalisation ou marquage au sol endommagé", "voirie", 5, 20, 6, None),
    ("VOIRIE_ECLAIRAGE_PANNE", "Panne d'éclairage public", "voirie", 6, 10, 14, None),
    ("VOIRIE_ELAGAGE", "Demande d'élagage ou arbre dangereux", "voirie", 8, 45, 6, None),
    ("PROPRETE_ENCOMBRANTS", "Enlèvement d'encombrants sur rendez-vous", "proprete", 7, 7, 20, None),
    ("PROPRETE_DEPOT_SAUVAGE", "Signalement de dépôt sauvage", "proprete", 7, 5, 16, None),
    ("PROPRETE_TAGS", "Effacement de tags et graffitis", "proprete", 7, 15, 8, None),
    ("SOCIAL_AIDE_FACULTATIVE", "Demande d'aide sociale facultative", "social", 9, 30, 10, None),
    ("SOCIAL_DOMICILIATION", "Domiciliation administrative", "social", 9, 15, 6, None),
    ("EDUC_INSCRIPTION_SCOLAIRE", "Inscription scolaire (maternelle, élémentaire)", "education", 10, 21, 14, None),
    ("EDUC_RESTAURATION_SCOLAIRE", "Inscription à la restauration scolaire", "education", 11, 15, 10, None),
    ("EDUC_PLACE_CRECHE", "Demande de place en crèche municipale", "education", 12, 90, 6, None),
    ("FUNE_CONCESSION_ACHAT", "Achat ou renouvellement de concession funéraire", "funeraire", 13, 30, 5, (420.0, 1860.0)),
    ("FUNE_INHUMATION", "Autorisation d'inhumation", "funeraire", 13, 2, 4, (25.0, 95.0)),
    ("ODP_TERRASSE", "Autorisation de terrasse de café ou restaurant", "occupation_domaine_public", 14, 45, 5, (150.0, 2400.0)),
    ("ODP_ECHAFAUDAGE", "Permis de stationnement pour échafaudage ou benne", "occupation_domaine_public", 14, 15, 6, (45.0, 640.0)),
    ("ODP_DEMENAGEMENT", "Réservation de stationnement pour déménagement", "occupation_domaine_public", 14, 10, 8, (18.0, 60.0)),
    ("ODP_EMPLACEMENT_MARCHE", "Emplacement sur un marché forain", "occupation_domaine_public", 15, 30, 3, (12.6, 480.0)),
]

# Statuts finaux selon la nature de la demande.
SIGNALEMENTS = {"voirie", "proprete"}

# ---------------------------------------------------------------------------
# Citoyens
# ---------------------------------------------------------------------------
PRENOMS_F = [
    "Hélène", "Béatrice", "Zoé", "Chloé", "Noémie", "Léa", "Inès", "Maëlle", "Océane", "Éloïse",
    "Anaïs", "Mélanie", "Céline", "Sophie", "Camille", "Manon", "Émilie", "Françoise", "Geneviève",
    "Josiane", "Marie-Thérèse", "Aïcha", "Fatoumata", "Yasmine", "Nadia", "Leïla", "Salomé", "Gaëlle",
    "Agnès", "Mireille", "Odile", "Laëtitia", "Clémence", "Rosalie", "Anne-Sophie", "Lucie", "Jade",
    "Ophélie", "Marjolaine", "Thi Hoa", "Anahit", "Giulia", "Sarah", "Nour",
]
PRENOMS_M = [
    "François", "Jérôme", "Noël", "Hervé", "Stéphane", "Frédéric", "Rémi", "Loïc", "Gaël", "Raphaël",
    "Théo", "Mathéo", "Léon", "Étienne", "Benoît", "Joël", "Cédric", "Jean-Baptiste", "Marius", "Fernand",
    "Olivier", "Karim", "Mohamed", "Youssouf", "Mamadou", "Ibrahim", "Rachid", "Anthony", "Sébastien",
    "Grégory", "Pierre-Louis", "Aurélien", "Ange", "Dominique", "Nicolas", "Lucas", "Hugo", "Zinédine",
    "Ahmed", "Vahé", "Giovanni", "Minh", "Thomas", "Yanis",
]
NOMS = [
    "Martin", "Bernard", "Dubois", "Roux", "Fabre", "Blanc", "Garcia", "Martinez", "Rossi", "Bianchi",
    "Di Meglio", "Giordano", "Santoni", "Mattei", "Benali", "Ben Saïd", "Haddad", "Mansouri", "Bouzid",
    "Amrani", "N'Diaye", "Diallo", "Sow", "Abdallah", "Mohamed", "Nguyen", "Tran", "Müller", "Le Bihan",
    "Le Goff", "Çelik", "Yıldız", "Léger", "Pélissier", "Ménard", "Bérenger", "Barthélémy", "Jourdan",
    "Maurel", "Giraud", "Reynaud", "Audibert", "Dupont-Lacroix", "D'Angelo", "Sánchez", "Da Silva",
    "Ferreira", "Hakobyan", "Der Sarkissian", "Papadopoulos", "Chabert", "Gouiran", "Pagnol", "Carbonel",
    "Estève", "Aubert", "Lefèvre", "Crémieux", "Boyer", "Michel", "Ricard", "Arnaud", "Jaubert", "Sicard",
    "Ollivier", "Gasquet", "Brémond", "Castel", "Guérin", "Mercier",
]

# Voies réelles par arrondissement.
VOIES = {
    1: ["La Canebière", "rue Saint-Ferréol", "rue d'Aubagne", "cours Belsunce", "boulevard d'Athènes",
        "rue Thubaneau", "rue des Dominicaines", "rue Longue-des-Capucins", "allées Léon-Gambetta"],
    2: ["rue de la République", "place de Lenche", "rue du Panier", "quai du Port", "avenue Robert-Schuman",
        "boulevard des Dames", "rue de l'Évêché", "rue Caisserie", "montée des Accoules"],
    3: ["boulevard National", "rue Félix-Pyat", "rue Jobin", "rue Loubon", "rue Clovis-Hugues",
        "rue de Crimée", "rue Guibal", "boulevard de Plombières"],
    4: ["boulevard de la Blancarde", "avenue des Chartreux", "boulevard Françoise-Duparc", "place Sébastopol",
        "boulevard Boisson", "rue Chape", "avenue du Maréchal-Foch", "boulevard Philippon"],
    5: ["boulevard Baille", "rue Saint-Pierre", "boulevard Chave", "rue Ferrari", "boulevard Jean-Moulin",
        "rue Fernand-Pauriol", "rue Sainte-Cécile", "boulevard Eugène-Pierre"],
    6: ["rue Paradis", "rue de Rome", "cours Lieutaud", "rue Breteuil", "boulevard Notre-Dame",
        "place Castellane", "rue Sylvabelle", "rue Edmond-Rostand", "rue de Lodi", "cours Julien"],
    7: ["corniche du Président-John-F.-Kennedy", "rue Sainte", "boulevard de la Corderie", "rue d'Endoume",
        "rue des Catalans", "boulevard Tellène", "rue Vauvenargues", "chemin du Roucas-Blanc"],
    8: ["avenue du Prado", "boulevard Michelet", "avenue de Mazargues", "avenue de Hambourg",
        "boulevard Rabatau", "avenue Clot-Bey", "rue Borde", "avenue de la Pointe-Rouge", "boulevard Périer"],
    9: ["avenue de la Jarre", "chemin de Sormiou", "chemin de Morgiou", "boulevard de Sainte-Marguerite",
        "avenue de Luminy", "boulevard du Redon", "boulevard Romain-Rolland", "chemin du Roy-d'Espagne"],
    10: ["avenue de la Capelette", "boulevard Mireille-Lauze", "boulevard Schloesing", "boulevard de Saint-Loup",
         "boulevard de Pont-de-Vivaux", "rue Alfred-Curtel"],
    11: ["route des Camoins", "avenue de Saint-Menet", "boulevard de la Valbarelle", "boulevard de la Millière",
         "boulevard de la Pomme", "chemin des Accates"],
    12: ["avenue des Caillols", "avenue de Montolivet", "rue Montaigne", "boulevard des Libérateurs",
         "avenue de Saint-Julien", "traverse de la Fourragère"],
    13: ["avenue de Château-Gombert", "avenue de Frais-Vallon", "chemin des Mourets", "avenue de la Rose",
         "avenue de la Croix-Rouge", "chemin de Palama"],
    14: ["chemin de Sainte-Marthe", "boulevard du Merlan", "avenue Prosper-Mérimée", "boulevard Barnier",
         "avenue Claude-Monet", "chemin du Merlan-à-la-Rose"],
    15: ["rue de Lyon", "boulevard Henri-Barnier", "chemin de la Madrague-Ville", "avenue de Saint-Antoine",
         "chemin du Littoral", "boulevard Capitaine-Gèze"],
    16: ["plage de l'Estaque", "chemin de la Nerthe", "rue Rabelais", "boulevard Grawitz",
         "route du Rove", "boulevard Henri-Barnier"],
}
COMPLEMENTS = ["Bât. A", "Bât. B", "Bât. C", "Résidence Les Pins", "Résidence Le Parc Borély",
               "Esc. 2, 3e étage", "Appt 12", "Villa 4"]


def sans_accents(texte):
    decompose = unicodedata.normalize("NFKD", texte)
    return "".join(c for c in decompose if not unicodedata.combining(c)).replace("ı", "i")


def identifiant_email(prenom, nom):
    brut = sans_accents(f"{prenom}.{nom}").lower()
    return "".join(c for c in brut if c.isalnum() or c in ".-")


def horodatage_aleatoire(rng, debut, fin):
    secondes = int((fin - debut).total_seconds())
    return (debut + timedelta(seconds=rng.randrange(secondes))).astimezone(PARIS)


# Jours fériés à date fixe (les fêtes mobiles sont ignorées : jeu de démonstration).
FERIES_FIXES = {(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)}


def heure_ouvree(rng, jour, premier=8 * 60 + 30, dernier=17 * 60, pas=1):
    """Un horodatage un jour ouvré (lundi-vendredi hors fériés fixes) entre premier et dernier (minutes)."""
    while jour.weekday() >= 5 or (jour.month, jour.day) in FERIES_FIXES:
        jour += timedelta(days=1)
    minute = rng.randrange(premier, dernier, pas)
    return datetime(jour.year, jour.month, jour.day, minute // 60, minute % 60, tzinfo=PARIS)


def iso_decalage(moment):
    """2026-12-03 10:30:00+01 : heure locale de Paris et décalage UTC sur deux chiffres."""
    decalage = int(moment.utcoffset().total_seconds() // 3600)
    return f"{moment:%Y-%m-%d %H:%M:%S}{decalage:+03d}"


def generer_citoyens(rng):
    numeros = list(ARRONDISSEMENTS)
    poids = [ARRONDISSEMENTS[n][1] for n in numeros]
    emails = set()
    citoyens = []
    for ident in range(1, NB_CITOYENS + 1):
        femme = rng.random() < 0.52
        prenom = rng.choice(PRENOMS_F if femme else PRENOMS_M)
        nom = rng.choice(NOMS)
        arrondissement = rng.choices(numeros, weights=poids)[0]
        naissance = date(1938, 1, 1) + timedelta(days=rng.randrange(365 * 69))

        email = None
        if rng.random() < 0.82:
            base = identifiant_email(prenom, nom)
            domaine = rng.choice(["example.org", "example.com", "example.net"])
            candidat = f"{base}@{domaine}"
            suffixe = 2
            while candidat in emails:
                candidat = f"{base}{suffixe}@{domaine}"
                suffixe += 1
            emails.add(candidat)
            email = candidat

        telephone = None
        tirage = rng.random()
        if tirage < 0.55:  # plages de numéros réservées à la fiction (ARCEP)
            telephone = f"06 39 98 {rng.randrange(100):02d} {rng.randrange(100):02d}"
        elif tirage < 0.75:
            telephone = f"04 65 71 {rng.randrange(100):02d} {rng.randrange(100):02d}"
        elif tirage < 0.85:
            telephone = f"+33 6 39 98 {rng.randrange(100):02d} {rng.randrange(100):02d}"

        voie = rng.choice(VOIES[arrondissement])
        adresse = f"{rng.randrange(1, 180)} {voie}"
        if rng.random() < 0.12:
            adresse = f"{rng.choice(COMPLEMENTS)}, {adresse}"
        if ident == 42:  # champ avec guillemets doublés et virgules
            arrondissement, adresse = 8, 'Cité radieuse "Le Corbusier", appt 314, 280 boulevard Michelet'
        if ident == 137:
            arrondissement, adresse = 2, 'Résidence "Les Docks", 10 place de la Joliette'

        quotient = None
        if rng.random() < 0.62:
            quotient = f"{rng.uniform(120, 2900):.2f}"

        inscription = horodatage_aleatoire(
            rng, datetime(2015, 1, 5, 8, 0, tzinfo=PARIS), datetime(2026, 10, 31, 20, 0, tzinfo=PARIS))

        citoyens.append({
            "id": ident,
            "civilite": "Mme" if femme else "M",
            "nom": nom,
            "prenom": prenom,
            "date_naissance": naissance.isoformat(),
            "email": email,
            "telephone": telephone,
            "adresse": adresse,
            "code_postal": f"130{arrondissement:02d}",
            "arrondissement": arrondissement,
            "quotient_familial": quotient,
            "date_inscription": inscription,
        })
    return citoyens


# ---------------------------------------------------------------------------
# Demandes
# ---------------------------------------------------------------------------
# Commentaires par type de demande (préfixe du code), avec accents et signes propres à Windows-1252.
COMMENTAIRES = {
    "ETAT_CIVIL_ACTE": ["Acte demandé pour un dossier de retraite.", "Copie intégrale demandée par le notaire.",
                        "Extrait avec filiation pour une demande de passeport.",
                        "Mention marginale à vérifier avant délivrance.", "Envoi postal à l’adresse du demandeur."],
    "ETAT_CIVIL_DOSSIER_MARIAGE": ["Publication des bans à prévoir ; témoins déclarés.",
                                   "Cérémonie souhaitée à l'Hôtel de Ville, salle d'honneur."],
    "ETAT_CIVIL_PACS": ["Convention type signée sur place.", "Rendez-vous d'enregistrement à fixer."],
    "ETAT_CIVIL_CHANGEMENT_PRENOM": ["Audition du demandeur prévue ; intérêt légitime à apprécier."],
    "ELECTIONS": ["Nouvel arrivant à Marseille.", "Déménagement dans le même arrondissement.",
                  "Justificatif de domicile reçu par courriel."],
    "URBA_SIGNALEMENT": ["Fissures signalées dans la cage d'escalier.", "Humidité et moisissures ; enfant asthmatique.",
                         "Visite sur place programmée avec le syndic.", "Balcon fragilisé, périmètre de sécurité posé."],
    "URBA": ["Pièce manquante : plan de masse côté ouest.", "Avis de l'architecte des Bâtiments de France requis.",
             "Travaux de façade et remplacement des menuiseries.", "Surélévation d'une maison de ville.",
             "Véranda de 18 m² en fond de parcelle."],
    "VOIRIE_NID_DE_POULE": ["Nid-de-poule dangereux devant l’école, côté pair.", "Chaussée affaissée après les pluies.",
                            "Trou profond sur la voie de bus, deux-roues en danger."],
    "VOIRIE_SIGNALISATION": ["Panneau « stop » arraché au carrefour.", "Passage piéton effacé devant le collège."],
    "VOIRIE_ECLAIRAGE": ["Lampadaire éteint depuis une semaine.", "Éclairage clignotant toute la nuit."],
    "VOIRIE_ELAGAGE": ["Branches basses gênant le passage des bus.", "Platane penché au-dessus du trottoir."],
    "PROPRETE_ENCOMBRANTS": ["Encombrants : canapé, armoire, vélo.", "Matelas et électroménager, à retirer au pied de l'immeuble."],
    "PROPRETE_DEPOT_SAUVAGE": ["Dépôt sauvage de gravats ; signalé par le CIQ.", "Sacs de déchets verts au bord du vallon."],
    "PROPRETE_TAGS": ["Tags sur la façade de l'école élémentaire.", "Graffitis sur le mur du jardin d’enfants."],
    "SOCIAL_AIDE": ["Dossier complet, reçu à l'accueil du CCAS.", "Aide ponctuelle pour une facture d'énergie.",
                    "Personne âgée isolée, visite à domicile prévue."],
    "SOCIAL_DOMICILIATION": ["Attestation de domiciliation à renouveler.", "Première domiciliation, sans adresse stable."],
    "EDUC_INSCRIPTION": ["Première inscription en petite section.", "Changement d'école suite à un déménagement."],
    "EDUC_RESTAURATION": ["Tarif calculé selon le quotient familial.", "Enfant avec PAI : régime alimentaire particulier."],
    "EDUC_PLACE_CRECHE": ["Accueil souhaité à temps plein dès janvier.", "Fratrie déjà accueillie dans la crèche."],
    "FUNE_CONCESSION": ["Concession de 15 ans au cimetière Saint-Pierre.", "Renouvellement de concession trentenaire."],
    "FUNE_INHUMATION": ["Inhumation au cimetière du Canet.", "Inhumation dans le caveau familial."],
    "ODP_TERRASSE": ["Terrasse de 12 m² sur le cours, redevance annuelle.", "Extension estivale de la terrasse."],
    "ODP_ECHAFAUDAGE": ["Échafaudage pour ravalement, durée 3 semaines.", "Benne à gravats devant le n° 14."],
    "ODP_DEMENAGEMENT": ["Stationnement réservé pour camion de déménagement.", "Deux places réservées, samedi matin."],
    "ODP_EMPLACEMENT_MARCHE": ["Emplacement alimentaire au marché de la Plaine.", "Stand de fleurs au marché du Prado."],
}


def commentaire_pour(code):
    prefixe = max((p for p in COMMENTAIRES if code.startswith(p)), key=len)
    return COMMENTAIRES[prefixe]


def statut_et_cloture(rng, depot, type_demande):
    _, _, categorie, _, delai, _, _ = type_demande
    # Délai réel : le plus souvent autour du délai cible, parfois au-delà.
    duree = timedelta(days=max(delai * 0.1, rng.gauss(delai * 0.8, delai * 0.45)))
    if rng.random() < 0.12:
        duree *= 2.2
    # Clôture par un agent : un jour ouvré, en heures de bureau, jamais avant le dépôt.
    cloture = heure_ouvree(rng, (depot + duree).date())
    if cloture <= depot:
        cloture = depot + timedelta(minutes=rng.randrange(10, 120))
    if cloture > REFERENCE or rng.random() < 0.04:
        # Pas encore close à la date de référence (ou dossier resté en souffrance).
        if depot > REFERENCE - timedelta(days=10):
            statut = rng.choice(["deposee", "deposee", "en_cours"])
        else:
            statut = rng.choices(["en_cours", "en_attente"], weights=[2, 1])[0]
        return statut, None
    if categorie in SIGNALEMENTS:
        statut = rng.choices(["cloturee", "refusee"], weights=[12, 1])[0]
    elif categorie in ("etat_civil", "elections"):
        statut = rng.choices(["acceptee", "refusee", "cloturee"], weights=[18, 1, 1])[0]
    else:
        statut = rng.choices(["acceptee", "refusee", "cloturee"], weights=[10, 3, 1])[0]
    return statut, cloture.astimezone(PARIS)


def generer_demandes(rng, citoyens):
    poids = [t[5] for t in TYPES_DEMANDE]
    brutes = []
    for numero in range(NB_DEMANDES):
        type_demande = rng.choices(TYPES_DEMANDE, weights=poids)[0]
        code, _, categorie, service_id, _, _, frais = type_demande
        debut_tirage = DEBUT_HISTORIQUE
        if numero >= NB_DEMANDES - 12:  # quelques dépôts des derniers jours, encore ouverts
            debut_tirage = REFERENCE - timedelta(days=9)
        jour = horodatage_aleatoire(rng, debut_tirage, REFERENCE - timedelta(hours=1))
        if categorie in SIGNALEMENTS:
            depot = jour.replace(minute=rng.randrange(60), second=0, microsecond=0)  # en ligne, à toute heure
        else:
            depot = heure_ouvree(rng, jour.date())
            if depot > REFERENCE:
                depot -= timedelta(days=7)
        inscrits = [c for c in citoyens if c["date_inscription"] < depot]
        citoyen = rng.choice(inscrits)
        arrondissement = citoyen["arrondissement"]
        if categorie in SIGNALEMENTS and rng.random() < 0.3:
            arrondissement = rng.randrange(1, 17)
        statut, cloture = statut_et_cloture(rng, depot, type_demande)
        montant = 0.0
        if frais is not None and statut != "refusee":
            montant = round(rng.uniform(*frais), 2)
        commentaire = None
        if rng.random() < 0.7:
            commentaire = rng.choice(commentaire_pour(code))
        brutes.append([depot, code, service_id, citoyen["id"], arrondissement, statut, cloture, montant, commentaire])

    brutes.sort(key=lambda d: d[0])

    def premiere(prefixe, depuis, condition=lambda d: True):
        return next(d for d in brutes[depuis:] if d[1].startswith(prefixe) and condition(d))

    # Quelques commentaires qui éprouvent le parseur : guillemets doublés, point-virgule,
    # virgule, caractères propres à Windows-1252 (€, œ, ’, « »).
    premiere("ETAT_CIVIL_ACTE", 15)[8] = \
        'L\'usager précise : "urgent, départ à l\'étranger" ; envoi par courrier souhaité.'
    terrasse = premiere("ODP_TERRASSE", 100, lambda d: d[7] > 0)
    montant_texte = f"{terrasse[7]:.2f}".replace(".", ",")
    terrasse[8] = f"Redevance réglée : {montant_texte} € par chèque ; reçu remis."
    premiere("URBA_PERMIS_CONSTRUIRE", 200)[8] = \
        "Dossier transmis à l'instructeur – pièces complètes, œuvre d'un architecte DPLG."
    premiere("VOIRIE", 300)[8] = "Signalement reçu par « Allô Mairie » ; suivi par courriel."
    demandes = []
    compteur_annee = {}
    for ident, (depot, code, service_id, citoyen_id, arrondissement, statut, cloture, montant, commentaire) \
            in enumerate(brutes, start=1):
        compteur_annee[depot.year] = compteur_annee.get(depot.year, 0) + 1
        demandes.append({
            "id": ident,
            "reference": f"DEM-{depot.year}-{compteur_annee[depot.year]:06d}",
            "citoyen_id": citoyen_id,
            "type_code": code,
            "service_id": service_id,
            "arrondissement": arrondissement,
            "statut": statut,
            "date_depot": depot,
            "date_cloture": cloture,
            "montant_frais": montant,
            "commentaire": commentaire,
        })
    return demandes


# ---------------------------------------------------------------------------
# Rendez-vous
# ---------------------------------------------------------------------------
SERVICES_AVEC_ACCUEIL = [1, 2, 3, 4, 9, 10, 11, 12, 13, 14]


def lieu_rendez_vous(rng, service_id, citoyen):
    secteur = ARRONDISSEMENTS[citoyen["arrondissement"]][0]
    if service_id in (1, 2, 10, 11):
        if rng.random() < 0.2:
            return "Hôtel de Ville, quai du Port"
        return MAIRIES_SECTEUR[secteur]
    if service_id in (3, 4):
        return "Direction de l'urbanisme, accueil du public (2e)"
    if service_id == 9:
        return f"CCAS, antenne du {secteur}{'er' if secteur == 1 else 'e'} secteur"
    if service_id == 12:
        return f"{MAIRIES_SECTEUR[secteur]}, relais petite enfance"
    if service_id == 13:
        return rng.choice(["Cimetière Saint-Pierre, bureau des concessions", "Cimetière du Canet, accueil"])
    return "Direction de l'espace public, guichet de l'occupation du domaine public"


def generer_rendez_vous(rng, citoyens, demandes):
    par_id = {c["id"]: c for c in citoyens}
    a_venir_debut = datetime(2026, 11, 23, 8, 0, tzinfo=PARIS)
    avec_accueil = [d for d in demandes if d["service_id"] in SERVICES_AVEC_ACCUEIL]
    ouvertes = [d for d in avec_accueil if d["date_cloture"] is None]
    rendez_vous = []
    for numero in range(NB_RENDEZ_VOUS):
        a_venir = numero % 7 in (0, 3, 5)  # ~3/7 à venir
        demande = None
        if a_venir and ouvertes and rng.random() < 0.45:
            demande = rng.choice(ouvertes)
        elif not a_venir and rng.random() < 0.55:
            demande = rng.choice(avec_accueil)

        if demande is not None:
            citoyen = par_id[demande["citoyen_id"]]
            service_id = demande["service_id"]
            if a_venir:
                jour = horodatage_aleatoire(rng, a_venir_debut, a_venir_debut + timedelta(days=75))
            else:
                jour = demande["date_depot"] + timedelta(days=rng.randrange(1, 21))
        else:
            citoyen = None  # tiré une fois le créneau connu (inscrit avant le rendez-vous)
            service_id = rng.choice(SERVICES_AVEC_ACCUEIL)
            if a_venir:
                jour = horodatage_aleatoire(rng, a_venir_debut, FIN_RDV_A_VENIR)
            else:
                jour = horodatage_aleatoire(rng, datetime(2025, 1, 6, 8, 0, tzinfo=PARIS), REFERENCE)
        debut = heure_ouvree(rng, jour.date(), 8 * 60 + 30, 16 * 60 + 45, 15)
        if a_venir and debut < a_venir_debut:
            debut += timedelta(days=7)
        if not a_venir and debut > REFERENCE - timedelta(hours=2):
            debut -= timedelta(days=14)
        a_venir = debut > REFERENCE
        if demande is not None and debut < demande["date_depot"]:
            demande = None  # rendez-vous de simple renseignement, antérieur au dépôt
        if citoyen is None or citoyen["date_inscription"] >= debut:
            citoyen = rng.choice([c for c in citoyens if c["date_inscription"] < debut])

        if a_venir:
            statut = rng.choices(["planifie", "confirme", "annule"], weights=[11, 7, 2])[0]
        else:
            statut = rng.choices(["honore", "absent", "annule"], weights=[15, 2, 3])[0]
        duree = rng.choice([15, 15, 20, 30, 30, 30, 45, 60] if service_id not in (3, 13) else [30, 45, 60, 90])
        rendez_vous.append({
            "citoyen_id": citoyen["id"],
            "service_id": service_id,
            "demande_id": demande["id"] if demande else None,
            "debut": debut,
            "duree_minutes": duree,
            "statut": statut,
            "lieu": lieu_rendez_vous(rng, service_id, citoyen),
        })
    rendez_vous.sort(key=lambda r: (r["debut"], r["citoyen_id"]))
    return rendez_vous


# ---------------------------------------------------------------------------
# Écriture
# ---------------------------------------------------------------------------
def ecrire(nom, colonnes, lignes, encoding="utf-8", delimiter=",", lineterminator="\n"):
    with open(DOSSIER / nom, "w", encoding=encoding, newline="") as fichier:
        ecrivain = csv.writer(fichier, delimiter=delimiter, lineterminator=lineterminator,
                              quoting=csv.QUOTE_MINIMAL)
        ecrivain.writerow(colonnes)
        for ligne in lignes:
            ecrivain.writerow(["" if ligne[c] is None else ligne[c] for c in colonnes])


def main():
    rng = random.Random(GRAINE)

    ecrire("services.csv", ["id", "code", "nom", "direction", "telephone", "email", "actif"],
           [dict(zip(["id", "code", "nom", "direction", "telephone", "email", "actif"],
                     s[:6] + ("true" if s[6] else "false",))) for s in SERVICES])

    ecrire("types_demande.csv", ["code", "libelle", "categorie", "service_id", "delai_traitement_jours"],
           [dict(zip(["code", "libelle", "categorie", "service_id", "delai_traitement_jours"], t[:5]))
            for t in TYPES_DEMANDE])

    citoyens = generer_citoyens(rng)
    demandes = generer_demandes(rng, citoyens)
    rendez_vous = generer_rendez_vous(rng, citoyens, demandes)

    ecrire("citoyens.csv",
           ["id", "civilite", "nom", "prenom", "date_naissance", "email", "telephone", "adresse",
            "code_postal", "arrondissement", "quotient_familial", "date_inscription"],
           [dict(c, date_inscription=iso_decalage(c["date_inscription"])) for c in citoyens])

    # Export « open data » : Windows-1252, point-virgule, CRLF, dates jj/mm/aaaa hh:mm,
    # virgule décimale, colonnes dans un ordre différent de la table.
    ecrire("demandes.csv",
           ["reference", "date_depot", "date_cloture", "statut", "type_code", "service_id",
            "citoyen_id", "arrondissement", "montant_frais", "commentaire", "id"],
           [dict(d,
                 date_depot=f"{d['date_depot']:%d/%m/%Y %H:%M}",
                 date_cloture=f"{d['date_cloture']:%d/%m/%Y %H:%M}" if d["date_cloture"] else None,
                 montant_frais=f"{d['montant_frais']:.2f}".replace(".", ","))
            for d in demandes],
           encoding="cp1252", delimiter=";", lineterminator="\r\n")

    ecrire("rendez_vous.csv",
           ["citoyen_id", "service_id", "demande_id", "debut", "duree_minutes", "statut", "lieu"],
           [dict(r, debut=iso_decalage(r["debut"])) for r in rendez_vous])


if __name__ == "__main__":
    main()
