-- V001 : schéma « referentiel » (données de référence de la base mairie).
-- Crée :
--   * le schéma referentiel ;
--   * referentiel.arrondissements : les 16 arrondissements de Marseille et leur secteur
--     (mairie de secteur), insérés ici même car ce sont des données de référence fixes ;
--   * referentiel.services : services municipaux (chargés depuis data/services.csv) ;
--   * referentiel.types_demande : nomenclature des demandes usagers, rattachées à un
--     service instructeur (chargés depuis data/types_demande.csv).
-- Exécuté une seule fois, dans sa propre transaction, par l'outil de migration.

CREATE SCHEMA referentiel;
COMMENT ON SCHEMA referentiel IS
    'Données de référence : arrondissements, services municipaux, types de demande.';

-- ---------------------------------------------------------------------------
-- Arrondissements
-- ---------------------------------------------------------------------------
CREATE TABLE referentiel.arrondissements (
    numero          smallint     PRIMARY KEY CHECK (numero BETWEEN 1 AND 16),
    code_postal     char(5)      NOT NULL UNIQUE
                                 CHECK (code_postal ~ '^130(0[1-9]|1[0-6])$'),
    nom             text         NOT NULL,
    secteur         smallint     NOT NULL CHECK (secteur BETWEEN 1 AND 8),
    population      integer      CHECK (population >= 0),
    superficie_km2  numeric(6,2) CHECK (superficie_km2 > 0)
);

COMMENT ON TABLE referentiel.arrondissements IS
    'Les 16 arrondissements municipaux de Marseille, regroupés deux à deux en 8 secteurs (loi PLM).';
COMMENT ON COLUMN referentiel.arrondissements.numero IS 'Numéro de l''arrondissement (1 à 16).';
COMMENT ON COLUMN referentiel.arrondissements.code_postal IS 'Code postal de l''arrondissement (13001 à 13016).';
COMMENT ON COLUMN referentiel.arrondissements.nom IS 'Libellé usuel (« 1er arrondissement », « 2e arrondissement »...).';
COMMENT ON COLUMN referentiel.arrondissements.secteur IS
    'Secteur municipal (mairie de secteur) : 1er+7e=S1, 2e+3e=S2, 4e+5e=S3, 6e+8e=S4, 9e+10e=S5, 11e+12e=S6, 13e+14e=S7, 15e+16e=S8.';
COMMENT ON COLUMN referentiel.arrondissements.population IS 'Population municipale (ordre de grandeur des derniers chiffres INSEE).';
COMMENT ON COLUMN referentiel.arrondissements.superficie_km2 IS 'Superficie en km².';

INSERT INTO referentiel.arrondissements (numero, code_postal, nom, secteur, population, superficie_km2) VALUES
    ( 1, '13001', '1er arrondissement',  1, 39736,  1.81),
    ( 2, '13002', '2e arrondissement',   2, 24810,  5.04),
    ( 3, '13003', '3e arrondissement',   2, 51322,  2.59),
    ( 4, '13004', '4e arrondissement',   3, 49512,  2.89),
    ( 5, '13005', '5e arrondissement',   3, 45612,  2.26),
    ( 6, '13006', '6e arrondissement',   4, 42241,  2.16),
    ( 7, '13007', '7e arrondissement',   1, 35618,  5.53),
    ( 8, '13008', '8e arrondissement',   4, 81186, 19.44),
    ( 9, '13009', '9e arrondissement',   5, 76918, 69.15),
    (10, '13010', '10e arrondissement',  5, 56487,  6.26),
    (11, '13011', '11e arrondissement',  6, 57214, 27.27),
    (12, '13012', '12e arrondissement',  6, 63806, 14.31),
    (13, '13013', '13e arrondissement',  7, 92697, 29.56),
    (14, '13014', '14e arrondissement',  7, 64481,  5.63),
    (15, '13015', '15e arrondissement',  8, 77373, 17.02),
    (16, '13016', '16e arrondissement',  8, 16592, 16.09);

-- ---------------------------------------------------------------------------
-- Services municipaux
-- ---------------------------------------------------------------------------
CREATE TABLE referentiel.services (
    id         integer PRIMARY KEY,
    code       text    NOT NULL UNIQUE,
    nom        text    NOT NULL,
    direction  text    NOT NULL,
    telephone  text,
    email      text,
    actif      boolean NOT NULL DEFAULT true
);

COMMENT ON TABLE referentiel.services IS
    'Services municipaux qui instruisent les demandes et reçoivent les usagers en rendez-vous.';
COMMENT ON COLUMN referentiel.services.id IS 'Identifiant stable du service (fourni par le fichier de chargement, pas de séquence).';
COMMENT ON COLUMN referentiel.services.code IS 'Code court unique du service (ex. ETAT_CIVIL).';
COMMENT ON COLUMN referentiel.services.nom IS 'Libellé du service.';
COMMENT ON COLUMN referentiel.services.direction IS 'Direction de rattachement dans l''organigramme municipal.';
COMMENT ON COLUMN referentiel.services.telephone IS 'Numéro de téléphone d''accueil du service.';
COMMENT ON COLUMN referentiel.services.email IS 'Adresse électronique de contact du service.';
COMMENT ON COLUMN referentiel.services.actif IS 'Faux pour un service fermé ou transféré : conservé pour l''historique.';

-- ---------------------------------------------------------------------------
-- Types de demande
-- ---------------------------------------------------------------------------
CREATE TABLE referentiel.types_demande (
    code                    text    PRIMARY KEY,
    libelle                 text    NOT NULL,
    categorie               text    NOT NULL
                                    CHECK (categorie IN ('etat_civil', 'urbanisme', 'voirie', 'proprete',
                                                         'social', 'education', 'elections', 'funeraire',
                                                         'occupation_domaine_public')),
    service_id              integer NOT NULL REFERENCES referentiel.services (id),
    delai_traitement_jours  integer NOT NULL CHECK (delai_traitement_jours > 0)
);

CREATE INDEX types_demande_service_id_idx ON referentiel.types_demande (service_id);

COMMENT ON TABLE referentiel.types_demande IS
    'Nomenclature des demandes usagers (actes, autorisations, signalements...), chacune instruite par un service.';
COMMENT ON COLUMN referentiel.types_demande.code IS 'Code du type de demande (ex. URBA_PERMIS_CONSTRUIRE).';
COMMENT ON COLUMN referentiel.types_demande.libelle IS 'Libellé affiché aux usagers.';
COMMENT ON COLUMN referentiel.types_demande.categorie IS 'Grande famille de la demande (état civil, urbanisme, voirie...).';
COMMENT ON COLUMN referentiel.types_demande.service_id IS 'Service instructeur par défaut.';
COMMENT ON COLUMN referentiel.types_demande.delai_traitement_jours IS 'Délai cible de traitement, en jours calendaires.';
