-- V001 : « referentiel » (données de référence de la base mairie), version MySQL 8 / MariaDB 10.11.
-- Crée :
--   * referentiel_arrondissements : les 16 arrondissements de Marseille et leur secteur
--     (mairie de secteur), insérés ici même car ce sont des données de référence fixes
--   * referentiel_services : services municipaux (chargés depuis data/services.csv)
--   * referentiel_types_demande : nomenclature des demandes usagers, rattachées à un
--     service instructeur (chargés depuis data/types_demande.csv)
-- Même modèle que sql/postgres/ (mêmes tables, colonnes dans le même ordre, clés, contrôles,
-- index, données de référence et vues, mêmes noms de contraintes et d'index), traduit ainsi :
--
-- Schémas. MySQL n'a pas de schéma à l'intérieur d'une base (un « schema » y est une base).
--   Tout vit dans la base unique de la cible, celle de sa configuration (aucun USE ni nom de
--   base dans ces fichiers), et le schéma PostgreSQL devient un préfixe du nom de table, séparé
--   par un seul « _ » : referentiel.services -> referentiel_services, metier.citoyens ->
--   metier_citoyens, reporting.demandes_par_service -> vue reporting_demandes_par_service.
--   L'outil traduit de lui-même --table metier.citoyens en metier_citoyens.
--
-- Types.
--   text indexé, unique ou clé -> VARCHAR(n) (code VARCHAR(64), email VARCHAR(254),
--     reference VARCHAR(32)...) ; autre texte libre -> VARCHAR(255) ou TEXT. Les colonnes à
--     liste de valeurs (civilite, categorie, statut, action) sont en VARCHAR(32), assez large
--     pour qu'une valeur hors liste soit refusée par son CHECK nommé plutôt que par la longueur.
--   boolean -> BOOLEAN (c'est-à-dire TINYINT(1) : 1 / 0)
--   timestamptz -> DATETIME(6), qui ne porte pas de fuseau : les valeurs sont enregistrées en
--     UTC. Les valeurs par défaut (UTC_TIMESTAMP(6)), les triggers d'audit et la vue des
--     rendez-vous à venir utilisent l'heure UTC, quel que soit le time_zone de la session,
--     et un chargeur convertit en UTC les horodatages qu'il écrit.
--   numeric(p,s) -> DECIMAL(p,s) ; smallint/integer/bigint -> SMALLINT/INT/BIGINT
--   identité -> BIGINT AUTO_INCREMENT (une valeur explicite est acceptée et InnoDB place le
--     compteur au-delà du plus grand id inséré : pas de setval à faire après un chargement)
--   jsonb -> JSON (sous MariaDB, alias de LONGTEXT contrôlé par JSON_VALID)
--   char(5) -> CHAR(5)
--
-- Collations. Tables en utf8mb4 / utf8mb4_unicode_ci, sauf les codes, statuts, références et
--   adresses électroniques, en utf8mb4_bin : comme sous PostgreSQL, leurs comparaisons, leurs
--   contrôles IN (...) et leur unicité respectent la casse et les accents (en unicode_ci,
--   'DEPOSEE' ou 'déposée' passeraient le contrôle du statut 'deposee').
--
-- Contrôles. Les CHECK sont appliqués par MariaDB >= 10.2 et MySQL >= 8.0.16 (versions
--   plus anciennes : analysés puis ignorés). L'expression régulière s'écrit avec REGEXP.
--
-- Exécution. Sous MySQL, chaque ordre DDL valide implicitement la transaction en cours : une
--   migration interrompue ne peut pas être annulée. Chaque ordre est donc rejouable
--   (CREATE TABLE IF NOT EXISTS, INSERT ... ON DUPLICATE KEY UPDATE, CREATE OR REPLACE VIEW,
--   DROP TRIGGER IF EXISTS puis CREATE TRIGGER) pour que le fichier, une fois corrigé, puisse
--   être relancé tel quel. Les ordres finissent par « ; » en fin de ligne ; les corps de
--   trigger (V004) sont encadrés par DELIMITER, comme pour le client mysql.

-- ---------------------------------------------------------------------------
-- Arrondissements
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS referentiel_arrondissements (
    numero          SMALLINT      NOT NULL
                    COMMENT 'Numéro de l''arrondissement (1 à 16).',
    code_postal     CHAR(5)       NOT NULL
                    COMMENT 'Code postal de l''arrondissement (13001 à 13016).',
    nom             VARCHAR(255)  NOT NULL
                    COMMENT 'Libellé usuel (« 1er arrondissement », « 2e arrondissement »...).',
    secteur         SMALLINT      NOT NULL
                    COMMENT 'Secteur municipal (mairie de secteur) : 1er+7e=S1, 2e+3e=S2, 4e+5e=S3, 6e+8e=S4, 9e+10e=S5, 11e+12e=S6, 13e+14e=S7, 15e+16e=S8.',
    population      INT           NULL
                    COMMENT 'Population municipale (ordre de grandeur des derniers chiffres INSEE).',
    superficie_km2  DECIMAL(6,2)  NULL
                    COMMENT 'Superficie en km².',
    PRIMARY KEY (numero),
    UNIQUE KEY arrondissements_code_postal_key (code_postal),
    CONSTRAINT arrondissements_numero_check         CHECK (numero BETWEEN 1 AND 16),
    CONSTRAINT arrondissements_code_postal_check    CHECK (code_postal REGEXP '^130(0[1-9]|1[0-6])$'),
    CONSTRAINT arrondissements_secteur_check        CHECK (secteur BETWEEN 1 AND 8),
    CONSTRAINT arrondissements_population_check     CHECK (population >= 0),
    CONSTRAINT arrondissements_superficie_km2_check CHECK (superficie_km2 > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='Les 16 arrondissements municipaux de Marseille, regroupés deux à deux en 8 secteurs (loi PLM).';

INSERT INTO referentiel_arrondissements (numero, code_postal, nom, secteur, population, superficie_km2) VALUES
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
    (16, '13016', '16e arrondissement',  8, 16592, 16.09)
ON DUPLICATE KEY UPDATE numero = numero;

-- ---------------------------------------------------------------------------
-- Services municipaux
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS referentiel_services (
    id         INT           NOT NULL
               COMMENT 'Identifiant stable du service (fourni par le fichier de chargement, pas de séquence).',
    code       VARCHAR(64)   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
               COMMENT 'Code court unique du service (ex. ETAT_CIVIL).',
    nom        VARCHAR(255)  NOT NULL
               COMMENT 'Libellé du service.',
    direction  VARCHAR(255)  NOT NULL
               COMMENT 'Direction de rattachement dans l''organigramme municipal.',
    telephone  VARCHAR(64)   NULL
               COMMENT 'Numéro de téléphone d''accueil du service.',
    email      VARCHAR(254)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL
               COMMENT 'Adresse électronique de contact du service.',
    actif      BOOLEAN       NOT NULL DEFAULT TRUE
               COMMENT 'Faux (0) pour un service fermé ou transféré : conservé pour l''historique.',
    PRIMARY KEY (id),
    UNIQUE KEY services_code_key (code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='Services municipaux qui instruisent les demandes et reçoivent les usagers en rendez-vous.';

-- ---------------------------------------------------------------------------
-- Types de demande
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS referentiel_types_demande (
    code                    VARCHAR(64)   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
                            COMMENT 'Code du type de demande (ex. URBA_PERMIS_CONSTRUIRE).',
    libelle                 VARCHAR(255)  NOT NULL
                            COMMENT 'Libellé affiché aux usagers.',
    categorie               VARCHAR(32)   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
                            COMMENT 'Grande famille de la demande (état civil, urbanisme, voirie...).',
    service_id              INT           NOT NULL
                            COMMENT 'Service instructeur par défaut.',
    delai_traitement_jours  INT           NOT NULL
                            COMMENT 'Délai cible de traitement, en jours calendaires.',
    PRIMARY KEY (code),
    KEY types_demande_service_id_idx (service_id),
    CONSTRAINT types_demande_service_id_fkey
        FOREIGN KEY (service_id) REFERENCES referentiel_services (id),
    CONSTRAINT types_demande_categorie_check
        CHECK (categorie IN ('etat_civil', 'urbanisme', 'voirie', 'proprete',
                             'social', 'education', 'elections', 'funeraire',
                             'occupation_domaine_public')),
    CONSTRAINT types_demande_delai_traitement_jours_check
        CHECK (delai_traitement_jours > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='Nomenclature des demandes usagers (actes, autorisations, signalements...), chacune instruite par un service.';
