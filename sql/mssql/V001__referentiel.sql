-- V001 : schéma « referentiel » (données de référence de la base mairie), version SQL Server 2019/2022.
-- Crée :
--   * le schéma referentiel
--   * referentiel.arrondissements : les 16 arrondissements de Marseille et leur secteur
--     (mairie de secteur), insérés ici même car ce sont des données de référence fixes
--   * referentiel.services : services municipaux (chargés depuis data/services.csv)
--   * referentiel.types_demande : nomenclature des demandes usagers, rattachées à un
--     service instructeur (chargés depuis data/types_demande.csv)
-- Même modèle que sql/postgres/ : mêmes schémas (referentiel, metier, reporting), tables,
-- colonnes dans le même ordre, clés, contrôles, index, données de référence et vues, et les
-- mêmes noms de contraintes et d'index, nommés explicitement pour rester stables.
--
-- Traduction des types :
--   text -> NVARCHAR(n) pour les clés, codes et colonnes indexées (450 caractères au plus
--     pour une clé), NVARCHAR(255) pour les libellés, NVARCHAR(MAX) pour le texte libre
--   boolean -> BIT (1 / 0) ; timestamptz -> DATETIMEOFFSET(3) (à la milliseconde) ;
--   numeric(p,s) -> DECIMAL(p,s) ; identité -> BIGINT IDENTITY(1,1) ; jsonb -> NVARCHAR(MAX)
--     contrôlé par ISJSON ; char(5) -> CHAR(5)
--   now() -> SYSDATETIMEOFFSET() ; current_user -> SUSER_SNAME()
--   l'expression régulière du code postal -> LIKE '130[0-1][0-9]' et un contrôle d'intervalle
-- Collations : les codes, statuts, références et adresses électroniques sont en
--   Latin1_General_100_BIN2 pour que, comme sous PostgreSQL, leurs comparaisons, leurs
--   contrôles IN (...) et leur unicité respectent la casse et les accents (la collation par
--   défaut d'une instance, insensible à la casse, accepterait 'DEPOSEE' comme statut).
-- Une contrainte UNIQUE de SQL Server n'admet qu'un seul NULL : l'unicité des adresses
-- électroniques des citoyens (NULL autorisé plusieurs fois) est un index unique filtré (V002).
--
-- Exécution : les lots sont séparés par une ligne GO (convention de sqlcmd) ; CREATE SCHEMA,
-- CREATE VIEW et CREATE TRIGGER ouvrent chacun leur lot. Le DDL de SQL Server est
-- transactionnel : un fichier exécuté dans une transaction est annulé en entier s'il échoue.
-- Les options SET du premier lot sont celles qu'exige un index filtré (V002) et celles que
-- SQL Server mémorise à la création des vues et des triggers : le résultat ne dépend pas des
-- réglages par défaut du client (sqlcmd, pilote ODBC ou tiberius). Elles valent pour la
-- session, donc les lots doivent être envoyés comme lots SQL ordinaires sur une même
-- connexion, et non par sp_executesql, dont les SET ne survivent pas à l'appel.

SET ANSI_NULLS ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET QUOTED_IDENTIFIER ON;
SET NUMERIC_ROUNDABORT OFF;
GO

CREATE SCHEMA referentiel;
GO

-- ---------------------------------------------------------------------------
-- Arrondissements
-- ---------------------------------------------------------------------------
CREATE TABLE referentiel.arrondissements (
    numero          SMALLINT       NOT NULL,
    code_postal     CHAR(5)        NOT NULL,
    nom             NVARCHAR(255)  NOT NULL,
    secteur         SMALLINT       NOT NULL,
    population      INT            NULL,
    superficie_km2  DECIMAL(6,2)   NULL,
    CONSTRAINT arrondissements_pkey PRIMARY KEY (numero),
    CONSTRAINT arrondissements_code_postal_key UNIQUE (code_postal),
    CONSTRAINT arrondissements_numero_check CHECK (numero BETWEEN 1 AND 16),
    CONSTRAINT arrondissements_code_postal_check
        CHECK (code_postal LIKE '130[0-1][0-9]' AND code_postal BETWEEN '13001' AND '13016'),
    CONSTRAINT arrondissements_secteur_check CHECK (secteur BETWEEN 1 AND 8),
    CONSTRAINT arrondissements_population_check CHECK (population >= 0),
    CONSTRAINT arrondissements_superficie_km2_check CHECK (superficie_km2 > 0)
);

INSERT INTO referentiel.arrondissements (numero, code_postal, nom, secteur, population, superficie_km2) VALUES
    ( 1, '13001', N'1er arrondissement',  1, 39736,  1.81),
    ( 2, '13002', N'2e arrondissement',   2, 24810,  5.04),
    ( 3, '13003', N'3e arrondissement',   2, 51322,  2.59),
    ( 4, '13004', N'4e arrondissement',   3, 49512,  2.89),
    ( 5, '13005', N'5e arrondissement',   3, 45612,  2.26),
    ( 6, '13006', N'6e arrondissement',   4, 42241,  2.16),
    ( 7, '13007', N'7e arrondissement',   1, 35618,  5.53),
    ( 8, '13008', N'8e arrondissement',   4, 81186, 19.44),
    ( 9, '13009', N'9e arrondissement',   5, 76918, 69.15),
    (10, '13010', N'10e arrondissement',  5, 56487,  6.26),
    (11, '13011', N'11e arrondissement',  6, 57214, 27.27),
    (12, '13012', N'12e arrondissement',  6, 63806, 14.31),
    (13, '13013', N'13e arrondissement',  7, 92697, 29.56),
    (14, '13014', N'14e arrondissement',  7, 64481,  5.63),
    (15, '13015', N'15e arrondissement',  8, 77373, 17.02),
    (16, '13016', N'16e arrondissement',  8, 16592, 16.09);

-- ---------------------------------------------------------------------------
-- Services municipaux
-- ---------------------------------------------------------------------------
CREATE TABLE referentiel.services (
    id         INT            NOT NULL,
    code       NVARCHAR(64)   COLLATE Latin1_General_100_BIN2 NOT NULL,
    nom        NVARCHAR(255)  NOT NULL,
    direction  NVARCHAR(255)  NOT NULL,
    telephone  NVARCHAR(64)   NULL,
    email      NVARCHAR(254)  COLLATE Latin1_General_100_BIN2 NULL,
    actif      BIT            NOT NULL CONSTRAINT services_actif_default DEFAULT 1,
    CONSTRAINT services_pkey PRIMARY KEY (id),
    CONSTRAINT services_code_key UNIQUE (code)
);

-- ---------------------------------------------------------------------------
-- Types de demande
-- ---------------------------------------------------------------------------
CREATE TABLE referentiel.types_demande (
    code                    NVARCHAR(64)   COLLATE Latin1_General_100_BIN2 NOT NULL,
    libelle                 NVARCHAR(255)  NOT NULL,
    categorie               NVARCHAR(32)   COLLATE Latin1_General_100_BIN2 NOT NULL,
    service_id              INT            NOT NULL,
    delai_traitement_jours  INT            NOT NULL,
    CONSTRAINT types_demande_pkey PRIMARY KEY (code),
    CONSTRAINT types_demande_service_id_fkey
        FOREIGN KEY (service_id) REFERENCES referentiel.services (id),
    CONSTRAINT types_demande_categorie_check
        CHECK (categorie IN (N'etat_civil', N'urbanisme', N'voirie', N'proprete',
                             N'social', N'education', N'elections', N'funeraire',
                             N'occupation_domaine_public')),
    CONSTRAINT types_demande_delai_traitement_jours_check
        CHECK (delai_traitement_jours > 0)
);

CREATE INDEX types_demande_service_id_idx ON referentiel.types_demande (service_id);
GO

-- ---------------------------------------------------------------------------
-- Descriptions (équivalent de COMMENT ON : propriétés étendues MS_Description)
-- ---------------------------------------------------------------------------
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Données de référence : arrondissements, services municipaux, types de demande.',
    @level0type = N'SCHEMA', @level0name = N'referentiel';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Les 16 arrondissements municipaux de Marseille, regroupés deux à deux en 8 secteurs (loi PLM).',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'arrondissements';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Numéro de l''arrondissement (1 à 16).',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'arrondissements',
    @level2type = N'COLUMN', @level2name = N'numero';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Code postal de l''arrondissement (13001 à 13016).',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'arrondissements',
    @level2type = N'COLUMN', @level2name = N'code_postal';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Libellé usuel (« 1er arrondissement », « 2e arrondissement »...).',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'arrondissements',
    @level2type = N'COLUMN', @level2name = N'nom';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Secteur municipal (mairie de secteur) : 1er+7e=S1, 2e+3e=S2, 4e+5e=S3, 6e+8e=S4, 9e+10e=S5, 11e+12e=S6, 13e+14e=S7, 15e+16e=S8.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'arrondissements',
    @level2type = N'COLUMN', @level2name = N'secteur';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Population municipale (ordre de grandeur des derniers chiffres INSEE).',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'arrondissements',
    @level2type = N'COLUMN', @level2name = N'population';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Superficie en km².',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'arrondissements',
    @level2type = N'COLUMN', @level2name = N'superficie_km2';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Services municipaux qui instruisent les demandes et reçoivent les usagers en rendez-vous.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'services';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Identifiant stable du service (fourni par le fichier de chargement, pas de séquence).',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'services',
    @level2type = N'COLUMN', @level2name = N'id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Code court unique du service (ex. ETAT_CIVIL).',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'services',
    @level2type = N'COLUMN', @level2name = N'code';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Libellé du service.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'services',
    @level2type = N'COLUMN', @level2name = N'nom';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Direction de rattachement dans l''organigramme municipal.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'services',
    @level2type = N'COLUMN', @level2name = N'direction';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Numéro de téléphone d''accueil du service.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'services',
    @level2type = N'COLUMN', @level2name = N'telephone';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Adresse électronique de contact du service.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'services',
    @level2type = N'COLUMN', @level2name = N'email';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Faux (0) pour un service fermé ou transféré : conservé pour l''historique.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'services',
    @level2type = N'COLUMN', @level2name = N'actif';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Nomenclature des demandes usagers (actes, autorisations, signalements...), chacune instruite par un service.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'types_demande';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Code du type de demande (ex. URBA_PERMIS_CONSTRUIRE).',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'types_demande',
    @level2type = N'COLUMN', @level2name = N'code';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Libellé affiché aux usagers.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'types_demande',
    @level2type = N'COLUMN', @level2name = N'libelle';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Grande famille de la demande (état civil, urbanisme, voirie...).',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'types_demande',
    @level2type = N'COLUMN', @level2name = N'categorie';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Service instructeur par défaut.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'types_demande',
    @level2type = N'COLUMN', @level2name = N'service_id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Délai cible de traitement, en jours calendaires.',
    @level0type = N'SCHEMA', @level0name = N'referentiel',
    @level1type = N'TABLE', @level1name = N'types_demande',
    @level2type = N'COLUMN', @level2name = N'delai_traitement_jours';
GO
